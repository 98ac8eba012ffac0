# One Makefile: the README's two commands (`make run`, `make test`) and the pieces CI calls.
# Only python3, make and git are assumed; everything else is installed here, idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 50051

.PHONY: run fleet test venv sandbox lint typecheck protos check-protos proto-lint hadolint unit pytest-all polyglot-deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## Run the gateway against the embedded sandbox exchange (no credentials, no network needed).
run: venv
	$(BIN)/alp-gateway serve --sandbox --dev-mode --host $(HOST) --port $(PORT)

## A local two-worker fleet with its own Redis and one sandbox (Ctrl-C stops it all).
fleet: venv
	bash scripts/run_fleet.sh

## Run the sandbox exchange alone.
sandbox: venv
	$(BIN)/alp-gateway sandbox --host $(HOST) --port 8085

## The whole test suite: lint, types, proto checks, Dockerfile lint, every test (slow and polyglot too).
test: venv polyglot-deps lint typecheck check-protos proto-lint hadolint pytest-all

lint: venv
	$(BIN)/ruff format --check $(wildcard gateway tests scripts bench)
	$(BIN)/ruff check $(wildcard gateway tests scripts bench)

typecheck: venv
	$(BIN)/mypy

protos: venv
	$(BIN)/python scripts/gen_protos.py

check-protos: venv
	$(BIN)/python scripts/gen_protos.py --check

proto-lint: venv polyglot-deps
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code
	bash scripts/buf_breaking.sh
	$(BIN)/buf generate && test -n "$$(find .build/buf-gen/go -name '*_grpc.pb.go')" && test -n "$$(find .build/buf-gen/java -name '*Grpc.java')"

hadolint: venv
	$(BIN)/hadolint Dockerfile

polyglot-deps:
	bash scripts/polyglot_deps.sh

## The fast inner loop (under a minute): everything but slow and polyglot tests.
unit: venv
	$(BIN)/python -m pytest -m "not slow and not polyglot" -n 3

## Every test, slow and polyglot included; what `make test` runs.
pytest-all: venv
	$(BIN)/python -m pytest --durations=15

## A benchmark with the plotting extra and its tools (scripts/bench_deps.sh) installed: make bench [BENCH=fleet_fanout] [BENCH_ARGS="--workers 1,2,4"]
BENCH ?= fleet_fanout
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.installed-bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)
	bash scripts/bench_deps.sh
	$(BIN)/python -m bench.$(BENCH) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
