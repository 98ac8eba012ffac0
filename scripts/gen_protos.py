"""Regenerate generated/ (Python messages, gRPC stubs, typed .pyi) from protos/; --check diffs instead.

One script is the only writer of generated/. It uses grpcio-tools' bundled protoc (buf cannot run the
Python gRPC plugin offline) and mypy-protobuf for precise type stubs. With --check it generates into a
temporary directory and exits 1 if anything differs from what is committed.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = ROOT / "generated"
PACKAGES = ("alp", "alp/v3")
BIN = Path(sys.executable).parent


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTOS}",
        f"--proto_path={well_known}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *sources,
    ]
    subprocess.run(command, check=True, cwd=PROTOS)
    for package in PACKAGES:
        (out / package).mkdir(parents=True, exist_ok=True)
        init = out / package / "__init__.py"
        init.write_text('"""Generated from protos/ by scripts/gen_protos.py; do not edit."""\n')
        (out / package / "py.typed").write_text("")


def differences(left: Path, right: Path) -> list[str]:
    found: list[str] = []
    names = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    names |= {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    for name in sorted(names):
        if "__pycache__" in name.parts:
            continue
        a, b = left / name, right / name
        if not a.exists() or not b.exists() or not filecmp.cmp(a, b, shallow=False):
            found.append(str(name))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated/ is stale")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp)
            generate(fresh)
            stale = differences(fresh, GENERATED)
            if stale:
                print("generated/ is stale; run `make protos`:", *stale, sep="\n  ")
                return 1
            print("generated/ is up to date")
            return 0
    if GENERATED.exists():
        shutil.rmtree(GENERATED)
    GENERATED.mkdir()
    generate(GENERATED)
    print(f"wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
