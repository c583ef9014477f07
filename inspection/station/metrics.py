"""What the station tells its operators: Prometheus metrics, health, JSON logs.

:class:`StationMetrics` keeps its own :class:`~prometheus_client.CollectorRegistry` (two
daemons in one test process, or a library user's own registry, never collide on the
global one). :class:`MetricsServer` serves ``/metrics``, ``/healthz`` (the main loop is
alive) and ``/readyz`` (the daemon is taking parts) from a stdlib HTTP server thread.
:class:`JsonFormatter` writes one JSON object per log line, with the part id where the
record has one (``log.info(..., extra={"part_id": pid})``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

STAGES = ("capture", "decide", "publish", "record", "trigger_to_verdict")
# Seconds: a line's cycle is tens of ms to a few s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StationMetrics:
    """The daemon's Prometheus metrics, in their own registry.

    Attributes
    ----------
    parts : Counter
        ``inspection_parts_total{verdict}``: PASS, REJECT, REVIEW, NOT_INSPECTED.
    late : Counter
        ``inspection_late_verdicts_total``: parts decided by the cycle-time rule.
    errors : Counter
        ``inspection_errors_total{kind}``: capture, decide, record, publish.
    latency : Histogram
        ``inspection_stage_seconds{stage}``: capture, decide, publish, record and
        trigger_to_verdict.
    queue : Gauge
        ``inspection_queue_depth{queue}``: inflight, verdict_spool, record_spool,
        journal, outbox.
    bus_up, source_up, camera_up : Gauge
        1 while the bus is connected / the source delivers parts / the camera (a camera
        source only) delivers frames.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.parts = Counter(
            "inspection_parts", "Parts decided, by verdict", ["verdict"], registry=r
        )
        self.late = Counter(
            "inspection_late_verdicts", "Parts with no verdict within the cycle time", registry=r
        )
        self.errors = Counter("inspection_errors", "Errors, by kind", ["kind"], registry=r)
        self.latency = Histogram(
            "inspection_stage_seconds", "Stage latency", ["stage"], buckets=BUCKETS, registry=r
        )
        self.queue = Gauge("inspection_queue_depth", "Items waiting", ["queue"], registry=r)
        self.bus_up = Gauge(
            "inspection_bus_connected", "1 while the line bus is connected", registry=r
        )
        self.source_up = Gauge(
            "inspection_source_up", "1 while the source delivers parts", registry=r
        )
        self.camera_up = Gauge(
            "inspection_camera_connected", "1 while the camera delivers frames", registry=r
        )
        for verdict in ("PASS", "REJECT", "REVIEW", "NOT_INSPECTED"):
            self.parts.labels(verdict)  # present at 0 from the start
        for stage in STAGES:
            self.latency.labels(stage)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a small threaded HTTP server.

    Parameters
    ----------
    metrics : StationMetrics
        What ``/metrics`` shows.
    healthy, ready : Callable[[], bool]
        Answer ``/healthz`` and ``/readyz`` (200 when true, 503 otherwise).
    host, port : str, int
        Where to listen; port ``0`` picks a free one (:attr:`port` tells which).
    """

    def __init__(
        self,
        metrics: StationMetrics,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, bytes, str]]] = {
            "/metrics": lambda: (200, metrics.render(), CONTENT_TYPE_LATEST),
            "/healthz": lambda: _probe(healthy()),
            "/readyz": lambda: _probe(ready()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                status, body, kind = route() if route else (404, b"not found\n", "text/plain")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the station's log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="station-metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(ok: bool) -> tuple[int, bytes, str]:
    return (200, b"ok\n", "text/plain") if ok else (503, b"not ok\n", "text/plain")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and ``part_id`` (and any
    other ``extra`` field the daemon sets) where the record has it."""

    FIELDS = ("part_id", "verdict", "reason", "station")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Log to stderr (journald takes it under systemd), JSON lines or plain text."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
