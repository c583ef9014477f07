"""The station daemon: capture -> decide within the cycle time -> actuate + record.

Threads
-------
- **capture** pulls parts from the :class:`~inspection.capture.PartSource`, notes each
  part id in a durable *journal* (a :class:`~inspection.spool.Spool`) and hands it to the
  decision pool; at most ``max_inflight`` parts are in flight (the source waits beyond).
- **decide**: ``workers`` threads run the model (an edge bundle's
  :class:`~inspection.edge.runtime.EdgeRuntime`, or the line's
  :class:`~inspection.pipeline.Inspector` on a model folder or ``.onnx``).
- **finish** takes the parts in capture order and waits for each verdict until the part's
  deadline (captured + ``cycle_time_ms``). A verdict not ready by then is ``late_verdict``
  (REJECT by default, or REVIEW) with the reason "no verdict within N ms": recorded and
  published as such, never PASS. The real verdict, when it arrives later, is attached to
  the record as a note (a report of kind ``late_verdict``), never published.
- the **main loop** (the caller's thread) feeds the systemd watchdog, replays spooled
  records and updates the gauges.

Every part captured is recorded exactly once (the record store is idempotent by part id)
or recorded as not inspected with the reason. The order per part is record, then publish,
then clear the journal: a ``kill -9`` at any point leaves the part in the journal, and the
next start records it as not inspected ("daemon restarted before a verdict"), or, when its
record was written, queues its recorded verdict again (the bus spool is idempotent by part
id, so a verdict already queued is not sent twice by this).

Errors in a part (a corrupt frame, NaN audio, a model error) give REVIEW with the reason
and the daemon keeps running. SIGTERM stops capture, lets the parts in flight finish (each
is bounded by its deadline), delivers what it can, and exits 0.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from inspection.capture.base import CaptureError, PartSource
from inspection.errors import UserError
from inspection.records.evidence import frame_evidence
from inspection.spool import Spool
from inspection.station.config import SimulatorSource, StationConfig
from inspection.station.metrics import MetricsServer, StationMetrics
from inspection.types import Action, InspectionResult, Observation, Verdict

if TYPE_CHECKING:  # the daemon's module loads without the pipeline; build_runtime imports it
    from inspection.pipeline import Thresholds
    from inspection.standards import Standard

log = logging.getLogger("inspection.station")

RESTARTED = "daemon restarted before a verdict"
SHUTDOWN = "daemon stopped before a verdict"
_TICK_S = 0.5
_POLL_S = 0.005  # how often the finisher looks at the clock while a verdict is pending


# ---------------------------------------------------------------------- sd_notify


def sd_notify(message: str, socket_path: str | None = None) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``) to systemd.

    Parameters
    ----------
    message : str
        The notification, as ``sd_notify(3)`` defines it.
    socket_path : str | None
        The socket; ``None``: ``$NOTIFY_SOCKET`` (unset outside systemd: nothing is sent).

    Returns
    -------
    bool
        Whether it was sent. Never raises: a station must not stop because systemd's
        socket is briefly unreachable.
    """
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as error:
        log.warning("sd_notify %s failed: %s", message, error)
        return False
    return True


def watchdog_interval_s(default: float = 10.0) -> float:
    """Half of systemd's ``$WATCHDOG_USEC`` (as ``sd_watchdog_enabled(3)`` advises)."""
    try:
        return max(0.1, int(os.environ["WATCHDOG_USEC"]) / 2e6)
    except (KeyError, ValueError):
        return default


# ---------------------------------------------------------------------- what decides


class Runtime(Protocol):
    """What decides parts: ``inspect(observation) -> (result, payload or None)``."""

    def inspect(self, observation: Observation) -> tuple[InspectionResult, Any]: ...


@dataclass
class InspectorRuntime:
    """The line's :class:`~inspection.pipeline.Inspector` as a runtime (no cloud payload).

    Used until the station has an edge bundle: a torch model folder or an ``.onnx``.
    """

    inspector: Any

    def inspect(self, observation: Observation) -> tuple[InspectionResult, None]:
        return self.inspector.inspect(observation), None


def build_runtime(config: StationConfig) -> Runtime:
    """The runtime ``config.model`` names: a bundle folder, a model folder or ``.onnx``.

    Raises
    ------
    UserError, ModelError
        A missing or modified model, an unknown product or standard.
    """
    from inspection.edge.bundle import is_bundle

    path = config.model.path
    if is_bundle(path) and config.model.normality is not None:
        raise UserError(
            f"model.normality: an edge bundle ({path}) carries its own (inspection export "
            "--format bundle --normality DIR); set normality: null, or give a model folder "
            "or .onnx path"
        )
    if is_bundle(path):
        from inspection.edge.bundle import load_bundle
        from inspection.edge.runtime import EdgeRuntime

        edge = EdgeRuntime(
            load_bundle(path),
            product=config.product,
            threads=config.model.threads,
            review_from=config.model.review_from,
            guard_band=config.model.guard_band,
            profiler_dents=config.model.profiler_dents,
        )
        _say_dent_depth_reading(edge.inspector(config.product), config.station)
        return edge
    from inspection.config import standard_path
    from inspection.pipeline import (
        Inspector,
        line_thresholds,
        load_detector,
    )
    from inspection.standards import load_standard

    if config.model.threads is not None and path.suffix != ".onnx":
        import torch

        torch.set_num_threads(config.model.threads)
    detector, metadata = load_detector(path, config.model.verify, config.model.normality)
    standard = load_standard(config.model.standard or standard_path(config.product))
    thresholds = line_thresholds(
        metadata,
        review_from=config.model.review_from,
        guard_band=config.model.guard_band,
        profiler_dents=config.model.profiler_dents,
    )
    inspector = Inspector(detector, standard, thresholds)
    _say_dent_depth_reading(inspector, config.station)
    return InspectorRuntime(inspector)


def _say_dent_depth_reading(inspector: Any, station: str) -> None:
    said = dent_depth_reading(inspector.standard, inspector.thresholds)
    if said:
        log.info(said, extra={"station": station})


def dent_depth_reading(standard: Standard, thresholds: Thresholds) -> str:
    """How the station reads the dent depth its standard limits, in words for its log
    (``""`` where no clause limits one): where a frame carries a height map (a 3D
    profiler), from it; else from the dent's shading, where the guard band carries a
    calibration of it (``inspection evaluate`` on limit samples); else not at all, and the
    clause sends the dent to REVIEW."""
    clauses = standard.limiting("dent", "depth_mm")
    if not clauses:
        return ""
    said = f"clause(s) {', '.join(clauses)} of {standard.id} limit a dent's depth: read on a "
    said += "frame's height map (a 3D profiler) where it has one, else "
    shading = thresholds.guard.shading if thresholds.guard is not None else None
    if shading is not None:
        steep = f"; {shading.steep_words}" if shading.steep_words else ""
        return said + (
            f"from the dent's shading (light from {shading.azimuth_deg:.0f} degrees, "
            f"calibrated on {shading.pairs} dents of known depth{steep})"
        )
    return said + (
        "not read: such a dent goes to REVIEW (to read it from its shading, run `inspection "
        "evaluate` on limit samples, dents of known depth, and give its shading_depth.json "
        "as model.guard_band)"
    )


def runtime_versions(runtime: Any) -> dict[str, str | None]:
    """The model and standard versions a fallback verdict carries (best effort)."""
    inspector = getattr(runtime, "inspector", None)
    if callable(inspector):  # EdgeRuntime.inspector(product)
        try:
            inspector = inspector()
        except Exception:
            inspector = None
    standard = getattr(inspector, "standard", None)
    detector = getattr(inspector, "detector", None)
    return {
        "standard_id": getattr(standard, "id", None),
        "standard_version": getattr(standard, "version", None),
        "model_version": getattr(detector, "version", None),
    }


# ---------------------------------------------------------------------- sources


class SimulatorParts(PartSource):
    """Synthetic parts for a simulated station (see :class:`SimulatorSource`).

    Parameters
    ----------
    options : SimulatorSource
        Count, seed, size, rate, and how many distinct parts to synthesise.
    product, station : str
        What the parts are, and where.
    sleep, clock : callables
        Pacing at ``rate_hz`` (injected by tests).
    """

    def __init__(
        self,
        options: SimulatorSource,
        product: str,
        station: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from inspection.capture.simulator import SimulatedLine

        self.options = options
        self.line = SimulatedLine(
            product, n=None, seed=options.seed, defect_rate=options.defect_rate,
            size=options.size, station=station, profiler=options.profiler,
        )  # fmt: skip
        self.sleep, self.clock = sleep, clock
        self._cache: dict[int, Observation] = {}

    def _make(self, index: int) -> Observation:
        from inspection.capture.simulator import LINE_INDEX_OFFSET
        from inspection.synth import generate_part

        distinct = self.options.distinct
        key = index % distinct if distinct else index
        if key not in self._cache:
            part = generate_part(
                self.line.product,
                LINE_INDEX_OFFSET + key,
                self.options.seed,
                self.line._defect_class(key),
                size=self.options.size,
            )
            observation = self.line.observe(part, datetime.now(UTC))
            if not distinct:
                return observation
            self._cache[key] = observation
        product, seed = self.line.product, self.options.seed
        return replace(
            self._cache[key], part_id=f"{product}-s{seed}-{index:06d}", timestamp=datetime.now(UTC)
        )

    def __iter__(self) -> Iterator[Observation]:
        options = self.options
        stop = None if options.n is None else options.first_index + options.n
        period = 1.0 / options.rate_hz if options.rate_hz else 0.0
        next_at = self.clock()
        for index in itertools.count(options.first_index):
            if stop is not None and index >= stop:
                return
            if period:
                wait = next_at - self.clock()
                if wait > 0:
                    self.sleep(wait)
                next_at = max(next_at + period, self.clock() - period)
            yield self._make(index)


# ---------------------------------------------------------------------- the daemon


@dataclass
class _Job:
    """One part in flight (internal)."""

    observation: Observation
    captured: float  # clock seconds
    deadline: float
    future: cf.Future | None = None
    gap: str | None = None  # captured but not decidable: the reason


@dataclass
class DaemonStats:
    """Counts since start (what the tests and ``/metrics`` compare)."""

    captured: int = 0
    duplicates: int = 0
    recorded: int = 0
    not_inspected: int = 0
    published: int = 0
    late: int = 0
    late_notes: int = 0
    errors: int = 0
    recovered: int = 0
    latencies_s: list[float] = field(default_factory=list)


def fallback_result(
    part_id: str, verdict: Verdict, reason: str, versions: dict[str, str | None]
) -> InspectionResult:
    """A verdict the daemon makes without the model (late, error, capture gap).

    Never PASS. The disposition is REVIEW whatever the verdict: a part rejected because
    it could not be judged needs a person, not the scrap bin.
    """
    if verdict is Verdict.PASS:
        raise ValueError("a fallback verdict is never PASS")
    return InspectionResult(
        part_id=part_id,
        verdict=verdict,
        severity=None,
        action=Action.REVIEW,
        reasons=(reason,),
        **versions,
    )


class StationDaemon:
    """One inspection station, unattended.

    Parameters
    ----------
    config : StationConfig
        The station (see ``edge/station.yaml``).
    clock : Callable[[], float]
        Monotonic seconds for deadlines and latencies (tests inject one).
    source : PartSource | None
        Where parts come from; ``None``: ``config.source``.
    runtime : Runtime | None
        What decides; ``None``: ``config.model``.
    notify : Callable[[str], bool]
        Where systemd notifications go (:func:`sd_notify`).

    Examples
    --------
    >>> daemon = StationDaemon(load_config("edge/station.yaml"))  # doctest: +SKIP
    >>> daemon.install_signal_handlers()  # doctest: +SKIP
    >>> raise SystemExit(daemon.run())  # doctest: +SKIP
    """

    def __init__(
        self,
        config: StationConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        source: PartSource | None = None,
        runtime: Runtime | None = None,
        notify: Callable[[str], bool] = sd_notify,
    ) -> None:
        self.config = config
        self.clock = clock
        self.notify = notify
        self.metrics = StationMetrics()
        self.stats = DaemonStats()
        self.late_parts: set[str] = set()
        self._source = source
        self._runtime = runtime
        self._cycle_s = config.cycle_time_ms / 1000.0
        self._late = Verdict(config.late_verdict)
        self._stop = threading.Event()
        self._source_done = threading.Event()
        self._ready = threading.Event()
        self._slots = threading.BoundedSemaphore(config.max_inflight)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._inflight = 0
        self._lock = threading.Lock()
        self._last_tick = clock()
        self._threads: list[threading.Thread] = []
        self.bus: Any = None
        self.records: Any = None
        self.journal: Spool | None = None
        self.outbox: Any = None
        self.forwarder: Any = None
        self.server: MetricsServer | None = None
        self._pool: cf.ThreadPoolExecutor | None = None
        self._versions: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lifecycle

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the daemon gracefully (main thread only)."""
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())

    def request_stop(self) -> None:
        """Stop taking parts; :meth:`run` drains what is in flight and returns."""
        self._stop.set()

    def start(self) -> None:
        """Open the stores, recover the journal, connect the bus, start the threads."""
        from inspection.records import RecordStore

        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        if self._runtime is None:
            self._runtime = build_runtime(config)
        self._versions = runtime_versions(self._runtime)
        if self._source is None:
            from inspection.station.sources import build_source

            self._source = build_source(config)
        rec = config.records
        self.records = RecordStore(
            rec.url, rec.evidence_dir, rec.spool_path, busy_timeout_s=rec.busy_timeout_s
        )
        self.journal = Spool(config.state_dir / "journal.db", name="journal")
        self.bus = self._make_bus()
        attach = getattr(self._source, "attach_bus", None)
        if attach is not None:
            attach(self.bus)  # a camera fired by the line's part-present messages
        self._recover()
        if self.bus is not None:
            self.bus.connect()
        self._start_cloud()
        if config.metrics.enabled:
            self.server = MetricsServer(
                self.metrics, self.healthy, self.ready, config.metrics.host, config.metrics.port
            ).start()
            log.info("metrics on http://%s:%d/metrics", self.server.host, self.server.port)
        self._pool = cf.ThreadPoolExecutor(config.workers, thread_name_prefix="station-decide")
        for name, target in (("capture", self._capture_loop), ("finish", self._finish_loop)):
            thread = threading.Thread(target=target, name=f"station-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._ready.set()
        self.notify("READY=1")
        log.info(
            "station %s ready: cycle time %d ms, late verdict %s",
            config.station, config.cycle_time_ms, config.late_verdict,
            extra={"station": config.station},
        )  # fmt: skip

    def run(self) -> int:
        """Start, run until stopped (or a finite source is done), shut down; exit code 0."""
        self.start()
        try:
            self._main_loop()
        finally:
            self.shutdown()
        return 0

    def _main_loop(self) -> None:
        interval = watchdog_interval_s()
        next_beat = 0.0
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # a gauge must never stop the station
                log.exception("station tick failed")
            if self.clock() >= next_beat and self.healthy():
                self.notify("WATCHDOG=1")
                next_beat = self.clock() + interval
            if self._source_done.is_set() and self._idle():
                log.info("source done: every part decided")
                return
            self._stop.wait(_TICK_S)

    def shutdown(self) -> None:
        """Stop capture, drain the parts in flight, deliver what can be, close."""
        self._ready.clear()
        self._stop.set()
        self.notify("STOPPING=1")
        timeout = self.config.drain_timeout_s
        capture, finish = self._threads if self._threads else (None, None)
        close_source = getattr(self._source, "close", None)
        if close_source is not None:
            close_source()  # a folder or camera iterates until closed
        if capture is not None:
            capture.join(timeout)  # a source blocked in read() is left behind (daemon thread)
        self._jobs.put(None)
        if finish is not None:
            finish.join(timeout + self._cycle_s)
        self._drain_leftovers()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        pending = self.bus.close(timeout) if self.bus is not None else 0
        if pending:
            log.warning("%d verdicts still queued; they go out on the next start", pending)
        if self.forwarder is not None:
            self.forwarder.stop(timeout)
        if self.records is not None:
            self.records.replay()
            self.records.close()
        for closable in (self.outbox, self.journal):
            if closable is not None:
                closable.close()
        if self.server is not None:
            self.server.close()
        log.info("station %s stopped", self.config.station)

    # ------------------------------------------------------------------ health

    def healthy(self) -> bool:
        """The main loop ticks and no worker thread died unexpectedly."""
        if self.clock() - self._last_tick > max(10.0, 4 * _TICK_S):
            return False
        capture_ok = all(t.is_alive() for t in self._threads) or self._source_done.is_set()
        return capture_ok or self._stop.is_set()

    def ready(self) -> bool:
        """Taking parts: started and not stopping."""
        return self._ready.is_set() and not self._stop.is_set()

    def _idle(self) -> bool:
        with self._lock:
            return self._inflight == 0

    def _tick(self) -> None:
        self._last_tick = self.clock()
        try:  # the database or a spool file may be briefly unavailable
            if self.records.spool.pending():
                self.records.replay()
            queue_depths = {
                "inflight": self._inflight,
                "journal": self.journal.pending(),
                "record_spool": self.records.spool.pending(),
                "verdict_spool": self.bus.pending() if self.bus is not None else 0,
                "outbox": self.outbox.pending() if self.outbox is not None else 0,
            }
        except Exception:
            log.exception("station tick failed")
            return
        for name, depth in queue_depths.items():
            self.metrics.queue.labels(name).set(depth)
        if self.bus is not None:
            from inspection.line import BusState

            self.metrics.bus_up.set(1 if self.bus.state is BusState.CONNECTED else 0)
        camera = getattr(self._source, "camera", None)
        if camera is not None:
            self.metrics.camera_up.set(1 if str(camera.state) == "connected" else 0)

    # ------------------------------------------------------------------ setup helpers

    def _make_bus(self) -> Any:
        bus_config = self.config.bus
        if bus_config.kind == "none":
            return None
        from inspection.line import create_bus

        # The station's own line and station ids are the ones on the wire.
        bus_config = bus_config.model_copy(
            update={"line": self.config.line, "station": self.config.station}
        )
        spool = Spool(self.config.state_dir / "verdicts.db", name=f"{bus_config.kind}_verdicts")
        return create_bus(spool, bus_config)

    def _start_cloud(self) -> None:
        cloud = self.config.cloud
        if cloud is None:
            return
        from inspection.edge.outbox import Forwarder, Outbox
        from inspection.errors import UserError

        try:
            token = cloud.token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UserError(f"cloud token file {cloud.token_file}: {error}") from None
        self.outbox = Outbox(cloud.outbox)
        self.forwarder = Forwarder(self.outbox, cloud.url, token)
        self.forwarder.start()

    def _recover(self) -> None:
        """Parts captured by an earlier run and never cleared from the journal."""
        station = self.config.station
        while True:
            items = self.journal.due(math.inf, limit=500)
            if not items:
                return
            for item in items:
                part_id = item.key
                recorded = None
                try:
                    recorded = self.records.get(part_id, station)
                except Exception as error:  # database down: the spool takes the record
                    log.warning("part %s: cannot read its record (%s)", part_id, error)
                if recorded is not None and recorded.verdict and self.bus is not None:
                    # Recorded, maybe not published: queue the recorded verdict (a no-op
                    # when it was queued already: the bus spool is idempotent).
                    self._publish_recorded(recorded)
                elif recorded is None:
                    self.records.record_not_inspected(
                        part_id, station, RESTARTED, captured_at=_parse(item.body)
                    )
                    self.stats.not_inspected += 1
                    self.metrics.parts.labels("NOT_INSPECTED").inc()
                    log.warning(RESTARTED, extra={"part_id": part_id, "reason": RESTARTED})
                self.journal.done(part_id)
                self.stats.recovered += 1

    def _publish_recorded(self, recorded: Any) -> None:
        from inspection.line import VerdictMessage

        message = VerdictMessage(
            part_id=recorded.part_id,
            station=self.config.station,
            line=self.config.line,
            verdict=Verdict(recorded.verdict),
            reasons=tuple(recorded.reasons),
            model_version=recorded.model_version,
            standard_id=recorded.standard_id,
            standard_version=recorded.standard_version,
            calibration_version=recorded.calibration_version,
            decided_at=recorded.decided_at or datetime.now(UTC),
        )
        self.bus.publish_verdict(message)

    # ------------------------------------------------------------------ capture

    def _capture_loop(self) -> None:
        try:
            self._capture()
        except Exception:
            log.exception("capture failed")
            self.metrics.errors.labels("capture").inc()
            self.stats.errors += 1
        finally:
            self.metrics.source_up.set(0)
            self._source_done.set()

    def _capture(self) -> None:
        iterator = iter(self._source)
        while not self._stop.is_set():
            if not self._take_slot():
                return
            self._hold_while_bus_down()
            t0 = self.clock()
            try:
                observation = next(iterator)
            except StopIteration:
                self._slots.release()
                return
            except CaptureError as error:
                # The source lost its device; a backend reconnects by itself, so ask again.
                self._slots.release()
                self.metrics.source_up.set(0)
                self.metrics.errors.labels("capture").inc()
                log.warning("capture error: %s", error)
                self._stop.wait(0.5)
                iterator = iter(self._source)  # a generator that raised is finished
                continue
            self.metrics.source_up.set(1)
            self.metrics.latency.labels("capture").observe(self.clock() - t0)
            self._admit(observation)

    def _take_slot(self) -> bool:
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.1):
                return True
        return False

    def _hold_while_bus_down(self) -> None:
        """``fail_safe: hold``: take no part while the line cannot hear verdicts."""
        from inspection.line import BusState

        bus = self.bus
        if bus is None or bus.config.fail_safe != "hold":
            return
        while not self._stop.is_set() and bus.state is not BusState.CONNECTED:
            bus.wait_for(BusState.CONNECTED, 0.5)

    def _admit(self, observation: Observation) -> None:
        """Journal the part, then hand it to a decision worker."""
        now = self.clock()
        part_id = observation.part_id
        queued = self.journal.put(part_id, {"captured_at": observation.timestamp.isoformat()})
        if not queued:
            self._slots.release()
            self.stats.duplicates += 1
            log.warning("part id seen before: skipped", extra={"part_id": part_id})
            self._ack(part_id, ok=True, reason=None)  # recorded before: its files go
            return
        self.stats.captured += 1
        job = _Job(observation, captured=now, deadline=now + self._cycle_s)
        if not observation.frames:
            gap = observation.metadata.get("capture_error") or "capture delivered no frame"
            job.gap = str(gap)
        else:
            job.future = self._pool.submit(self._decide, observation)
        with self._lock:
            self._inflight += 1
        self._jobs.put(job)

    # ------------------------------------------------------------------ decide

    def _decide(self, observation: Observation) -> tuple[InspectionResult, Any, float]:
        t0 = self.clock()
        try:
            result, payload = self._runtime.inspect(observation)
            if result.part_id != observation.part_id:
                raise ValueError(f"the model answered for part {result.part_id!r}")
        except Exception as error:  # a model error is REVIEW with its reason, never PASS
            log.exception("model error", extra={"part_id": observation.part_id})
            self.metrics.errors.labels("decide").inc()
            reason = f"model error: {type(error).__name__}: {error}"
            result = fallback_result(observation.part_id, Verdict.REVIEW, reason, self._versions)
            payload = None
        return result, payload, self.clock() - t0

    # ------------------------------------------------------------------ finish

    def _finish_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._finish(job)
            except Exception:
                log.exception("finishing failed", extra={"part_id": job.observation.part_id})
                self.metrics.errors.labels("finish").inc()
                self.stats.errors += 1
            finally:
                with self._lock:
                    self._inflight -= 1
                self._slots.release()

    def _wait_verdict(self, job: _Job) -> tuple[InspectionResult, Any, float] | None:
        """The worker's answer, or ``None`` once the part's deadline passed."""
        future = job.future
        while True:
            remaining = job.deadline - self.clock()
            if future.done():
                return future.result()
            if remaining <= 0:
                return None
            # Wait in short steps and read the (injectable) clock again.
            cf.wait([future], timeout=min(remaining, _POLL_S * 20))

    def _finish(self, job: _Job) -> None:
        part_id = job.observation.part_id
        if job.gap is not None:
            self._record_gap(job)
            return
        answer = self._wait_verdict(job)
        if answer is None:
            reason = f"no verdict within {self.config.cycle_time_ms} ms"
            result = fallback_result(part_id, self._late, reason, self._versions)
            payload, late = None, True
            self.stats.late += 1
            self.late_parts.add(part_id)
            self.metrics.late.inc()
            log.warning(reason, extra={"part_id": part_id, "verdict": result.verdict.value})
        else:
            result, payload, decide_s = answer
            late = False
            self.metrics.latency.labels("decide").observe(decide_s)
        self._deliver(job, result, payload)
        if late:
            job.future.add_done_callback(lambda f: self._late_note(part_id, f))

    def _deliver(self, job: _Job, result: InspectionResult, payload: Any) -> None:
        """Record, then publish, then clear the journal (the crash-safe order)."""
        observation = job.observation
        part_id = observation.part_id
        t0 = self.clock()
        images = self._evidence(observation, result)
        try:
            self.records.record(
                part_id, self.config.station, result, images=images,
                captured_at=observation.timestamp, product=observation.product,
            )  # fmt: skip
            self.stats.recorded += 1
        except Exception as error:
            # The part stays in the journal: the next start records it as not inspected.
            log.exception("record failed: %s", error, extra={"part_id": part_id})
            self.metrics.errors.labels("record").inc()
            self.stats.errors += 1
        t1 = self.clock()
        self.metrics.latency.labels("record").observe(t1 - t0)
        self._publish(result)
        t2 = self.clock()
        self.metrics.latency.labels("publish").observe(t2 - t1)
        if payload is not None and self.outbox is not None:
            try:
                self.outbox.put(payload)
            except Exception as error:
                log.warning("outbox refused the payload: %s", error, extra={"part_id": part_id})
                self.metrics.errors.labels("outbox").inc()
        self.journal.done(part_id)
        self._ack(part_id, ok=True, reason=None)
        latency = t2 - job.captured
        self.stats.latencies_s.append(latency)
        self.metrics.latency.labels("trigger_to_verdict").observe(latency)
        self.metrics.parts.labels(result.verdict.value).inc()
        log.info(
            "%s", result.verdict.value,
            extra={"part_id": part_id, "verdict": result.verdict.value},
        )  # fmt: skip

    def _publish(self, result: InspectionResult) -> None:
        if self.bus is None:
            return
        from inspection.line import VerdictMessage

        message = VerdictMessage.from_result(
            result, station=self.config.station, line=self.config.line
        )
        try:
            if self.bus.publish_verdict(message):
                self.stats.published += 1
        except Exception as error:  # spool full: the fail-safe is the line's default
            log.error("verdict not queued: %s", error, extra={"part_id": result.part_id})
            self.metrics.errors.labels("publish").inc()
            self.stats.errors += 1

    def _evidence(self, observation: Observation, result: InspectionResult) -> list[Any]:
        policy = self.config.records.evidence
        if policy == "none" or (policy == "not_pass" and result.verdict is Verdict.PASS):
            return []
        return frame_evidence(observation.frames)

    def _record_gap(self, job: _Job) -> None:
        """A part captured without a usable frame: not inspected, and the line is told
        the fail-safe verdict with the reason."""
        part_id, reason = job.observation.part_id, job.gap
        try:
            self.records.record_not_inspected(
                part_id, self.config.station, reason, captured_at=job.observation.timestamp
            )
        except Exception:
            log.exception("record failed", extra={"part_id": part_id})
            self.stats.errors += 1
            return
        self.stats.not_inspected += 1
        self._publish(fallback_result(part_id, self._late, reason, self._versions))
        self.journal.done(part_id)
        self._ack(part_id, ok=False, reason=reason)
        self.metrics.parts.labels("NOT_INSPECTED").inc()
        log.warning("not inspected: %s", reason, extra={"part_id": part_id, "reason": reason})

    def _ack(self, part_id: str, ok: bool, reason: str | None) -> None:
        """Tell a source that keeps files (a folder) the part is recorded."""
        ack = getattr(self._source, "ack", None)
        if ack is None:
            return
        try:
            ack(part_id, ok, reason)
        except Exception as error:  # the record stands; the file stays in the inbox
            log.warning("could not acknowledge: %s", error, extra={"part_id": part_id})

    def _late_note(self, part_id: str, future: cf.Future) -> None:
        """The real verdict of a part already decided late: a note on its record."""
        if future.cancelled():
            return
        result, _, decide_s = future.result()
        note = {
            "kind": "late_verdict",
            "verdict": result.verdict.value,
            "decide_ms": round(decide_s * 1000, 1),
            "cycle_time_ms": self.config.cycle_time_ms,
            "result": result.to_json(),
        }
        try:
            self.records.add_report(part_id, self.config.station, note)
            self.stats.late_notes += 1
        except Exception as error:  # the record is spooled, or the database is down
            log.warning(
                "late verdict %s not attached (%s)", result.verdict.value, error,
                extra={"part_id": part_id, "verdict": result.verdict.value},
            )  # fmt: skip

    def _drain_leftovers(self) -> None:
        """Parts still queued after the drain timeout: recorded as not inspected."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                continue
            part_id = job.observation.part_id
            try:
                self.records.record_not_inspected(
                    part_id, self.config.station, SHUTDOWN, captured_at=job.observation.timestamp
                )
                self.journal.done(part_id)
                self.stats.not_inspected += 1
            except Exception:
                log.exception("record failed", extra={"part_id": part_id})


def _parse(body: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(body["captured_at"])
    except (KeyError, TypeError, ValueError):
        return None
