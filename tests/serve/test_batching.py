"""Dynamic batching: counted with an injected clock, never raced against the wall clock;
then through the app, with the real decoder."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from inspection.serve.batching import BatchOptions, DynamicBatcher, QueueFull


class SteppingClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float):
        self.now, self.step, self.reads = 0.0, step, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += self.step
        return self.now


def _recording(calls: list[list[int]]):
    def process(items):
        calls.append(list(items))
        return [i * 10 for i in items]

    return process


def test_waiting_items_go_in_batches_of_max_batch():
    calls: list[list[int]] = []
    batcher = DynamicBatcher(
        _recording(calls), BatchOptions(max_batch=16, max_wait_s=5.0), clock=SteppingClock(1.0)
    )
    futures = [batcher.submit(i) for i in range(40)]
    assert batcher.depth() == 40
    sizes = [batcher.run_once(timeout=0) for _ in range(4)]
    assert sizes == [16, 16, 8, 0]
    assert [len(c) for c in calls] == [16, 16, 8] and batcher.batches == 3
    assert [f.result(timeout=0) for f in futures] == [i * 10 for i in range(40)]


def test_the_wait_for_a_batch_to_fill_follows_the_injected_clock():
    # An hour's wait by the clock, which moves two hours a read: the batch closes at
    # once with the one item, without waiting an hour of real time.
    clock = SteppingClock(step=7200.0)
    calls: list[list[int]] = []
    batcher = DynamicBatcher(
        _recording(calls), BatchOptions(max_batch=8, max_wait_s=3600.0), clock=clock
    )
    future = batcher.submit(1)
    assert batcher.run_once(timeout=0) == 1
    assert calls == [[1]] and future.result(timeout=0) == 10
    assert clock.reads == 2  # the deadline, then one look at it


def test_items_already_waiting_join_after_the_deadline():
    clock = SteppingClock(step=10.0)
    calls: list[list[int]] = []
    batcher = DynamicBatcher(
        _recording(calls), BatchOptions(max_batch=8, max_wait_s=0.0), clock=clock
    )
    for i in range(5):
        batcher.submit(i)
    assert batcher.run_once(timeout=0) == 5 and calls == [[0, 1, 2, 3, 4]]


def test_a_failing_batch_fails_its_own_items_only():
    def process(items):
        if 13 in items:
            raise RuntimeError("decoder exploded")
        return items

    batcher = DynamicBatcher(process, BatchOptions(max_batch=2, max_wait_s=0.0))
    futures = [batcher.submit(i) for i in (12, 13, 14, 15)]
    assert batcher.run_once(timeout=0) == 2 and batcher.run_once(timeout=0) == 2
    for f in futures[:2]:
        with pytest.raises(RuntimeError, match="exploded"):
            f.result(timeout=0)
    assert [f.result(timeout=0) for f in futures[2:]] == [14, 15]


def test_an_exception_as_a_result_fails_that_item_alone():
    def process(items):
        return [ValueError(f"bad {i}") if i == 2 else i for i in items]

    batcher = DynamicBatcher(process, BatchOptions(max_batch=4, max_wait_s=0.0))
    futures = [batcher.submit(i) for i in range(4)]
    assert batcher.run_once(timeout=0) == 4
    with pytest.raises(ValueError, match="bad 2"):
        futures[2].result(timeout=0)
    assert [futures[i].result(timeout=0) for i in (0, 1, 3)] == [0, 1, 3]


def test_a_full_queue_refuses_and_a_cancelled_item_is_skipped():
    calls: list[list[int]] = []
    batcher = DynamicBatcher(_recording(calls), BatchOptions(max_batch=4, max_queue=3))
    futures = [batcher.submit(i) for i in range(3)]
    with pytest.raises(QueueFull):
        batcher.submit(3)
    assert futures[1].cancel()
    batcher.run_once(timeout=0)
    assert calls == [[0, 2]] and futures[2].result(timeout=0) == 20


def test_the_worker_thread_batches_concurrent_submits():
    # The first batch is held until all 12 items are queued: then exactly 12 / 4 calls.
    calls: list[list[int]] = []
    release = threading.Event()

    def process(items):
        release.wait(60)
        calls.append(list(items))
        return items

    batcher = DynamicBatcher(process, BatchOptions(max_batch=4, max_wait_s=0.0))
    batcher.start()
    try:
        with ThreadPoolExecutor(12) as pool:
            futures = list(pool.map(batcher.submit, range(12)))
            release.set()
            results = [f.result(timeout=60) for f in futures]
    finally:
        batcher.stop()
    assert results == list(range(12))
    assert sum(len(c) for c in calls) == 12 and len(calls) < 12
    assert all(len(c) <= 4 for c in calls)


# -- through the app: N concurrent requests, fewer decode calls ------------------------


def test_concurrent_requests_share_decode_calls(tmp_path_factory, bracket_standard):
    pytest.importorskip("fastapi")
    pytest.importorskip("prometheus_client")
    pytest.importorskip("torch")
    from serve_helpers import STANDARDS_DIR, payload, running_client, tiny_decoder_dir

    import inspection.serve.decoding as decoding
    from inspection.serve.auth import KeyStore
    from inspection.serve.settings import ServeSettings

    db = tmp_path_factory.mktemp("serve-batch") / "service.db"
    token = KeyStore(db).add("bench")
    n = 6
    settings = ServeSettings(
        decoder_dir=tiny_decoder_dir(tmp_path_factory),
        standards_dirs=(STANDARDS_DIR,),
        db_path=db,
        max_batch=n,
        max_wait_ms=60_000,  # the batch fills long before: it closes at n parts
    )
    decode_calls: list[int] = []
    real = decoding.decode

    def counting(model, requests, options):
        decode_calls.append(len(requests))
        return real(model, requests, options)

    mp = pytest.MonkeyPatch()
    mp.setattr(decoding, "decode", counting)  # counts calls; the real decode runs
    try:
        with running_client(settings) as (client, service):
            headers = {"Authorization": f"Bearer {token}"}
            bodies = [payload(bracket_standard, f"batch-{i}", seed=i) for i in range(n)]
            with ThreadPoolExecutor(n) as pool:
                answers = list(
                    pool.map(lambda b: client.post("/v1/reports", json=b, headers=headers), bodies)
                )
            assert [a.status_code for a in answers] == [200] * n
            ids = [a.json()["part_id"] for a in answers]
            assert ids == [f"batch-{i}" for i in range(n)]
            assert [a.json()["report"]["part_id"] for a in answers] == ids
            assert decode_calls == [n] and service.batcher.batches == 1
            assert "inspection_serve_batch_size_sum 6.0" in client.get("/metrics").text
    finally:
        mp.undo()
