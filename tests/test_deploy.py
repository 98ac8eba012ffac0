"""The image and the example manifest: valid Kubernetes (strict schema), probes on the plaintext
health port, drain before SIGTERM, per-replica volumes, and an image whose ENV shadows no setting."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from gateway.app import Gateway
from gateway.config import SETTINGS, load_config
from gateway.sandbox import Sandbox, SandboxConfig
from tests.gateway.conftest import gateway_config

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "deploy" / "kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_CONFIG = ROOT / "deploy" / "image-gateway.toml"


def resources() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def gateway_toml() -> str:
    return str(resources()["ConfigMap/alp-gateway-config"]["data"]["gateway.toml"])


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def image_env() -> dict[str, str]:
    """The runtime stage's ENV as the container sees it (KEY=VALUE pairs)."""
    env: dict[str, str] = {}
    stage = ""
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            stage = rest.split()[-1]
        elif word == "ENV" and stage == "runtime":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def test_manifest_passes_kubernetes_validate_strict() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", str(MANIFEST)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_pods_are_hardened_spread_and_drained_before_sigterm() -> None:
    found = resources()
    gateway = found["StatefulSet/alp-gateway"]["spec"]
    pod = gateway["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["enableServiceLinks"] is False  # no injected ALP_GATEWAY_* look-alikes
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and 3 <= int(sleep[1]) <= 15
    drain = tomllib.loads(gateway_toml())["drain"]["grace_s"]
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + drain
    budget = found["PodDisruptionBudget/alp-gateway"]["spec"]
    assert budget["selector"] == gateway["selector"] and budget["maxUnavailable"] == 1
    headless = found["Service/alp-gateway-headless"]["spec"]
    assert headless["clusterIP"] == "None" and gateway["serviceName"] == "alp-gateway-headless"
    assert headless["selector"] == gateway["selector"]["matchLabels"]


def test_probes_use_the_plaintext_health_port_the_config_sets() -> None:
    pod = resources()["StatefulSet/alp-gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = tomllib.loads(gateway_toml())
    assert ports["health"] == settings["health"]["http_port"] != settings["listen"]["port"]
    assert settings["tls"]["cert_file"]  # the gRPC port speaks TLS: probes must not use it
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert probes["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "50051" not in json.dumps(probes)


def test_audit_and_tokens_live_on_the_replicas_persistent_volume() -> None:
    gateway = resources()["StatefulSet/alp-gateway"]["spec"]
    (container,) = gateway["template"]["spec"]["containers"]
    claims = {c["metadata"]["name"] for c in gateway["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    settings = tomllib.loads(gateway_toml())
    for path in (settings["audit"]["path"], settings["token"]["cache_dir"]):
        holder = max((m for m in mounts if path.startswith(m + "/")), key=len)
        assert mounts[holder] in claims, path


def test_the_configmap_is_a_config_the_gateway_accepts(tmp_path: Path) -> None:
    text = gateway_toml().replace("/etc/alp-gateway/", f"{tmp_path}/")
    for name in ("secrets/desk-a-api-secret", "tls/tls.crt", "tls/tls.key", "tls/ca.crt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "gateway.toml").write_text(text)
    config = load_config(str(tmp_path / "gateway.toml"), env={})
    assert config.settings.health.http_port == 8081 and config.settings.listen.host == "0.0.0.0"
    assert config.settings.audit.path == "/var/lib/alp-gateway/audit.jsonl"


def test_the_image_env_shadows_no_setting(tmp_path: Path) -> None:
    env = image_env()
    setting_vars = {s.env for s in SETTINGS}
    assert not setting_vars & set(env), "ENV would override the operator's config file"
    assert not [k for k in env if k.startswith("ALP_GATEWAY_ACCOUNT_")]
    # the image's own settings come from a file, which an operator's file replaces whole
    copies = [rest.split() for word, rest in dockerfile_instructions() if word == "COPY"]
    assert ["deploy/image-gateway.toml", env["ALP_GATEWAY_CONFIG"]] in copies
    image = load_config(str(IMAGE_CONFIG), env={})
    assert image.settings.listen.host == "0.0.0.0" and image.settings.metrics.host == "0.0.0.0"
    operator = tmp_path / "gateway.toml"
    operator.write_text('[audit]\npath = "/data/audit.jsonl"\n[listen]\nhost = "10.0.0.7"\n')
    mine = load_config(str(operator), env=env)  # `serve --config FILE` inside the image
    assert mine.settings.audit.path == "/data/audit.jsonl"
    assert mine.settings.listen.host == "10.0.0.7"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_image_healthcheck_asks_http_healthz() -> None:
    (healthcheck,) = [rest for word, rest in dockerfile_instructions() if word == "HEALTHCHECK"]
    command = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert command[0] == "python"
    argv = [sys.executable, *command[1:]]
    port = free_port()
    env = {"ALP_GATEWAY_HEALTH_HTTP_PORT": str(port), "PATH": "/usr/bin:/bin"}

    async def run() -> int:
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return await asyncio.wait_for(process.wait(), 30)

    assert await run() != 0  # nothing listens
    async with Sandbox(SandboxConfig(market=False)) as sandbox:
        async with Gateway(gateway_config(sandbox, health__http_port=port)):
            assert await run() == 0


def test_the_replicas_form_one_fleet_through_redis() -> None:
    found = resources()
    pod = found["StatefulSet/alp-gateway"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    ref = env["ALP_GATEWAY_CLUSTER_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    secret = found[f"Secret/{ref['name']}"]
    assert secret["stringData"][ref["key"]].startswith(("redis://", "rediss://"))
    assert found["StatefulSet/alp-gateway"]["spec"]["replicas"] >= 2
    assert found["PodDisruptionBudget/alp-gateway"]["spec"]["maxUnavailable"] == 1
    # only the Redis URL comes from the environment; every other setting is the config file
    assert set(env) == {"ALP_GATEWAY_CLUSTER_REDIS_URL"}
