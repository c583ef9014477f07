"""An edge box as shipped: a fresh venv with the core and the ``edge`` extra, no torch.

``pip install 'REPO[edge]'`` (no ``models`` extra) into a new virtual environment, then
``inspection edge install`` a bundle and ``inspection edge serve`` it, and post a part
to it: the whole edge path runs from the installed package, where torch is not even
installed. Slow (pip resolves and installs the core's dependencies from the index).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from edge_helpers import PART_SIZE
from test_runtime import shared_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT_S = 1500
WAIT_S = 120
_UNREACHABLE = (
    "Could not find a version that satisfies",
    "No matching distribution found",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
)


def _source_copy(dest: Path) -> Path:
    """What the package is built from (a copy: a build in the checkout would leave
    build/ behind in it)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, dest / name)
    shutil.copytree(
        REPO_ROOT / "inspection",
        dest / "inspection",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.mark.slow
@pytest.mark.timeout(PIP_TIMEOUT_S + 600)
def test_a_fresh_edge_venv_without_torch_serves_a_bundle(tmp_path_factory, tmp_path):
    bundle_dir = shared_bundle(tmp_path_factory)
    venv = tmp_path / "venv"
    env = _clean_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python, cli = venv / "bin" / "python", venv / "bin" / "inspection"
    source = _source_copy(tmp_path / "src")
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{source}[edge]"],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        env=env,
        cwd=tmp_path,
    )
    if pip.returncode != 0 and any(s in pip.stderr for s in _UNREACHABLE):
        pytest.skip(f"pip cannot reach its index: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr[-4000:]

    # Torch is not installed at all, and the package runs from the venv, not the checkout.
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, inspection; "
            "print(importlib.util.find_spec('torch') is None, inspection.__file__)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    no_torch, location = probe.stdout.split()
    assert no_torch == "True" and location.startswith(str(venv)), probe.stdout

    home = tmp_path / "home"
    install = subprocess.run(
        [str(cli), "edge", "install", str(bundle_dir), "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=WAIT_S * 2,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert "installed and activated" in install.stdout

    port = _free_port()
    server = subprocess.Popen(
        [str(cli), "edge", "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_S) as client:
            deadline = time.monotonic() + WAIT_S
            ready = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    ready = client.get("/readyz")
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert ready is not None and ready.status_code == 200, (
                ready.text if ready is not None else server.stdout.read()
            )
            image = np.full((PART_SIZE, PART_SIZE, 3), 128, np.uint8)
            from inspection.io import write_image

            write_image(tmp_path / "part.png", image)
            answer = client.post(
                "/v1/inspect",
                files={"image": ("part.png", (tmp_path / "part.png").read_bytes())},
                data={"part_id": "venv-1"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["verdict"] in ("PASS", "REJECT", "REVIEW")
            assert answer.json()["payload_bytes"] > 0
    finally:
        server.terminate()
        server.wait(WAIT_S)

    # The same part, decided here in the development venv, gets the same verdict.
    from inspection.edge.bundle import load_bundle
    from inspection.edge.runtime import EdgeRuntime
    from inspection.types import Frame, Observation

    runtime = EdgeRuntime(load_bundle(bundle_dir))
    expected, _ = runtime.inspect(
        Observation(part_id="venv-1", station="", frames=(Frame(image),), product=None)
    )
    assert answer.json()["verdict"] == expected.verdict.value
    assert answer.json()["scores"] == pytest.approx(expected.scores, abs=1e-4)
