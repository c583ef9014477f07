"""The line bus: how a station tells the line (a PLC, a reject gate) each part's verdict.

One abstract :class:`LineBus` and one module per backend (as lerobot keeps one module per
robot): :mod:`inspection.line.mqtt` (paho-mqtt against a broker) and
:mod:`inspection.line.opcua` (asyncua against a PLC's OPC UA server). The daemon only ever
talks to the base interface.

Delivery is **at least once**. :meth:`LineBus.publish_verdict` puts the verdict in a
durable :class:`~inspection.spool.Spool` and returns at once; a background publisher
drains the spool in order and marks an item done only once the line acknowledged it
(MQTT: the broker's PUBACK at QoS 1; OPC UA: a Good write status). A broker or PLC
outage therefore delays verdicts and loses none, even across a ``kill -9`` of the
daemon; the price is that a verdict whose acknowledgement was lost is sent again. Every
verdict carries its part id, so the receiver deduplicates by it.

Fail-safe: while :attr:`LineBus.state` is not ``CONNECTED`` the line does not hear
verdicts. ``BusConfig.fail_safe`` says what the daemon does meanwhile (the daemon
applies it; the bus only reports its state):

- ``"reject"``: parts keep flowing, the line's default for an unconfirmed part is the
  reject gate, and the verdicts follow when the bus is back.
- ``"hold"``: the daemon stops taking parts (the line stops) until the bus is back.

Torch-free: the edge box runs it.
"""

from __future__ import annotations

import abc
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inspection.errors import UserError
from inspection.spool import Spool
from inspection.types import InspectionResult, Verdict

logger = logging.getLogger(__name__)

VERDICT_CODES: dict[Verdict, int] = {Verdict.PASS: 1, Verdict.REJECT: 2, Verdict.REVIEW: 3}
"""The integer a PLC reads for each verdict (OPC UA ``Int32``, and ``code`` in MQTT
payloads). ``0`` is never written: it is what a freshly started server holds, so a PLC
that reads 0 knows no verdict has arrived."""

SCHEMA = "inspection.verdict/1"


class BusState(enum.StrEnum):
    """Where a bus stands with the line."""

    DISCONNECTED = "disconnected"  # not started, closed, or not yet through the first time
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # was connected, lost it, trying again by itself


class BusConfig(BaseModel):
    """What every bus is configured with (a backend's config adds its own fields).

    Attributes
    ----------
    line, station : str
        Where the station sits; MQTT topics and payloads carry them.
    fail_safe : {"reject", "hold"}
        What the daemon does while the bus is not connected (see the module docstring).
    backoff_min_s, backoff_max_s : float
        Reconnect delays: the first retry after ``backoff_min_s``, doubling up to
        ``backoff_max_s``.
    heartbeat_s : float | None
        How often the publisher sends a heartbeat by itself; ``None``: only when
        :meth:`LineBus.heartbeat` is called.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: str = Field(default="line-1", min_length=1, pattern=r"^[^/#+\s]+$")
    station: str = Field(default="station-1", min_length=1, pattern=r"^[^/#+\s]+$")
    fail_safe: Literal["reject", "hold"] = "reject"
    backoff_min_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float | None = Field(default=5.0, gt=0)


@dataclass(frozen=True)
class Backoff:
    """Exponential reconnect delays: ``min_s``, ``2 * min_s`` ... at most ``max_s``.

    Deterministic (no jitter), so that a test can inject short ones and count on them.
    """

    min_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before reconnect attempt ``attempt`` (1 for the first retry)."""
        if attempt < 1:
            return 0.0
        return min(self.max_s, self.min_s * 2.0 ** min(attempt - 1, 64))


@dataclass(frozen=True)
class VerdictMessage:
    """What the line is told about one part: the verdict and what it rests on.

    Attributes
    ----------
    part_id : str
        The part; the receiver deduplicates by it (delivery is at least once).
    station, line : str
        Where it was decided.
    verdict : Verdict
        PASS / REJECT / REVIEW; :attr:`code` is its integer for a PLC.
    reasons : tuple[str, ...]
        Why, in words (errors, timeouts, defects).
    clauses : tuple[str, ...]
        The standard's clauses cited.
    model_version, standard_id, standard_version, calibration_version : str | None
        Every version that made the decision.
    decided_at : datetime
        When the decision was made (UTC).
    """

    part_id: str
    station: str
    line: str
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    clauses: tuple[str, ...] = ()
    model_version: str | None = None
    standard_id: str | None = None
    standard_version: str | None = None
    calibration_version: str | None = None
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if not isinstance(self.part_id, str) or not self.part_id.strip():
            raise UserError(f"a verdict needs a part id, not {self.part_id!r}")
        # Verdict("PASS") from a string; anything else is refused, never turned into a PASS.
        try:
            object.__setattr__(self, "verdict", Verdict(self.verdict))
        except ValueError:
            raise UserError(
                f"part {self.part_id}: verdict must be PASS, REJECT or REVIEW, not {self.verdict!r}"
            ) from None
        object.__setattr__(self, "reasons", tuple(self.reasons))
        object.__setattr__(self, "clauses", tuple(self.clauses))
        if self.decided_at.tzinfo is None:
            raise UserError(f"part {self.part_id}: decided_at must carry a time zone")

    @property
    def code(self) -> int:
        """The verdict's integer for a PLC (:data:`VERDICT_CODES`)."""
        return VERDICT_CODES[self.verdict]

    @classmethod
    def from_result(
        cls,
        result: InspectionResult,
        *,
        station: str,
        line: str,
        decided_at: datetime | None = None,
    ) -> VerdictMessage:
        """The message for a decision made by :func:`inspection.pipeline.decide`."""
        return cls(
            part_id=result.part_id,
            station=station,
            line=line,
            verdict=result.verdict,
            reasons=tuple(result.reasons),
            clauses=result.clauses,
            model_version=result.model_version,
            standard_id=result.standard_id,
            standard_version=result.standard_version,
            calibration_version=result.calibration_version,
            decided_at=decided_at or datetime.now(UTC),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready payload (what MQTT publishes and the spool stores)."""
        return {
            "schema": SCHEMA,
            "part_id": self.part_id,
            "station": self.station,
            "line": self.line,
            "verdict": self.verdict.value,
            "code": self.code,
            "reasons": list(self.reasons),
            "clauses": list(self.clauses),
            "model_version": self.model_version,
            "standard_id": self.standard_id,
            "standard_version": self.standard_version,
            "calibration_version": self.calibration_version,
            "decided_at": self.decided_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerdictMessage:
        """The message :meth:`to_json` wrote.

        Raises
        ------
        UserError
            When a field is missing or malformed.
        """
        try:
            return cls(
                part_id=data["part_id"],
                station=data["station"],
                line=data["line"],
                verdict=data["verdict"],
                reasons=tuple(data.get("reasons", ())),
                clauses=tuple(data.get("clauses", ())),
                model_version=data.get("model_version"),
                standard_id=data.get("standard_id"),
                standard_version=data.get("standard_version"),
                calibration_version=data.get("calibration_version"),
                decided_at=datetime.fromisoformat(data["decided_at"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, UserError):
                raise
            raise UserError(f"not a verdict message ({type(error).__name__}: {error})") from None


@dataclass(frozen=True)
class Trigger:
    """A part-present trigger from the line.

    Attributes
    ----------
    part_id : str
        The part the line says is in front of the station.
    received_at : datetime
        When the bus received it (UTC).
    source : str
        The bus it came on (``"mqtt"``, ``"opcua"``).
    """

    part_id: str
    received_at: datetime
    source: str


TriggerCallback = Callable[[Trigger], None]


class LineBus(abc.ABC):
    """A connection to the line that publishes verdicts and receives triggers.

    A backend implements :meth:`connect`, :meth:`heartbeat`, :meth:`close` and the
    delivery of spooled verdicts; this base holds the spool, the state and the trigger
    callbacks.

    Parameters
    ----------
    spool : Spool
        The durable queue the verdicts wait in; one spool (one name) per bus, since an
        item is done once *this* bus delivered it.
    config : BusConfig
        Line and station, fail-safe, backoff and heartbeat.
    clock : Callable[[], float]
        Seconds (``time.time`` by default); the spool's retry times are in it.
    """

    source = "bus"

    def __init__(
        self, spool: Spool, config: BusConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.spool = spool
        self.config = config
        self.clock = clock
        self.backoff = Backoff(config.backoff_min_s, config.backoff_max_s)
        self._state = BusState.DISCONNECTED
        self._state_changed = threading.Condition()
        self._callbacks: list[TriggerCallback] = []
        self._wake = threading.Event()  # new verdicts or acks: the publisher looks again
        self._closing = threading.Event()
        self.last_error: str | None = None

    # ------------------------------------------------------------------ interface

    @abc.abstractmethod
    def connect(self) -> None:
        """Start the bus: connect in the background and keep reconnecting by itself.

        Returns at once; a line that is down at start is not an error (the verdicts
        wait in the spool). Use :meth:`wait_for` to wait for :attr:`BusState.CONNECTED`.
        """

    @abc.abstractmethod
    def heartbeat(self) -> None:
        """Tell the line the station is alive (MQTT: a ``heartbeat`` message)."""

    @abc.abstractmethod
    def close(self, drain_timeout: float = 10.0) -> int:
        """Deliver what is pending for up to ``drain_timeout`` s, then disconnect.

        Returns
        -------
        int
            Verdicts still pending; they stay in the spool and go out on the next start.
        """

    # ------------------------------------------------------------------ shared

    def publish_verdict(self, verdict_msg: VerdictMessage) -> bool:
        """Queue a verdict durably (on disk when this returns) for the publisher.

        Non-blocking on the network: a line that is down delays the verdict, never
        loses it.

        Returns
        -------
        bool
            ``False`` when this part id was already queued or delivered (idempotent:
            the first verdict stands and is not sent twice by this call).

        Raises
        ------
        inspection.spool.SpoolFullError
            When the spool is full: the caller applies the fail-safe.
        """
        queued = self.spool.put(verdict_msg.part_id, verdict_msg.to_json())
        if not queued:
            logger.warning(
                "part %s: a verdict for it was already queued or sent; this one is ignored",
                verdict_msg.part_id,
            )
        self._kick()
        return queued

    def on_trigger(self, callback: TriggerCallback) -> None:
        """Call ``callback(trigger)`` for every part-present trigger from the line.

        Called on the bus's own thread: keep it short (hand the part to a queue). An
        exception in it is logged and does not stop the bus.
        """
        self._callbacks.append(callback)

    @property
    def state(self) -> BusState:
        """``CONNECTED``, ``DISCONNECTED`` or ``RECONNECTING``."""
        return self._state

    def pending(self) -> int:
        """Verdicts not yet acknowledged by the line."""
        return self.spool.pending()

    def wait_for(self, state: BusState, timeout: float) -> bool:
        """Wait until :attr:`state` is ``state``; ``False`` when ``timeout`` s passed."""
        with self._state_changed:
            return self._state_changed.wait_for(lambda: self._state is state, timeout)

    def __enter__(self) -> LineBus:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ for backends

    def _set_state(self, state: BusState) -> None:
        with self._state_changed:
            if state is not self._state:
                logger.info("%s bus: %s -> %s", self.source, self._state.value, state.value)
            self._state = state
            self._state_changed.notify_all()
        self._kick()

    def _kick(self) -> None:
        """Wake the publisher: new verdicts, acknowledgements or a state change."""
        self._wake.set()

    def _fire_trigger(self, part_id: str) -> None:
        trigger = Trigger(part_id=part_id, received_at=datetime.now(UTC), source=self.source)
        for callback in list(self._callbacks):
            try:
                callback(trigger)
            except Exception:
                logger.exception("part %s: trigger callback failed", part_id)
