"""The OPC UA bus against a real asyncua server process on 127.0.0.1: verdicts and part
ids read back from the server's side, a server restart, triggers, heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("asyncua", reason="the OPC UA bus needs the line extra")

from brokers import WAIT_S, OpcUaServer, wait_until

from inspection.line import BusState, VerdictMessage
from inspection.line.opcua import OpcUaBus, OpcUaConfig, next_sequence
from inspection.spool import Spool
from inspection.types import Verdict

VERDICTS = (Verdict.PASS, Verdict.REJECT, Verdict.REVIEW)
CODES = {Verdict.PASS: 1, Verdict.REJECT: 2, Verdict.REVIEW: 3}


@pytest.fixture(scope="module")
def plc(tmp_path_factory):
    """One server for the tests that do not restart it (one takes ~5 s to start)."""
    server = OpcUaServer(tmp_path_factory.mktemp("plc")).start()
    yield server
    server.stop()


@pytest.fixture
def own_plc(tmp_path):
    server = OpcUaServer(tmp_path / "own-plc").start()
    yield server
    server.stop()


def message(i: int, prefix: str = "P") -> VerdictMessage:
    return VerdictMessage(
        part_id=f"{prefix}-{i:04d}",
        station="station-1",
        line="line-1",
        verdict=VERDICTS[i % 3],
        decided_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.fixture
def make_bus(tmp_path):
    buses = []

    def make(server: OpcUaServer, **update) -> OpcUaBus:
        spool = Spool(tmp_path / "outbox.db", name="opcua_verdicts")
        bus = OpcUaBus(spool, config(server).model_copy(update=update))
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close(drain_timeout=0)
        bus.spool.close()


def config(server: OpcUaServer) -> OpcUaConfig:
    nodes = OpcUaServer.NODES
    return OpcUaConfig(
        endpoint=server.endpoint,
        verdict_node=nodes["verdict"],
        part_id_node=nodes["part_id"],
        sequence_node=nodes["sequence"],
        trigger_node=nodes["trigger"],
        heartbeat_node=nodes["heartbeat"],
        heartbeat_s=None,
        backoff_min_s=0.05,  # injected: the restart test waits for the server, not a backoff
        backoff_max_s=0.5,
        timeout_s=2.0,
    )


def latched(server: OpcUaServer, prefix: str = "P-") -> list[tuple[str, int, int]]:
    """``(part_id, code, sequence)`` for every sequence write, from the latest part id and
    verdict written before it (what a PLC latching on the counter sees), for the part ids
    starting with ``prefix``."""
    rows, current = [], {}
    for write in server.written():
        current[write["node"]] = write["value"]
        if write["node"] == "Sequence" and str(current.get("PartId")).startswith(prefix):
            rows.append((current.get("PartId"), current.get("Verdict"), write["value"]))
    return rows


def test_verdicts_and_part_ids_land_on_the_server(plc, make_bus):
    for run, prefix in enumerate(("A", "B")):
        bus = make_bus(plc)
        bus.connect()
        assert bus.wait_for(BusState.CONNECTED, WAIT_S)
        sent = [message(i, prefix) for i in range(20)]
        for msg in sent:
            bus.publish_verdict(msg)
        assert wait_until(lambda prefix=prefix: len(latched(plc, prefix)) >= 20)
        # A second bus (a restarted daemon) continues the server's counter: 21, 22 ...
        first = 1 + 20 * run
        assert latched(plc, prefix) == [
            (m.part_id, CODES[m.verdict], seq) for seq, m in enumerate(sent, start=first)
        ]
        assert wait_until(lambda bus=bus: bus.pending() == 0)
        assert bus.close(drain_timeout=5) == 0


def test_server_restart_reconnects_and_loses_nothing(own_plc, make_bus):
    # No trigger node: nothing reads while the bus is idle, so asyncua's watchdog is what
    # notices the server going away.
    server, bus = own_plc, make_bus(own_plc, trigger_node=None)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    for i in range(15):
        bus.publish_verdict(message(i))
    assert wait_until(lambda: len(latched(server)) >= 5)

    server.stop()  # SIGKILL, mid-run: some verdicts written, some not
    assert wait_until(lambda: bus.state is BusState.RECONNECTING)
    for i in range(15, 30):
        bus.publish_verdict(message(i))
    assert bus.pending() >= 15

    server.start()  # same port; its nodes start from 0 again
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    expected = {f"P-{i:04d}" for i in range(30)}
    assert wait_until(lambda: {row[0] for row in latched(server)} >= expected)
    rows = latched(server)
    assert {row[0] for row in rows} == expected
    assert all(code == CODES[VERDICTS[int(pid[2:]) % 3]] for pid, code, _ in rows)
    assert wait_until(lambda: bus.pending() == 0)
    # The counter continues on the server it reached: 1, 2 ... before the kill, and again
    # from 1 on the restarted server (whose nodes started from 0).
    runs = [[rows[0][2]]]
    for _, _, seq in rows[1:]:
        if seq == runs[-1][-1] + 1:
            runs[-1].append(seq)
        else:
            runs.append([seq])
    assert [run[0] for run in runs] == [1, 1]

    server.stop()  # again, while the bus is idle: the watchdog notices
    assert wait_until(lambda: bus.state is BusState.RECONNECTING)


def test_trigger_node_reaches_the_callback(plc, make_bus):
    server, bus = plc, make_bus(plc)
    got: list[str] = []
    bus.on_trigger(lambda trigger: got.append(trigger.part_id))
    server.set_trigger("OLD-1")  # there before the bus came: not a trigger for it
    assert wait_until(lambda: not (server.root / "trigger.cmd").exists())
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    for part_id in ("T-1", "T-2"):
        server.set_trigger(part_id)
        assert wait_until(lambda part_id=part_id: got[-1:] == [part_id])
    assert got == ["T-1", "T-2"]


def test_heartbeat_counts_up(plc, make_bus):
    server, bus = plc, make_bus(plc)
    bus.connect()
    assert bus.wait_for(BusState.CONNECTED, WAIT_S)
    for expected in (1, 2):
        bus.heartbeat()
        assert wait_until(
            lambda expected=expected: (
                [w["value"] for w in server.written() if w["node"] == "Heartbeat"][-1:]
                == [expected]
            )
        )


@pytest.mark.parametrize(
    ("field", "node", "says"),
    [
        ("verdict_node", "ns=2;s=Inspection.Nowhere", "BadNodeIdUnknown"),
        ("verdict_node", OpcUaServer.NODES["part_id"], "holds String"),
    ],
)
def test_a_wrong_node_keeps_the_bus_out_and_says_which(plc, tmp_path, field, node, says):
    bad = config(plc).model_copy(update={field: node})
    bus = OpcUaBus(Spool(tmp_path / "bad.db", name="v"), bad)
    bus.connect()
    try:
        bus.publish_verdict(message(1, "BAD"))
        assert wait_until(lambda: bus.last_error is not None and field in bus.last_error)
        assert says in bus.last_error
        assert bus.state is BusState.DISCONNECTED and bus.pending() == 1
        assert latched(plc, "BAD") == []
    finally:
        bus.close(drain_timeout=0)
        bus.spool.close()


def test_sequence_wraps_and_ignores_junk():
    assert next_sequence(0) == 1
    assert next_sequence(41) == 42
    assert next_sequence(2**31 - 1) == 1
    assert next_sequence(None) == 1
    assert next_sequence(-5) == 1
    assert next_sequence(True) == 1
