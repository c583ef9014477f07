"""Dynamic batching: requests queue, one worker decodes them together.

The decoder's cost grows far less than linearly with the batch (one forward pass a
token for every row), so a service that decodes whatever is waiting, up to
``max_batch``, serves several times the parts a second of one that decodes them one by
one. The worker takes the first waiting item, waits up to ``max_wait_s`` for the batch
to fill (never past it), takes whatever else is already waiting, and hands the batch to
``process`` in one call; each item's future gets its own result, or the batch's error.

The queue is bounded: :meth:`DynamicBatcher.submit` raises :class:`QueueFull` rather
than let a burst grow memory and latency without end (the service answers 503 with
``Retry-After``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The longest single wait on the queue: the worker re-reads the clock at least this
# often, so that an injected clock (tests) and stop() are both noticed promptly.
_POLL_S = 0.05


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` items already."""


@dataclass(frozen=True)
class BatchOptions:
    """How to batch.

    Attributes
    ----------
    max_batch : int
        Items a batch holds at most.
    max_wait_s : float
        After the first item of a batch arrives, how long to wait for more.
    max_queue : int
        Items waiting at most (``submit`` past it raises :class:`QueueFull`).
    """

    max_batch: int = 16
    max_wait_s: float = 0.02
    max_queue: int = 512

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_s >= 0")


class DynamicBatcher(Generic[T, R]):
    """One worker thread that calls ``process`` on batches of submitted items.

    Parameters
    ----------
    process : Callable[[Sequence[T]], Sequence[R]]
        Turns a batch into one result per item, in order; an ``Exception`` instance as
        a result fails that item alone. An exception raised fails every item of that
        batch (and only that batch).
    options : BatchOptions
        Batch size, wait and queue bound.
    clock : Callable[[], float]
        Monotonic seconds (injectable for tests).
    on_batch : Callable[[int, float], None] | None
        Called after each batch with its size and the seconds ``process`` took
        (metrics).
    """

    def __init__(
        self,
        process: Callable[[Sequence[T]], Sequence[R]],
        options: BatchOptions = BatchOptions(),
        *,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.process = process
        self.options = options
        self.clock = clock
        self.on_batch = on_batch
        self._queue: queue.Queue[tuple[T, Future[R]]] = queue.Queue(maxsize=options.max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0  # batches processed (read by tests and metrics)

    # -- the caller's side ------------------------------------------------------------

    def submit(self, item: T) -> Future[R]:
        """Queue ``item``; its future resolves once its batch is processed.

        Raises
        ------
        QueueFull
            ``max_queue`` items are waiting already.
        """
        future: Future[R] = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise QueueFull(f"{self.options.max_queue} requests are waiting") from None
        return future

    def depth(self) -> int:
        """Items waiting (not yet taken into a batch)."""
        return self._queue.qsize()

    # -- the worker -------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="report-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current batch; items still queued fail."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        while True:
            try:
                _, future = self._queue.get_nowait()
            except queue.Empty:
                break
            future.set_exception(RuntimeError("the report service is shutting down"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once(timeout=_POLL_S)

    def collect(self, timeout: float | None = None) -> list[tuple[T, Future[R]]]:
        """Take one batch from the queue: the first item (waiting up to ``timeout``
        seconds of real time for it; ``None``: until one comes), then more until
        ``max_batch`` or ``max_wait_s`` after the first by :attr:`clock`, then whatever
        else is already waiting. Empty when no first item came."""
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        deadline = self.clock() + self.options.max_wait_s
        while len(batch) < self.options.max_batch:
            remaining = deadline - self.clock()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())  # already waiting: no reason to leave it
                else:
                    batch.append(self._queue.get(timeout=min(remaining, _POLL_S)))
            except queue.Empty:
                if remaining <= 0 or self._stop.is_set():
                    break
        return batch

    def run_once(self, timeout: float | None = None) -> int:
        """Collect one batch (see :meth:`collect`) and process it; returns its size."""
        # A request that gave up (cancelled its future) is dropped, not decoded.
        batch = [(i, f) for i, f in self.collect(timeout) if f.set_running_or_notify_cancel()]
        if not batch:
            return 0
        items = [item for item, _ in batch]
        start = time.perf_counter()
        try:
            results = list(self.process(items))
            if len(results) != len(items):
                raise RuntimeError(f"process returned {len(results)} results for {len(items)}")
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):  # that item alone failed
                    future.set_exception(result)
                else:
                    future.set_result(result)
        self.batches += 1
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - start)
        return len(batch)
