"""Store and forward end to end: the edge's outbox and forwarder against the REAL report
service (``inspection serve`` in a subprocess on loopback, its own SQLite, a real API key,
a tiny decoder), started late, killed with SIGKILL mid-run and restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from inspection.edge.outbox import DELIVERED, Forwarder, Outbox
from inspection.edge.payload import EdgePayload, WireDefect, WireTensor
from inspection.standards import Standard

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDARDS_DIR = REPO_ROOT / "datasets" / "standards"
CEILING_S = 120.0  # every wait is bounded by this; a healthy run needs a fraction of it
N_PARTS = 30

pytestmark = pytest.mark.slow


def wait_for(condition, what: str, ceiling: float = CEILING_S, every: float = 0.05) -> None:
    deadline = time.monotonic() + ceiling
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {ceiling:.0f} s")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory) -> Path:
    """A random-weight tiny decoder (it still writes schema-valid reports) with a small
    tokenizer, as the service loads any decoder folder."""
    from inspection.decoder.corpus import shipped_standards
    from inspection.decoder.model import ReportDecoder
    from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer

    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    model = ReportDecoder.create("tiny", tokenizer=train_tokenizer(corpus, 512), seed=0)
    return model.save(tmp_path_factory.mktemp("sf-decoder") / "decoder")


class Service:
    """``inspection serve`` in a subprocess; ``kill()`` is SIGKILL, nothing graceful."""

    def __init__(self, decoder_dir: Path, db: Path, log: Path) -> None:
        self.decoder_dir, self.db, self.log = decoder_dir, db, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            str(Path(sys.executable).with_name("inspection")),
            "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--decoder", str(self.decoder_dir),
            "--standards", str(STANDARDS_DIR),
            "--db", str(self.db),
            "--max-wait-ms", "10",
            "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        wait_for(self.ready, f"the service on {self.url} ready (log: {self.log})")

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the service exited ({self.proc.returncode}):\n{self.tail()}")
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(CEILING_S)
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def rows(self) -> dict[str, dict]:
        """The service's database, read directly: part id -> stored answer."""
        with sqlite3.connect(self.db) as db:
            rows = db.execute("SELECT part_id, response FROM reports").fetchall()
        return {part_id: json.loads(response) for part_id, response in rows}


@pytest.fixture(scope="module")
def svc(decoder_dir, tmp_path_factory):
    """One service (database, key, port) for the module, started by the tests that need
    it: it takes seconds to import torch and load its decoder."""
    from inspection.serve.auth import KeyStore

    tmp = tmp_path_factory.mktemp("sf-service")
    keys = KeyStore(tmp / "service.db")
    token = keys.add("edge-1")
    keys.close()
    service = Service(decoder_dir, tmp / "service.db", tmp / "service.log")
    service.token = token
    yield service
    if service.proc is not None:
        service.kill()


def make_payload(standard: Standard, i: int, line: str = "line-1") -> EdgePayload:
    rng = np.random.default_rng(i)
    defects = (
        []
        if i % 3
        else [WireDefect(defect_class="scratch", attributes={"length_mm": 3.0}, zone="A")]
    )
    return EdgePayload(
        part_id=f"{line}/part-{i:04d}",
        station=line,
        standard_id=standard.id,
        standard_version=standard.version,
        model_version="tiny-test",
        fused=WireTensor.from_array(rng.standard_normal((8, 64))),
        defects=defects,
        verdict="PASS" if i % 3 else "REVIEW",
    )


def test_outage_and_kill_9_every_report_exactly_once(svc, tmp_path, bracket_standard):
    """The edge queues while the service is down, the service starts, is SIGKILLed while
    reports flow and restarts: N parts in, N delivered, N reports in the service's
    database, each part's answer the one the service stored first."""
    if svc.proc is not None:
        svc.kill()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    fwd = Forwarder(outbox, svc.url, svc.token, timeout=30, base_backoff=0.05, max_backoff=1.0)
    fwd.start()
    try:
        # The service is down: the edge keeps deciding, every payload is stored.
        half = N_PARTS // 2
        assert all(outbox.put(make_payload(bracket_standard, i)) for i in range(half))
        wait_for(lambda: fwd.failures >= 2, "the forwarder finding the service down")
        assert "ConnectError" in fwd.last_error
        assert outbox.pending() == half
        svc.start()
        assert all(outbox.put(make_payload(bracket_standard, i)) for i in range(half, N_PARTS))
        # SIGKILL while reports flow, then a restart on the same port and database.
        wait_for(lambda: outbox.stats().delivered >= 5, "the first deliveries")
        svc.kill()
        assert outbox.stats().delivered < N_PARTS, "all delivered before the kill: raise N"
        svc.start()
        wait_for(lambda: outbox.pending() == 0, "the outbox drained")
    finally:
        fwd.stop(timeout=CEILING_S)

    ids = {f"line-1/part-{i:04d}" for i in range(N_PARTS)}
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.rejected) == (0, N_PARTS, 0)
    rows = {p: r for p, r in svc.rows().items() if p.startswith("line-1/")}
    assert set(rows) == ids  # N distinct reports, nothing more
    for part_id in ids:
        answer = outbox.report(part_id)
        assert answer["part_id"] == part_id and answer["report"] is not None
        # The edge holds the service's first answer, whether it was re-sent or not.
        assert _without_duplicate(answer) == _without_duplicate(rows[part_id])
    reviewed = [p for p in ids if int(p[-4:]) % 3 == 0]
    assert all(rows[p]["verdict"] != "PASS" for p in reviewed)  # an edge REVIEW stands
    outbox.close()


def _without_duplicate(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "duplicate"}


class Crash(BaseException):
    """The edge dies between the service's answer and recording it."""


def test_crash_after_send_resends_and_gets_the_first_report(svc, tmp_path, bracket_standard):
    if svc.proc is None:
        svc.start()
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    assert box.put(make_payload(bracket_standard, 7, line="line-2"))

    def die(*args):
        raise Crash

    box._finish = die
    fwd = Forwarder(box, svc.url, svc.token, timeout=30, concurrency=1)
    with pytest.raises(Crash):
        fwd.send_due()
    fwd.stop()
    box.close()
    first = svc.rows()["line-2/part-0007"]  # the service stored it; the edge never knew

    with Outbox(path) as box:
        assert box.pending() == 1
        fwd = Forwarder(box, svc.url, svc.token, timeout=30, concurrency=1)
        assert fwd.send_due() == 1
        fwd.stop()
        entry = box.get("line-2/part-0007")
        answer = box.report("line-2/part-0007")
    assert entry.state == DELIVERED and answer["duplicate"] is True
    assert _without_duplicate(answer) == _without_duplicate(first)
    assert [p for p in svc.rows() if p.startswith("line-2/")] == ["line-2/part-0007"]
