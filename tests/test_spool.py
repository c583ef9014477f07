"""The durable spool: a real SQLite file, a real ``kill -9``'d writer process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from inspection.spool import Spool, SpoolFullError, SpoolItem, retry_delay


@pytest.fixture
def spool(tmp_path):
    with Spool(tmp_path / "outbox.db", name="verdicts") as s:
        yield s


def test_put_due_done_and_durable_across_reopen(tmp_path):
    path = tmp_path / "sub" / "outbox.db"  # the folder is created
    with Spool(path) as spool:
        assert spool.put("P-1", {"verdict": "PASS", "scores": {"image": 0.25}})
        assert spool.put("P-2", {"verdict": "REJECT"})
        spool.done("P-1")
    with Spool(path) as spool:
        assert spool.pending() == 1
        assert spool.was_done("P-1") and not spool.was_done("P-2")
        (item,) = spool.due(now=0.0)
        assert item == SpoolItem("P-2", {"verdict": "REJECT"}, 0, 0.0, None)


def test_put_is_idempotent_by_key(spool):
    assert spool.put("P-1", {"n": 1})
    assert not spool.put("P-1", {"n": 2})  # pending: the first body stays
    assert [i.body for i in spool.due(0.0)] == [{"n": 1}]
    spool.done("P-1")
    assert not spool.put("P-1", {"n": 3})  # delivered: never queued again
    assert spool.pending() == 0
    spool.done("P-1")  # marking twice is harmless
    assert spool.was_done("P-1")


def test_due_is_oldest_first_and_limited(spool):
    keys = [f"P-{i:03d}" for i in (5, 1, 9, 3, 7)]
    for key in keys:
        spool.put(key, {"key": key})
    assert [i.key for i in spool.due(0.0)] == keys  # order put, not key order
    assert [i.key for i in spool.due(0.0, limit=2)] == keys[:2]


def test_retry_schedule(spool):
    spool.put("A", {})
    spool.put("B", {})
    spool.retry("A", next_at=100.0, error="broker down")
    assert [i.key for i in spool.due(now=99.9)] == ["B"]
    (a, b) = spool.due(now=100.0)
    assert (a.key, a.attempts, a.next_at, a.last_error) == ("A", 1, 100.0, "broker down")
    assert b.key == "B"
    spool.retry("A", next_at=150.0, error="timeout")
    (a,) = [i for i in spool.due(200.0) if i.key == "A"]
    assert (a.attempts, a.last_error) == (2, "timeout")
    with pytest.raises(KeyError, match="not pending"):
        spool.retry("nope", 1.0, "x")


def test_retry_delay_backs_off_to_a_cap():
    delays = [retry_delay(n, base_s=0.5, cap_s=10.0) for n in range(0, 8)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert retry_delay(10_000) == 60.0


def test_max_items_refuses_with_a_clear_error(tmp_path):
    with Spool(tmp_path / "s.db", max_items=2) as spool:
        spool.put("a", {})
        spool.put("b", {})
        with pytest.raises(SpoolFullError, match=r"2 pending items \(max_items=2\); 'c'"):
            spool.put("c", {})
        assert spool.pending() == 2
        spool.done("a")
        assert spool.put("c", {})  # room again


def test_unserialisable_body_queues_nothing(spool):
    with pytest.raises(TypeError):
        spool.put("P-1", {"bad": object()})
    assert spool.pending() == 0
    assert spool.put("P-1", {"ok": True})


def test_bad_name_and_closed_spool(tmp_path):
    with pytest.raises(ValueError, match="spool name"):
        Spool(tmp_path / "s.db", name="x; DROP TABLE")
    spool = Spool(tmp_path / "s.db")
    spool.close()
    spool.close()
    with pytest.raises(RuntimeError, match="closed"):
        spool.put("a", {})


def test_two_spools_share_a_file(tmp_path):
    with Spool(tmp_path / "s.db", name="a") as a, Spool(tmp_path / "s.db", name="b") as b:
        a.put("P-1", {"to": "a"})
        assert b.put("P-1", {"to": "b"})  # separate key spaces
        assert a.pending() == b.pending() == 1


def test_concurrent_puts_from_threads(spool):
    # 8 threads put overlapping keys: every key is queued exactly once.
    accepted: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(60):
            key = f"P-{(t * 30 + i) % 200}"
            if spool.put(key, {"thread": t}):
                with lock:
                    accepted.append(key)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(accepted) == sorted(set(accepted))
    assert len(accepted) == spool.pending() == len({i.key for i in spool.due(0.0, limit=10_000)})


WRITER = textwrap.dedent(
    """
    import sys
    from inspection.spool import Spool
    spool = Spool(sys.argv[1])
    i = 0
    while True:
        spool.put(f"P-{i}", {"i": i, "pad": "x" * 200})
        print(f"P-{i}", flush=True)  # only after put returned
        i += 1
    """
)


def test_kill_9_loses_nothing_put_returned(tmp_path):
    path = tmp_path / "outbox.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    returned = []
    try:
        for line in proc.stdout:
            returned.append(line.strip())
            if len(returned) == 150:
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: it is writing the next ones
    finally:
        proc.wait(60)
    returned += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL
    with Spool(path) as spool:
        queued = {i.key for i in spool.due(0.0, limit=100_000)}
    assert len(returned) >= 150
    assert set(returned) <= queued
    # Nothing past what was put: keys are P-0 ... P-(n-1), at most one the writer never printed.
    assert len(queued) - len(returned) in (0, 1)
