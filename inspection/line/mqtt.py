"""The MQTT line bus (paho-mqtt 2, QoS 1) against a broker such as mosquitto.

Topics, under ``{prefix}/{line}/{station}/``:

======================  ==========  ===========================================================
topic                   direction   payload
======================  ==========  ===========================================================
``verdict``             out, QoS 1  :meth:`VerdictMessage.to_json` as JSON (part id, verdict,
                                    ``code`` 1/2/3, reasons, clauses, versions, decided_at)
``trigger``             in, QoS 1   a part id: ``{"part_id": "P-1"}`` or the bare text ``P-1``
``status``              out, kept   ``online`` on connect; ``offline`` on close, and as the
                                    last will when the station dies (retained, QoS 1)
``heartbeat``           out, QoS 1  ``{"seq", "at", "pending", "line", "station"}``
======================  ==========  ===========================================================

Watch a station with ``mosquitto_sub -h HOST -t 'inspection/line-1/station-1/#' -v``.

A publisher thread drains the spool in order with up to ``max_inflight`` verdicts
unacknowledged; a verdict is done in the spool once the broker's PUBACK arrives. paho
keeps unacknowledged messages in memory and sends them again after a reconnect (so a
verdict may arrive twice: the receiver deduplicates by part id); a process that died
sends them again from the spool when it restarts. Reconnecting is paho's own loop with
the configured backoff. Triggers are subscribed with a clean session: a trigger sent
while the station is offline is not delivered later (the part has long passed).
"""

from __future__ import annotations

import collections
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from inspection.line.base import BusConfig, BusState, LineBus
from inspection.spool import Spool

logger = logging.getLogger(__name__)

QOS = 1
ONLINE = "online"
OFFLINE = "offline"
MAX_PART_ID_CHARS = 256


class MqttTls(BaseModel):
    """TLS towards the broker (``ca_file`` alone: server authentication only).

    Attributes
    ----------
    ca_file : str | None
        CA certificates to verify the broker with; ``None``: the system's.
    cert_file, key_file : str | None
        The station's client certificate and key, where the broker asks for one.
    insecure : bool
        Skip the broker host name check (a test rig only; never on a line).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


class MqttConfig(BusConfig):
    """The MQTT bus's settings (the daemon's station config nests it).

    Attributes
    ----------
    kind : "mqtt"
        Tells the bus kinds apart in a station config (``create_bus``).
    host, port : str, int
        The broker.
    prefix : str
        First topic level: topics are ``{prefix}/{line}/{station}/verdict`` etc.
    client_id : str | None
        ``None``: ``inspection-{line}-{station}``. Two stations must not share one.
    username, password : str | None
        Broker credentials (``password`` is kept out of logs and reprs).
    tls : MqttTls | None
        TLS settings; ``None``: plain TCP (loopback or a closed line network only).
    keepalive_s : int
        MQTT keepalive; the broker sends the last will after 1.5 times this with no
        traffic (a dead socket is noticed at once).
    max_inflight : int
        Verdicts published and not yet acknowledged, at most.
    ack_timeout_s : float
        A verdict unacknowledged this long on a live connection is published again.
    """

    kind: Literal["mqtt"] = "mqtt"
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: str = Field(default="inspection", min_length=1, pattern=r"^[^#+\s]+$")
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    keepalive_s: int = Field(default=30, ge=5)
    max_inflight: int = Field(default=16, ge=1, le=1000)
    ack_timeout_s: float = Field(default=30.0, gt=0)


@dataclass(frozen=True)
class MqttTopics:
    """The station's topics."""

    verdict: str
    trigger: str
    status: str
    heartbeat: str

    @classmethod
    def for_station(cls, prefix: str, line: str, station: str) -> MqttTopics:
        base = f"{prefix.rstrip('/')}/{line}/{station}"
        return cls(
            verdict=f"{base}/verdict",
            trigger=f"{base}/trigger",
            status=f"{base}/status",
            heartbeat=f"{base}/heartbeat",
        )


def parse_trigger(payload: bytes) -> str | None:
    """The part id a trigger message carries, or ``None`` when it carries none.

    Accepts ``{"part_id": "P-1"}`` (JSON) or the bare text ``P-1``.
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        part_id = data.get("part_id") if isinstance(data, dict) else None
        text = part_id.strip() if isinstance(part_id, str) else ""
    ok = text and len(text) <= MAX_PART_ID_CHARS and text.isprintable()
    return text if ok else None


class MqttBus(LineBus):
    """The line bus over MQTT.

    Parameters
    ----------
    spool : Spool
        This bus's verdict queue.
    config : MqttConfig
        Broker, topics, credentials, TLS, backoff.
    clock : Callable[[], float]
        Seconds; retry times in the spool and heartbeat times are in it.

    Examples
    --------
    >>> spool = Spool("outbox.db", name="mqtt_verdicts")  # doctest: +SKIP
    >>> bus = MqttBus(spool, MqttConfig(port=1883))  # doctest: +SKIP
    >>> bus.connect()  # doctest: +SKIP
    >>> bus.publish_verdict(VerdictMessage("P-1", "s-1", "l-1", Verdict.PASS))  # doctest: +SKIP
    """

    source = "mqtt"

    def __init__(
        self, spool: Spool, config: MqttConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(spool, config, clock=clock)
        self.config: MqttConfig = config
        self.topics = MqttTopics.for_station(config.prefix, config.line, config.station)
        self.client_id = config.client_id or f"inspection-{config.line}-{config.station}"
        # Owned by the publisher thread: key -> mids of its publishes (more than one after
        # an ack timeout), and when it was last sent.
        self._inflight: dict[str, list[int]] = {}
        self._sent_at: dict[str, float] = {}
        self._bodies: dict[str, dict[str, Any]] = {}
        self._mid_key: dict[int, str] = {}
        # paho's network thread appends acknowledged mids; the publisher thread settles them.
        self._acked: collections.deque[int] = collections.deque()
        self._connected_at = 0.0
        self._heartbeat_seq = 0
        self._heartbeat_lock = threading.Lock()  # the publisher and the daemon both beat
        self._next_heartbeat = 0.0
        self._publisher: threading.Thread | None = None
        self._stop = threading.Event()
        self.bad_triggers = 0  # trigger messages without a part id
        self.republished = 0  # verdicts sent again after ack_timeout_s
        self._client = self._make_client()

    # ------------------------------------------------------------------ setup

    def _make_client(self) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(config.max_inflight)
        client.reconnect_delay_set(config.backoff_min_s, config.backoff_max_s)  # type: ignore[arg-type]
        client.will_set(self.topics.status, OFFLINE, qos=QOS, retain=True)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls is not None:
            client.tls_set(
                ca_certs=config.tls.ca_file,
                certfile=config.tls.cert_file,
                keyfile=config.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(config.tls.insecure)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def connect(self) -> None:
        """Connect in the background and keep reconnecting; returns at once."""
        if self._publisher is not None:
            return
        self._stop.clear()
        self._closing.clear()
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive_s)
        self._client.loop_start()
        self._publisher = threading.Thread(
            target=self._publish_loop, name=f"mqtt-publisher-{self.client_id}", daemon=True
        )
        self._publisher.start()

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            error = f"broker refused the connection: {reason_code}"
            if error != self.last_error:  # once, not at every retry
                logger.error("mqtt %s:%s: %s", self.config.host, self.config.port, error)
            self.last_error = error
            return
        self._connected_at = self.clock()
        client.subscribe(self.topics.trigger, qos=QOS)
        client.publish(self.topics.status, ONLINE, qos=QOS, retain=True)
        self.last_error = None
        self._set_state(BusState.CONNECTED)

    def _on_connect_fail(self, client, userdata) -> None:
        self.last_error = f"cannot reach the broker at {self.config.host}:{self.config.port}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._closing.is_set():
            self._set_state(BusState.DISCONNECTED)
            return
        if self._state is BusState.CONNECTED:
            # Only a connection that was up: a refusal's reason stays in last_error.
            self.last_error = f"connection lost: {reason_code}"
            self._set_state(BusState.RECONNECTING)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acked.append(mid)
        self._wake.set()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if message.retain:
            # A retained trigger is an old one: its part has long passed.
            logger.warning("mqtt: retained trigger on %s ignored", message.topic)
            return
        part_id = parse_trigger(message.payload)
        if part_id is None:
            self.bad_triggers += 1
            logger.error(
                "mqtt: trigger on %s carries no part id (%r): ignored",
                message.topic,
                message.payload[:80],
            )
            return
        self._fire_trigger(part_id)

    # ------------------------------------------------------------------ the publisher

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            # Clear before working: a wake that comes while we work is not lost.
            self._wake.wait(timeout=0.25)
            self._wake.clear()
            try:
                self._settle_acks()
                if self._state is BusState.CONNECTED and not self._stop.is_set():
                    self._send_due()
                    self._heartbeat_if_due()
            except Exception:
                # The spool's disk or a bug: keep the line's bus alive and say so.
                logger.exception("mqtt publisher: step failed; retrying")
                self._stop.wait(self.backoff.min_s)
        self._settle_acks()

    def _settle_acks(self) -> None:
        while self._acked:
            key = self._mid_key.pop(self._acked.popleft(), None)
            if key is None or key not in self._inflight:
                continue  # status, heartbeat, or a second copy of a verdict already done
            for mid in self._inflight.pop(key):
                self._mid_key.pop(mid, None)
            self._sent_at.pop(key, None)
            self._bodies.pop(key, None)
            self.spool.done(key)

    def _send_due(self) -> None:
        now = self.clock()
        self._republish_unacked(now)
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for item in self.spool.due(now, limit=len(self._inflight) + room):
            if item.key in self._inflight:
                continue
            if not self._publish(item.key, item.body, now):
                return
            room -= 1
            if room <= 0:
                return

    def _publish(self, key: str, body: dict[str, Any], now: float) -> bool:
        info = self._client.publish(self.topics.verdict, json.dumps(body), qos=QOS)
        # NO_CONN: paho queued it and sends it when connected again; it counts as in flight.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            error = mqtt.error_string(info.rc)
            self.spool.retry(key, now + self.backoff.delay(1), error)
            logger.warning("mqtt: part %s not published (%s); retrying", key, error)
            return False
        self._inflight.setdefault(key, []).append(info.mid)
        self._mid_key[info.mid] = key
        self._sent_at[key] = now
        self._bodies[key] = body
        return True

    def _republish_unacked(self, now: float) -> None:
        # A safety net: paho resends its own unacknowledged messages after a reconnect, so
        # this only fires when an acknowledgement went missing on a live connection.
        since = self._connected_at
        for key, sent_at in list(self._sent_at.items()):
            if now - max(sent_at, since) > self.config.ack_timeout_s:
                logger.warning("mqtt: part %s unacknowledged; publishing again", key)
                self.republished += 1
                self._publish(key, self._bodies[key], now)

    def _heartbeat_if_due(self) -> None:
        if self.config.heartbeat_s is None:
            return
        now = self.clock()
        if now >= self._next_heartbeat:
            self.heartbeat()

    def heartbeat(self) -> None:
        """Publish ``{"seq", "at", "pending", ...}`` on the heartbeat topic (QoS 1)."""
        with self._heartbeat_lock:
            self._next_heartbeat = self.clock() + (self.config.heartbeat_s or 0.0)
            self._heartbeat_seq += 1
            body = {
                "line": self.config.line,
                "station": self.config.station,
                "seq": self._heartbeat_seq,
                "at": datetime.now(UTC).isoformat(),
                "pending": self.spool.pending(),
            }
            self._client.publish(self.topics.heartbeat, json.dumps(body), qos=QOS)

    # ------------------------------------------------------------------ shutdown

    def close(self, drain_timeout: float = 10.0) -> int:
        """Deliver what is pending for up to ``drain_timeout`` s, mark the station
        ``offline`` (retained) and disconnect.

        Returns
        -------
        int
            Verdicts still pending (kept in the spool for the next start).
        """
        if self._publisher is None:
            return self.spool.pending()
        deadline = time.monotonic() + drain_timeout
        while self.spool.pending() > 0 and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._publisher.join(timeout=30)
        self._publisher = None
        self._closing.set()
        if self._state is BusState.CONNECTED:
            info = self._client.publish(self.topics.status, OFFLINE, qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout=min(5.0, max(drain_timeout, 1.0)))
            except (RuntimeError, ValueError) as error:
                logger.warning("mqtt: offline status not published: %s", error)
        self._client.disconnect()
        self._client.loop_stop()
        self._set_state(BusState.DISCONNECTED)
        left = self.spool.pending()
        if left:
            logger.warning("mqtt: %d verdicts still pending; sent on the next start", left)
        return left
