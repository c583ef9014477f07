"""The service as it runs: ``inspection serve`` in a uvicorn subprocess on 127.0.0.1,
killed and restarted on the same SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytest.importorskip("torch")

from serve_helpers import (  # noqa: E402
    READY_TIMEOUT_S,
    STANDARDS_DIR,
    free_port,
    payload,
    tiny_decoder_dir,
)

from inspection.serve.auth import KeyStore  # noqa: E402

SERVE = "from inspection.serve.commands import serve_app; serve_app(prog_name='inspection serve')"


def start_server(decoder: Path, db: Path, port: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-c", SERVE,
        "--host", "127.0.0.1", "--port", str(port),
        "--decoder", str(decoder), "--db", str(db), "--standards", str(STANDARDS_DIR),
        "--max-wait-ms", "5", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server was not ready in {READY_TIMEOUT_S} s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


@pytest.mark.slow
def test_real_server_answers_once_across_a_kill(tmp_path_factory, tmp_path, bracket_standard):
    decoder = tiny_decoder_dir(tmp_path_factory)
    db = tmp_path / "service.db"
    token = KeyStore(db).add("edge-1")
    headers = {"Authorization": f"Bearer {token}"}
    body = payload(bracket_standard, "line1/part-0001", verdict="REVIEW")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(decoder, db, port, tmp_path / "server-1.log")
    try:
        wait_ready(url, server, tmp_path / "server-1.log")
        assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
        assert httpx.post(f"{url}/v1/reports", json=body, timeout=120).status_code == 401
        first = httpx.post(f"{url}/v1/reports", json=body, headers=headers, timeout=120)
        assert first.status_code == 200, first.text
        answer = first.json()
        assert answer["duplicate"] is False and answer["verdict"] == "REVIEW"
        assert "inspection_serve_reports_total" in httpx.get(f"{url}/metrics", timeout=10).text
    finally:
        stop(server, signal.SIGKILL)  # no clean shutdown: what was answered is on disk

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(decoder, db, port, tmp_path / "server-2.log")
    try:
        wait_ready(url, server, tmp_path / "server-2.log")
        again = httpx.post(f"{url}/v1/reports", json=body, headers=headers, timeout=120)
        assert again.status_code == 200 and again.json() == {**answer, "duplicate": True}
        fetched = httpx.get(f"{url}/v1/reports/line1/part-0001", headers=headers, timeout=10)
        assert fetched.json() == answer
    finally:
        stop(server)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0] == 1
