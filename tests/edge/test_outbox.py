"""The outbox and its forwarder against a real loopback HTTP server that answers what each
test chooses (the real report service is in ``test_store_and_forward.py``)."""

from __future__ import annotations

import json
import logging
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from edge_guard import run_without_torch

from inspection.edge.outbox import (
    DELIVERED,
    PENDING,
    REJECTED,
    Forwarder,
    Outbox,
    OutboxFull,
    backoff_delay,
)
from inspection.edge.payload import EdgePayload, WireTensor
from inspection.errors import UserError


def make_payload(part_id: str, verdict: str = "PASS") -> EdgePayload:
    return EdgePayload(
        part_id=part_id,
        standard_id="QS-BRK-200",
        standard_version="1.0",
        model_version="m1",
        fused=WireTensor.from_array(np.full((8, 64), 0.5)),
        verdict=verdict,
    )


class FakeClock:
    """A clock the test moves by hand: backoff is checked in steps, never in real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StubCloud:
    """A loopback service: keeps the first answer per part id (as the real one does)
    unless ``respond(part_id)`` returns ``(status, body)`` instead."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []  # (part id, Authorization header)
        self.bodies: dict[str, list[dict]] = {}
        self.answers: dict[str, dict] = {}
        # (status, body) or (status, body, headers) instead of the idempotent answer
        self.respond: Callable[[str], tuple | None] = lambda part_id: None
        self.lock = threading.Lock()

    def handle(self, authorization: str, body: bytes) -> tuple:
        payload = json.loads(body)
        part_id = payload["part_id"]
        with self.lock:
            self.posts.append((part_id, authorization))
            self.bodies.setdefault(part_id, []).append(payload)
        custom = self.respond(part_id)
        if custom is not None:
            return custom
        with self.lock:
            duplicate = part_id in self.answers
            first = self.answers.setdefault(
                part_id, {"part_id": part_id, "report": {"n": len(self.answers)}}
            )
        return 200, json.dumps({**first, "duplicate": duplicate})

    def count(self, part_id: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.posts if p == part_id)


@pytest.fixture
def cloud():
    stub = StubCloud()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/reports":
                status, text, headers = 404, "{}", {}
            else:
                status, text, *more = stub.handle(self.headers.get("Authorization", ""), body)
                headers = more[0] if more else {}
            data = text.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def forwarder(outbox: Outbox, url: str, clock: FakeClock | None = None, **kw) -> Forwarder:
    """One request at a time unless a test says otherwise: the order is then exact."""
    kw.setdefault("concurrency", 1)
    return Forwarder(outbox, url, "tok-1", clock=clock or FakeClock(), rng=random.Random(0), **kw)


# ---------------------------------------------------------------------- storing


def test_put_survives_reopen(tmp_path):
    path = tmp_path / "sub" / "outbox.sqlite"
    with Outbox(path) as box:
        assert [box.put(make_payload(f"p-{i}")) for i in range(3)] == [True] * 3
        assert box.pending() == 3
    with Outbox(path) as box:
        assert box.pending() == 3
        assert [e.part_id for e in box.entries(PENDING)] == ["p-0", "p-1", "p-2"]
        assert box.db_mode() == ("wal", 2)  # journal WAL, synchronous FULL


def test_put_that_returned_survives_kill_9(tmp_path):
    """A process puts payloads and says so after each; killed with SIGKILL mid-stream,
    every payload it announced is in the file."""
    path = tmp_path / "outbox.sqlite"
    code = textwrap.dedent(
        f"""
        import numpy as np
        from inspection.edge.outbox import Outbox
        from inspection.edge.payload import EdgePayload, WireTensor
        box = Outbox({str(path)!r})
        fused = WireTensor.from_array(np.zeros((8, 64)))
        i = 0
        while True:
            box.put(EdgePayload(part_id=f"k-{{i}}", standard_id="S", standard_version="1",
                                model_version="m1", fused=fused, verdict="PASS"))
            print(f"k-{{i}}", flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    announced = []
    try:
        for line in proc.stdout:
            announced.append(line.strip())
            if len(announced) == 25:
                break
    finally:
        proc.kill()
        proc.wait(60)
        proc.stdout.close()
    assert len(announced) == 25, "the writer died before putting 25 payloads"
    with Outbox(path) as box:
        stored = {e.part_id for e in box.entries(limit=100_000)}
        assert set(announced) <= stored
        assert box.pending() == len(stored)


def test_put_is_idempotent_by_part_id(outbox, cloud):
    assert outbox.put(make_payload("p-1", "REJECT"))
    assert not outbox.put(make_payload("p-1", "PASS"))  # the first payload wins
    assert outbox.pending() == 1
    assert forwarder(outbox, cloud.url).send_due() == 1
    assert cloud.bodies["p-1"][0]["verdict"] == "REJECT"
    assert not outbox.put(make_payload("p-1"))  # delivered parts stay known
    assert outbox.pending() == 0


def test_put_refuses_past_max_pending(tmp_path, cloud):
    with Outbox(tmp_path / "o.sqlite", max_pending=3) as box:
        for i in range(3):
            assert box.put(make_payload(f"p-{i}"))
        with pytest.raises(OutboxFull, match=r"max_pending=3.*'p-3' was not stored"):
            box.put(make_payload("p-3"))
        assert not box.put(make_payload("p-1"))  # a known part is still answered
        assert box.get("p-3") is None
        forwarder(box, cloud.url, batch=1).send_due()
        assert box.put(make_payload("p-3"))  # room again
        assert box.stats().pending == 3


def test_put_refuses_past_max_bytes(tmp_path, cloud):
    size = len(make_payload("p-0").model_dump_json(by_alias=True))
    with Outbox(tmp_path / "o.sqlite", max_bytes=2 * size + size // 2) as box:
        assert box.put(make_payload("p-0")) and box.put(make_payload("p-1"))
        with pytest.raises(OutboxFull, match=r"max_bytes="):
            box.put(make_payload("p-2"))
        assert box.stats().pending_bytes == 2 * size
        forwarder(box, cloud.url).send_due()
        assert box.stats().pending_bytes == 0
    with Outbox(tmp_path / "o.sqlite", max_bytes=size) as box:  # bounds rebuilt on open
        assert box.put(make_payload("p-2"))
        with pytest.raises(OutboxFull):
            box.put(make_payload("p-3"))


def test_bad_arguments_are_user_errors(tmp_path, outbox):
    with pytest.raises(UserError, match="max_pending"):
        Outbox(tmp_path / "x.sqlite", max_pending=0)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match=r"garbage\.sqlite: not a usable outbox"):
        Outbox(garbage)
    with pytest.raises(UserError, match="http"):
        Forwarder(outbox, "127.0.0.1:8000", "t")
    with pytest.raises(TypeError):
        outbox.put({"part_id": "p-1"})


# ---------------------------------------------------------------------- answers


def test_delivered_with_the_answer_and_the_token(outbox, cloud):
    for i in range(3):
        outbox.put(make_payload(f"p-{i}"))
    fwd = forwarder(outbox, cloud.url)
    assert fwd.send_due() == 3
    assert {auth for _, auth in cloud.posts} == {"Bearer tok-1"}
    answer = outbox.report("p-1")
    assert answer == {
        "part_id": "p-1",
        "report": cloud.answers["p-1"]["report"],
        "duplicate": False,
    }
    entry = outbox.get("p-1")
    assert (entry.state, entry.attempts, entry.last_error) == (DELIVERED, 1, None)
    stats = outbox.stats()
    assert (stats.pending, stats.delivered, stats.rejected) == (0, 3, 0)
    assert stats.oldest_pending is None and stats.pending_bytes == 0
    assert fwd.send_due() == 0 and len(cloud.posts) == 3  # nothing sent twice


def test_duplicate_answer_counts_as_delivered(outbox, cloud):
    cloud.answers["p-1"] = {"part_id": "p-1", "report": {"n": "first"}}
    outbox.put(make_payload("p-1"))
    assert forwarder(outbox, cloud.url).send_due() == 1
    assert outbox.report("p-1") == {"part_id": "p-1", "report": {"n": "first"}, "duplicate": True}


@pytest.mark.parametrize("status", [413, 422])
def test_rejected_payloads_are_kept_and_never_retried(outbox, cloud, status):
    cloud.respond = lambda p: (status, '{"detail": "bad shape"}') if p == "p-bad" else None
    for name in ("p-0", "p-bad", "p-2"):
        outbox.put(make_payload(name))
    clock = FakeClock()
    fwd = forwarder(outbox, cloud.url, clock)
    assert fwd.send_due() == 2  # the rejection does not stop the pass
    for _ in range(5):
        clock.advance(120)
        fwd.send_due()
    entry = outbox.get("p-bad")
    assert entry.state == REJECTED
    assert f"HTTP {status}" in entry.last_error and "bad shape" in entry.last_error
    assert outbox.report("p-bad") is None
    assert cloud.count("p-bad") == 1
    assert [e.part_id for e in outbox.entries(REJECTED)] == ["p-bad"]
    assert outbox.stats().rejected == 1 and outbox.pending() == 0


@pytest.mark.parametrize("status", [401, 403])
def test_key_refused_stays_pending_loudly(outbox, cloud, caplog, status):
    cloud.respond = lambda p: (status, '{"detail": "no"}')
    outbox.put(make_payload("p-1"))
    outbox.put(make_payload("p-2"))
    clock = FakeClock()
    fwd = forwarder(outbox, cloud.url, clock)
    with caplog.at_level(logging.ERROR, logger="inspection.edge.outbox"):
        assert fwd.send_due() == 0
    assert "refused the API key" in caplog.text and f"HTTP {status}" in caplog.text
    assert len(cloud.posts) == 1  # the pass stops at the first refusal
    entry = outbox.get("p-1")
    assert (entry.state, entry.attempts) == (PENDING, 1)
    assert entry.next_attempt == 0  # not the payload's fault: no backoff of its own
    assert fwd.resume_at > clock.now
    assert fwd.send_due() == 0 and len(cloud.posts) == 1  # backing off
    cloud.respond = lambda p: None  # the key is fixed
    clock.now = fwd.resume_at
    assert fwd.send_due() == 2
    assert outbox.pending() == 0 and fwd.failures == 0


def test_a_2xx_that_is_not_an_answer_is_not_delivered(outbox, cloud):
    cloud.respond = lambda p: (200, "<html>captive portal</html>")
    outbox.put(make_payload("p-1"))
    assert forwarder(outbox, cloud.url).send_due() == 0
    entry = outbox.get("p-1")
    assert entry.state == PENDING and "without JSON" in entry.last_error
    cloud.respond = lambda p: (200, json.dumps({"part_id": "someone-else"}))
    later = FakeClock()
    later.advance(60)  # past the payload's own backoff
    fwd = forwarder(outbox, cloud.url, later)
    assert fwd.send_due() == 0
    assert "not an answer for part 'p-1'" in outbox.get("p-1").last_error


# ---------------------------------------------------------------------- backoff


def test_backoff_delay_doubles_to_the_cap_with_jitter():
    rng = random.Random(1)
    for failures, full in [(1, 0.5), (2, 1.0), (3, 2.0), (8, 60.0), (30, 60.0)]:
        delays = [backoff_delay(failures, 0.5, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full / 4  # jittered, not a constant


def test_backoff_schedule_while_the_service_is_down(outbox):
    outbox.put(make_payload("p-1"))
    clock = FakeClock()
    fwd = forwarder(outbox, closed_port_url(), clock, base_backoff=1.0, max_backoff=8.0)
    waits = []
    for failures in range(1, 7):
        assert fwd.send_due() == 0
        assert fwd.failures == failures and "ConnectError" in fwd.last_error
        waits.append(fwd.resume_at - clock.now)
        clock.advance(waits[-1] / 2)
        assert fwd.send_due() == 0 and fwd.failures == failures  # not before its time
        clock.now = fwd.resume_at
    for wait, full in zip(waits, [1, 2, 4, 8, 8, 8], strict=True):
        assert full / 2 <= wait <= full
    entry = outbox.get("p-1")
    assert entry.attempts == 6 and entry.next_attempt == 0  # nothing reached the service


def test_a_failing_payload_does_not_hold_up_the_others(outbox, cloud):
    cloud.respond = lambda p: (500, "decoder crashed") if p == "p-bad" else None
    outbox.put(make_payload("p-bad"))
    for i in range(3):
        outbox.put(make_payload(f"p-{i}"))
    clock = FakeClock()
    fwd = forwarder(outbox, cloud.url, clock)
    assert fwd.send_due() == 0  # p-bad first: the pass stops
    bad = outbox.get("p-bad")
    assert bad.next_attempt > clock.now  # it waits its own turn
    clock.now = fwd.resume_at
    assert fwd.send_due() == 3  # the others go first
    assert outbox.pending() == 1
    clock.advance(60)
    fwd.send_due()
    bad = outbox.get("p-bad")
    assert bad.state == PENDING and bad.attempts >= 2 and "HTTP 500" in bad.last_error


def test_busy_service_is_left_alone_for_retry_after(outbox, cloud):
    """503 with Retry-After (the decoder loading): the forwarder waits that long, the
    payload keeps no backoff of its own (it is not the payload's fault)."""
    cloud.respond = lambda p: (503, '{"detail": "loading"}', {"Retry-After": "5"})
    outbox.put(make_payload("p-1"))
    clock = FakeClock()
    fwd = forwarder(outbox, cloud.url, clock, base_backoff=0.5, max_backoff=60.0)
    assert fwd.send_due() == 0
    assert fwd.resume_at - clock.now == 5.0  # Retry-After beats the 0.5 s first backoff
    assert outbox.get("p-1").next_attempt == 0
    clock.advance(4.9)
    assert fwd.send_due() == 0 and cloud.count("p-1") == 1
    cloud.respond = lambda p: None
    clock.advance(0.1)
    assert fwd.send_due() == 1


def test_schedule_from_another_clock_is_clamped(outbox, cloud):
    outbox.put(make_payload("p-1"))
    clock = FakeClock()
    cloud.respond = lambda p: (503, "busy")
    fwd = forwarder(outbox, cloud.url, clock, max_backoff=4.0)
    fwd.send_due()
    # The box reboots: the monotonic clock restarts far below the stored schedule.
    clock.now = 5.0
    cloud.respond = lambda p: None
    fwd = forwarder(outbox, cloud.url, clock, max_backoff=4.0)
    assert outbox.get("p-1").next_attempt <= clock.now + 4.0
    clock.advance(4.0)
    assert fwd.send_due() == 1


def test_concurrent_sends_overlap_and_fail_together(outbox, cloud):
    """4 requests in flight at once (the stub holds each until 4 are there: one at a
    time would break the barrier); one 500 among them backs the forwarder off once."""
    barrier = threading.Barrier(4, timeout=60)

    def respond(part_id):
        barrier.wait()
        return (500, "boom") if part_id == "p-2" else None

    cloud.respond = respond
    for i in range(8):
        outbox.put(make_payload(f"p-{i}"))
    clock = FakeClock()
    fwd = forwarder(outbox, cloud.url, clock, concurrency=4, batch=8)
    assert fwd.send_due() == 3  # the first four went together; the pass stops there
    assert fwd.failures == 1 and "HTTP 500" in fwd.last_error
    assert outbox.get("p-2").state == PENDING and outbox.pending() == 5
    clock.now = fwd.resume_at
    p2 = outbox.get("p-2").next_attempt
    cloud.respond = lambda p: None
    # p-4..p-7, and p-2 after them if its own backoff has run out by now
    assert fwd.send_due() == (4 if p2 > clock.now else 5)
    clock.advance(60)
    fwd.send_due()
    assert outbox.pending() == 0
    fwd.stop()


# ---------------------------------------------------------------------- crash, threads


class Crash(BaseException):
    """The edge process dies (power, kill -9) between the answer and marking it."""


def test_crash_between_send_and_mark_resends_and_gets_the_same_report(tmp_path, cloud):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put(make_payload("p-1"))

    def die(*args):
        raise Crash

    box._finish = die
    with pytest.raises(Crash):
        forwarder(box, cloud.url).send_due()
    box.close()
    assert cloud.count("p-1") == 1  # the service has it; the outbox does not know
    with Outbox(path) as box:
        assert box.pending() == 1
        assert forwarder(box, cloud.url).send_due() == 1
        answer = box.report("p-1")
    assert cloud.count("p-1") == 2
    assert answer["duplicate"] is True
    assert answer["report"] == cloud.answers["p-1"]["report"]


def test_threads_put_while_the_forwarder_sends(outbox, cloud):
    """4 threads put 60 payloads each, half of their part ids shared with another thread,
    while the forwarder's thread sends: none lost, none stored or sent twice."""
    fwd = Forwarder(outbox, cloud.url, "tok-1", batch=8)
    fwd.start()
    results: dict[int, list[tuple[str, bool]]] = {}

    def putter(k: int) -> None:
        ids = [f"t{k}-{i}" for i in range(30)] + [f"t{(k + 1) % 4}-{i}" for i in range(30)]
        results[k] = [(p, outbox.put(make_payload(p))) for p in ids]

    threads = [threading.Thread(target=putter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    deadline = time.monotonic() + 120
    while outbox.pending() and time.monotonic() < deadline:
        time.sleep(0.05)
    fwd.stop()
    expected = {f"t{k}-{i}" for k in range(4) for i in range(30)}
    stored = [p for rows in results.values() for p, ok in rows if ok]
    assert sorted(stored) == sorted(expected)  # each part id stored exactly once
    assert sorted(p for p, _ in cloud.posts) == sorted(expected)  # each sent exactly once
    stats = outbox.stats()
    assert (stats.pending, stats.delivered) == (0, len(expected))


def test_forwarder_thread_wakes_for_new_payloads_and_stops(outbox, cloud):
    fwd = Forwarder(outbox, cloud.url, "tok-1")
    fwd.start()
    try:
        outbox.put(make_payload("p-1"))
        deadline = time.monotonic() + 60
        while outbox.report("p-1") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert outbox.report("p-1") is not None
    finally:
        fwd.stop(timeout=60)
    assert fwd._thread is None


def test_prune_drops_old_delivered_parts_only(outbox, cloud):
    from datetime import UTC, datetime, timedelta

    cloud.respond = lambda p: (422, "no") if p == "p-r" else None
    for name in ("p-d", "p-r"):
        outbox.put(make_payload(name))
    forwarder(outbox, cloud.url).send_due()
    outbox.put(make_payload("p-p"))
    assert outbox.prune(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert [e.part_id for e in outbox.entries()] == ["p-r", "p-p"]


def test_outbox_imports_without_torch():
    done = run_without_torch("import inspection.edge.outbox\n")
    assert done.returncode == 0, done.stderr
