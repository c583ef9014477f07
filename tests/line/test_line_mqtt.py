"""The MQTT bus against a real mosquitto on 127.0.0.1: verdicts, status, last will,
a broker outage, triggers."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime

import pytest

pytest.importorskip("paho.mqtt", reason="the MQTT bus needs the line extra")

from brokers import (
    WAIT_S,
    Listener,
    Mosquitto,
    mosquitto_available,
    password_file,
    tls_files,
    wait_until,
)

from inspection.line import BusState, VerdictMessage
from inspection.line.mqtt import MqttBus, MqttConfig, MqttTopics
from inspection.spool import Spool
from inspection.types import Verdict

pytestmark = pytest.mark.skipif(
    not mosquitto_available(), reason="mosquitto is not installed (apt-get install mosquitto)"
)

VERDICTS = (Verdict.PASS, Verdict.REJECT, Verdict.REVIEW)


@pytest.fixture
def broker(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    yield broker
    broker.stop()


def config(port: int, **overrides) -> MqttConfig:
    # Short injected backoffs: a reconnect test waits for the broker, not for a 30 s delay.
    fields = {"port": port, "backoff_min_s": 0.05, "backoff_max_s": 0.5, "heartbeat_s": None}
    return MqttConfig(**(fields | overrides))


def message(i: int, prefix: str = "P") -> VerdictMessage:
    return VerdictMessage(
        part_id=f"{prefix}-{i:04d}",
        station="station-1",
        line="line-1",
        verdict=VERDICTS[i % 3],
        reasons=(f"reason {i}",),
        clauses=("4.1.1",) if i % 3 == 1 else (),
        model_version="m1",
        standard_id="QS-BRK-200",
        standard_version="1.0",
        decided_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def verdict_ids(listener: Listener) -> list[str]:
    return [json.loads(p)["part_id"] for p in listener.payloads("/verdict")]


@pytest.fixture
def bus_factory(tmp_path):
    buses = []

    def make(port: int, name: str = "mqtt_verdicts", **overrides) -> MqttBus:
        bus = MqttBus(Spool(tmp_path / "outbox.db", name=name), config(port, **overrides))
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close(drain_timeout=0)
        bus.spool.close()


def test_verdicts_arrive_in_order_with_their_fields(broker, bus_factory):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.verdict, "line-plc")
    bus = bus_factory(broker.port)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    sent = [message(i) for i in range(60)]
    for msg in sent:
        assert bus.publish_verdict(msg)
    assert wait_until(lambda: len(listener.payloads()) >= len(sent))
    received = [VerdictMessage.from_json(json.loads(p)) for p in listener.payloads()]
    assert received == sent  # every field, in the order decided
    codes = [json.loads(p)["code"] for p in listener.payloads()]
    assert codes == [{"PASS": 1, "REJECT": 2, "REVIEW": 3}[m.verdict] for m in sent]
    assert wait_until(lambda: bus.pending() == 0)
    assert all(bus.spool.was_done(m.part_id) for m in sent)
    listener.close()


def test_a_part_id_is_published_once(broker, bus_factory):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.verdict, "line-plc")
    bus = bus_factory(broker.port)
    bus.connect()
    assert bus.publish_verdict(message(1))
    assert not bus.publish_verdict(message(1))  # queued already
    assert wait_until(lambda: bus.pending() == 0)
    assert not bus.publish_verdict(message(1))  # delivered already
    bus.publish_verdict(message(2))  # a marker: once it is in, the duplicate would be too
    assert wait_until(lambda: len(listener.payloads()) >= 2)
    assert verdict_ids(listener) == ["P-0001", "P-0002"]
    listener.close()


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients missing")
def test_mosquitto_sub_sees_the_station(broker, bus_factory):
    bus = bus_factory(broker.port)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-v",
            "-t",
            "inspection/line-1/station-1/#",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in sub.stdout], daemon=True)
    reader.start()
    try:
        # The retained status arrives first: the subscription is in place.
        assert lines.get(timeout=WAIT_S).strip() == "inspection/line-1/station-1/status online"
        for i in range(5):
            bus.publish_verdict(message(i))
        bus.heartbeat()
        seen = [lines.get(timeout=WAIT_S).split(" ", 1) for _ in range(6)]
        verdicts = [json.loads(body) for topic, body in seen if topic.endswith("/verdict")]
        beats = [json.loads(body) for topic, body in seen if topic.endswith("/heartbeat")]
        assert [v["part_id"] for v in verdicts] == [f"P-{i:04d}" for i in range(5)]
        assert len(beats) == 1 and beats[0]["seq"] == 1 and beats[0]["station"] == "station-1"
    finally:
        os.kill(sub.pid, signal.SIGTERM)
        sub.wait(timeout=30)


DYING_STATION = """
import sys, time
from inspection.line.mqtt import MqttBus, MqttConfig
from inspection.line import BusState
from inspection.spool import Spool
bus = MqttBus(Spool(sys.argv[2], name="v"), MqttConfig(port=int(sys.argv[1]), heartbeat_s=None))
bus.connect()
assert bus.wait_for(BusState.CONNECTED, 120)
print("up", flush=True)
time.sleep(600)
"""


def test_status_online_then_last_will_when_the_station_dies(broker, tmp_path):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.status, "line-plc")
    station = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(DYING_STATION),
            str(broker.port),
            str(tmp_path / "station.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert station.stdout.readline().strip() == "up"
        assert wait_until(lambda: b"online" in listener.payloads())
        os.kill(station.pid, signal.SIGKILL)  # no DISCONNECT: the broker sends the will
        station.wait(timeout=30)
        assert wait_until(lambda: listener.payloads()[-1:] == [b"offline"])
    finally:
        if station.poll() is None:
            os.kill(station.pid, signal.SIGKILL)
    listener.close()
    # Retained: a PLC that connects later still reads "offline".
    late = Listener(broker.port, topics.status, "late-plc", persistent=False)
    assert wait_until(lambda: late.messages[-1:] == [(topics.status, b"offline", True)])
    late.close()


def test_close_marks_the_station_offline(broker, bus_factory):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    bus = bus_factory(broker.port)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    listener = Listener(broker.port, topics.status, "line-plc")
    assert wait_until(lambda: listener.payloads() == [b"online"])
    assert bus.close(drain_timeout=5) == 0
    assert bus.state is BusState.DISCONNECTED
    assert wait_until(lambda: listener.payloads() == [b"online", b"offline"])
    listener.close()


def test_broker_outage_delays_verdicts_and_loses_none(broker, bus_factory):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.verdict, "line-plc")  # persistent session
    bus = bus_factory(broker.port)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    for i in range(40):
        bus.publish_verdict(message(i))
    assert wait_until(lambda: len(listener.payloads()) >= 10)

    broker.stop()  # mid-run: some verdicts are in flight, some still in the spool
    assert wait_until(lambda: bus.state is BusState.RECONNECTING)
    for i in range(40, 80):  # decided while the broker is down: they wait in the spool
        bus.publish_verdict(message(i))
    assert bus.state is BusState.RECONNECTING  # what the daemon's fail-safe reads
    assert bus.pending() >= 40

    broker.start()  # same port, same persistence file
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)  # by itself
    expected = {f"P-{i:04d}" for i in range(80)}
    assert wait_until(lambda: set(verdict_ids(listener)) >= expected)
    assert set(verdict_ids(listener)) == expected  # at least once, nothing else
    assert wait_until(lambda: bus.pending() == 0)
    listener.close()


def test_close_drains_what_is_pending(broker, bus_factory):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.verdict, "line-plc")
    bus = bus_factory(broker.port)
    bus.connect()
    for i in range(50):
        bus.publish_verdict(message(i))
    assert bus.close(drain_timeout=WAIT_S) == 0
    assert wait_until(lambda: len(listener.payloads()) >= 50)
    assert verdict_ids(listener) == [f"P-{i:04d}" for i in range(50)]
    listener.close()


def test_an_unacknowledged_verdict_is_sent_again(broker, bus_factory):
    """A broker that hangs (SIGSTOP: the socket stays open, no PUBACK comes) gets the
    verdicts again after ack_timeout_s; once it wakes, each part is there, some twice."""
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.verdict, "line-plc")
    bus = bus_factory(broker.port, ack_timeout_s=0.2)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        for i in range(5):
            bus.publish_verdict(message(i))
        assert wait_until(lambda: bus.republished >= 5)
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
    assert wait_until(lambda: bus.pending() == 0)
    expected = [f"P-{i:04d}" for i in range(5)]
    assert wait_until(lambda: len(listener.payloads()) >= 10)
    assert set(verdict_ids(listener)) == set(expected)
    listener.close()


def test_spooled_verdicts_go_out_after_a_restart(broker, tmp_path):
    """Verdicts spooled by a station that never reached the broker (down, then the process
    stopped) are sent by the next process on the same spool file."""
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.verdict, "line-plc")
    broker.stop()
    first = MqttBus(Spool(tmp_path / "outbox.db", name="v"), config(broker.port))
    first.connect()
    for i in range(20):
        first.publish_verdict(message(i))
    assert first.close(drain_timeout=0) == 20
    first.spool.close()

    broker.start()
    second = MqttBus(Spool(tmp_path / "outbox.db", name="v"), config(broker.port))
    second.connect()
    assert wait_until(lambda: len(set(verdict_ids(listener))) == 20)
    assert verdict_ids(listener) == [f"P-{i:04d}" for i in range(20)]
    assert second.close(drain_timeout=5) == 0
    second.spool.close()
    listener.close()


def test_triggers_reach_the_callback_with_the_part_id(broker, bus_factory):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    bus = bus_factory(broker.port)
    got: list[str] = []
    bus.on_trigger(lambda trigger: got.append(trigger.part_id))
    bus.on_trigger(lambda trigger: 1 / 0)  # a failing callback does not stop the others
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    plc = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plc")
    plc.connect("127.0.0.1", broker.port)
    plc.loop_start()
    for payload in (b'{"part_id": "T-1"}', b"\xff\xfe", b"T-2", b'{"id": 3}', b"  T-3\n"):
        plc.publish(topics.trigger, payload, qos=1).wait_for_publish(WAIT_S)
    assert wait_until(lambda: len(got) >= 3 and bus.bad_triggers >= 2)
    assert got == ["T-1", "T-2", "T-3"]
    assert bus.bad_triggers == 2
    plc.disconnect()
    plc.loop_stop()


def test_a_bus_started_without_broker_connects_when_it_comes(tmp_path, bus_factory):
    broker = Mosquitto(tmp_path / "late-broker")
    bus = bus_factory(broker.port)
    bus.connect()
    bus.publish_verdict(message(7))
    assert bus.state is BusState.DISCONNECTED
    broker.start()
    try:
        assert bus.wait_for(BusState.CONNECTED, WAIT_S)
        assert wait_until(lambda: bus.pending() == 0)
    finally:
        bus.close(drain_timeout=0)
        broker.stop()


def test_heartbeats_by_themselves(broker, bus_factory):
    topics = MqttTopics.for_station("inspection", "line-1", "station-1")
    listener = Listener(broker.port, topics.heartbeat, "line-plc")
    bus = bus_factory(broker.port, heartbeat_s=0.05)
    bus.connect()
    bus.publish_verdict(message(1))
    assert wait_until(lambda: len(listener.payloads()) >= 3)
    beats = [json.loads(p) for p in listener.payloads()]
    seqs = [b["seq"] for b in beats]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert wait_until(lambda: json.loads(listener.payloads()[-1])["pending"] == 0)
    listener.close()


def test_tls_and_password(tmp_path, bus_factory):
    """A broker that wants TLS and a password: the right ones get through, a wrong
    password keeps the bus out (and says why), the verdict waits in the spool."""
    from inspection.line.mqtt import MqttTls

    files = tls_files(tmp_path / "tls")
    passwords = password_file(tmp_path, "station-1", "s3cret")
    broker = Mosquitto(
        tmp_path / "tls-broker",
        anonymous=False,
        extra=f"password_file {passwords}\ncafile {files['ca']}\n"
        f"certfile {files['cert']}\nkeyfile {files['key']}\n",
    ).start()
    try:
        tls = MqttTls(ca_file=str(files["ca"]))
        wrong = bus_factory(
            broker.port,
            name="wrong",
            client_id="wrong",
            tls=tls,
            username="station-1",
            password="guess",
        )
        wrong.connect()
        wrong.publish_verdict(message(1))
        assert wait_until(lambda: wrong.last_error is not None and "refused" in wrong.last_error)
        assert wrong.state is not BusState.CONNECTED and wrong.pending() == 1

        right = bus_factory(
            broker.port, name="right", tls=tls, username="station-1", password="s3cret"
        )
        right.connect()
        right.publish_verdict(message(2))
        assert right.wait_for(BusState.CONNECTED, WAIT_S)
        assert wait_until(lambda: right.pending() == 0)
    finally:
        broker.stop()


def test_config_refuses_topic_wildcards():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        MqttConfig(station="st/1")
    with pytest.raises(ValidationError):
        MqttConfig(line="#")
    assert "secret" not in repr(MqttConfig(username="u", password="secret"))
