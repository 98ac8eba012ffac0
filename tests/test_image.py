"""The image builds offline with buildah and its environment serves: the shipped Dockerfile, the
wheels the tests ran, a Debian base when no registry is reachable (scripts/build_image.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
TAG = "alp-gateway:test"
STORAGE = ["--storage-driver", "vfs"]


def buildah(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["buildah", *STORAGE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0 and shutil.which("buildah") is None:
        pytest.skip("building the image needs root (buildah, mmdebstrap)")
    build = subprocess.run(
        ["bash", "scripts/build_image.sh"],
        cwd=ROOT,
        env={**os.environ, "TAG": TAG},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    return TAG


def test_the_image_holds_every_runtime_dependency(image: str) -> None:
    ctr = buildah("from", image).stdout.strip()
    try:
        run = buildah(
            "run",
            "--isolation",
            "chroot",
            ctr,
            "--",
            "python",
            "-c",
            "import cryptography, redis, pydantic, msgspec, uvloop, gateway.cluster.fleet; "
            "import gateway.rpc.caller_auth; print('ok')",
        )
        assert run.stdout.strip() == "ok", run.stderr[-2000:]
        user = buildah("run", "--isolation", "chroot", ctr, "--", "id", "-u")
        assert user.stdout.strip() == "10001"  # non-root
        check = buildah("run", "--isolation", "chroot", ctr, "--", "alp-gateway", "check-config")
        # the image's own config file is read; with no callers configured it says so in one line
        assert check.returncode != 0 and "invalid setting callers" in check.stderr
        assert "Traceback" not in check.stderr
    finally:
        buildah("rm", ctr)
