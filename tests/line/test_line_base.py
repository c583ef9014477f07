"""The bus-independent parts: the verdict message, trigger parsing, backoff, torch-freedom."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from edge_guard import run_without_torch

from inspection.errors import UserError
from inspection.line import VERDICT_CODES, Backoff, BusConfig, VerdictMessage
from inspection.types import Action, InspectionResult, Verdict


def test_verdict_message_round_trips_through_json():
    msg = VerdictMessage(
        part_id="P-1",
        station="s1",
        line="l1",
        verdict=Verdict.REJECT,
        reasons=("scratch 6.2 mm on zone A",),
        clauses=("4.1.1",),
        model_version="m1",
        standard_id="QS-BRK-200",
        standard_version="1.2",
        calibration_version="c3",
        decided_at=datetime(2026, 5, 1, 8, 30, tzinfo=UTC),
    )
    wire = json.loads(json.dumps(msg.to_json()))
    assert wire["code"] == 2 and wire["verdict"] == "REJECT"
    assert VerdictMessage.from_json(wire) == msg


def test_verdict_message_from_a_decision():
    result = InspectionResult(
        part_id="P-9",
        verdict=Verdict.REVIEW,
        severity=None,
        action=Action.REVIEW,
        reasons=("model error: NaN scores",),
        model_version="m2",
        standard_id="S",
        standard_version="3",
    )
    msg = VerdictMessage.from_result(result, station="s1", line="l1")
    assert (msg.part_id, msg.verdict, msg.code) == ("P-9", Verdict.REVIEW, 3)
    assert msg.reasons == ("model error: NaN scores",)
    assert msg.decided_at.tzinfo is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"verdict": "OK"},  # never turned into a PASS
        {"part_id": " "},
        {"decided_at": datetime(2026, 1, 1)},  # no time zone
    ],
)
def test_a_malformed_verdict_is_refused(fields):
    base = {"part_id": "P-1", "station": "s", "line": "l", "verdict": "PASS"}
    with pytest.raises(UserError):
        VerdictMessage(**(base | fields))


def test_from_json_names_what_is_missing():
    with pytest.raises(UserError, match="part_id"):
        VerdictMessage.from_json({"verdict": "PASS"})


def test_codes_are_distinct_and_never_zero():
    assert VERDICT_CODES == {Verdict.PASS: 1, Verdict.REJECT: 2, Verdict.REVIEW: 3}


def test_backoff_doubles_up_to_its_cap():
    backoff = Backoff(min_s=0.5, max_s=4.0)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff.delay(10_000) == 4.0


def test_fail_safe_is_reject_or_hold():
    from pydantic import ValidationError

    assert BusConfig().fail_safe == "reject"
    assert BusConfig(fail_safe="hold").fail_safe == "hold"
    with pytest.raises(ValidationError):
        BusConfig(fail_safe="pass")


def test_parse_trigger():
    pytest.importorskip("paho.mqtt")
    from inspection.line.mqtt import parse_trigger

    assert parse_trigger(b'{"part_id": " P-1 "}') == "P-1"
    assert parse_trigger(b"P-2\n") == "P-2"
    for junk in (b"", b"   ", b"\xff", b'{"part_id": 3}', b"{not json", b"a\x00b", b"x" * 300):
        assert parse_trigger(junk) is None, junk


def test_the_buses_import_without_torch():
    pytest.importorskip("paho.mqtt")
    pytest.importorskip("asyncua")
    done = run_without_torch(
        """
        import inspection.line.mqtt, inspection.line.opcua
        """
    )
    assert done.returncode == 0, done.stderr


def test_a_station_config_picks_its_bus_by_kind(tmp_path):
    pytest.importorskip("paho.mqtt")
    pytest.importorskip("asyncua")
    from pydantic import BaseModel, Field

    from inspection.line import create_bus
    from inspection.line.mqtt import MqttBus, MqttConfig
    from inspection.line.opcua import OpcUaBus, OpcUaConfig
    from inspection.spool import Spool

    class Station(BaseModel):
        bus: MqttConfig | OpcUaConfig = Field(discriminator="kind")

    mqtt = Station.model_validate({"bus": {"kind": "mqtt", "port": 1884}}).bus
    opcua = Station.model_validate({"bus": {"kind": "opcua", "endpoint": "opc.tcp://h:4840"}}).bus
    with Spool(tmp_path / "s.db", name="a") as spool:
        assert isinstance(create_bus(spool, mqtt), MqttBus)
        assert isinstance(create_bus(spool, opcua), OpcUaBus)
