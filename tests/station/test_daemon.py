"""The station daemon against a real mosquitto and a real SQLite file: every part in is
recorded once and its verdict arrives once; late verdicts are never PASS; errors are
REVIEW with the reason; the broker may go away; SIGTERM drains; kill -9 loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch", reason="the station tests run a tiny torch model (models extra)")
pytest.importorskip("paho.mqtt", reason="the station talks MQTT (line extra)")

from station_helpers import (
    WAIT_S,
    CyclingSource,
    Mosquitto,
    VerdictListener,
    corrupt_frame,
    inspections_per_part,
    mosquitto_available,
    nan_audio,
    station_config,
    tiny_model,
    wait_until,
)

from inspection.line import BusState
from inspection.records import RecordStore
from inspection.spool import Spool
from inspection.station.daemon import RESTARTED, StationDaemon, build_runtime

pytestmark = [
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed"),
    # A daemon thread that dies must fail the test, not pass it quietly.
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    return tiny_model(tmp_path_factory.mktemp("station-model"))


@pytest.fixture
def broker(tmp_path):
    broker = Mosquitto(tmp_path / "broker").start()
    yield broker
    broker.stop()


def start(daemon: StationDaemon) -> threading.Thread:
    daemon.exit_codes = []
    thread = threading.Thread(target=lambda: daemon.exit_codes.append(daemon.run()), daemon=True)
    thread.start()
    assert wait_until(daemon.ready, WAIT_S), "the daemon did not become ready"
    return thread


def stop(daemon: StationDaemon, thread: threading.Thread) -> None:
    daemon.request_stop()
    thread.join(WAIT_S)
    assert not thread.is_alive()
    assert daemon.exit_codes == [0], "run() did not return 0"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (
            line.startswith(name + "{") and line.split(" ")[0] == name
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


class SlowFor:
    """A runtime that, for the chosen parts, answers only after the daemon gave up on
    them (it waits until the part is in ``daemon.late_parts``): late by construction,
    whatever the machine's speed."""

    def __init__(self, runtime, chosen: set[str], fail: set[str] = frozenset()):
        self.runtime, self.chosen, self.fail = runtime, chosen, fail
        self.daemon: StationDaemon | None = None
        self.answered_late: list[str] = []

    def inspect(self, observation):
        part_id = observation.part_id
        if part_id in self.fail:
            raise RuntimeError("the accelerator fell over")
        answer = self.runtime.inspect(observation)
        if part_id in self.chosen:
            assert wait_until(lambda: part_id in self.daemon.late_parts, WAIT_S)
            self.answered_late.append(part_id)
        return answer


def test_500_parts_each_recorded_once_and_each_verdict_received_once(tmp_path, model_path, broker):
    """Parts in = records written = verdicts on the broker; /metrics, /healthz, /readyz
    and the systemd notifications agree."""
    listener = VerdictListener(broker.port)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(WAIT_S)
    config = station_config(tmp_path, broker.port, model_path=model_path)
    source = CyclingSource(500, hold=True)  # stays up: /readyz is asked after the last part
    from inspection.station.daemon import sd_notify

    daemon = StationDaemon(config, source=source, notify=lambda m: sd_notify(m, str(notify_path)))
    thread = start(daemon)
    assert notify.recv(64) == b"READY=1"
    assert wait_until(lambda: daemon.stats.recorded == 500, WAIT_S)
    assert wait_until(lambda: len(listener.counts()) == 500, WAIT_S)
    base = f"http://127.0.0.1:{daemon.server.port}"
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/readyz")[0] == 200
    status, text = get(base + "/metrics")
    assert status == 200
    stop(daemon, thread)
    messages = []
    notify.settimeout(1)
    try:
        while True:
            messages.append(notify.recv(64).decode())
    except TimeoutError:
        pass
    notify.close()
    assert "WATCHDOG=1" in messages and messages[-1] == "STOPPING=1"

    ids = {source.part_id(i) for i in range(500)}
    per_part = inspections_per_part(tmp_path / "records.db")
    assert set(per_part) == ids and set(per_part.values()) == {1}
    received = listener.counts()
    listener.close()
    assert set(received) == ids and set(received.values()) == {1}, "lost or duplicated"
    counts = RecordStore(config.records.url).counts(station="st-1")
    assert sum(counts.values()) == 500 and counts["NOT_INSPECTED"] == 0
    assert counts["PASS"] and counts["REJECT"], "the tiny model decides both ways"
    by_part = listener.by_part()
    verdicts = Counter(v["verdict"] for v in by_part.values())
    assert verdicts == Counter({k: v for k, v in counts.items() if v})
    for verdict in ("PASS", "REJECT", "REVIEW"):
        assert metric(text, f'inspection_parts_total{{verdict="{verdict}"}}') == counts[verdict]
    assert metric(text, 'inspection_stage_seconds_count{stage="trigger_to_verdict"}') == 500
    with Spool(tmp_path / "state" / "journal.db", name="journal") as journal:
        assert journal.pending() == 0


@pytest.mark.parametrize("late_verdict", ["REJECT", "REVIEW"])
def test_a_verdict_not_ready_in_time_is_the_late_verdict_never_pass(
    tmp_path, model_path, broker, late_verdict
):
    listener = VerdictListener(broker.port)
    config = station_config(
        tmp_path, broker.port, model_path=model_path, cycle_time_ms=400,
        late_verdict=late_verdict, workers=3,
    )  # fmt: skip
    source = CyclingSource(30)
    chosen = {source.part_id(i) for i in (3, 11, 12, 25)}
    runtime = SlowFor(build_runtime(config), chosen)
    daemon = StationDaemon(config, source=source, runtime=runtime)
    runtime.daemon = daemon
    thread = start(daemon)
    assert wait_until(lambda: daemon.stats.recorded == 30, WAIT_S)
    assert wait_until(lambda: daemon.stats.late_notes >= len(chosen), WAIT_S)
    assert wait_until(lambda: len(listener.counts()) == 30, WAIT_S)
    stop(daemon, thread)

    assert chosen <= daemon.late_parts  # a loaded machine may make others late too
    assert sorted(runtime.answered_late) == sorted(chosen)
    received = listener.by_part()
    assert set(listener.counts().values()) == {1}, "a late real verdict was published too"
    store = RecordStore(config.records.url)
    for part_id in daemon.late_parts:
        assert received[part_id]["verdict"] == late_verdict
        assert received[part_id]["reasons"] == ["no verdict within 400 ms"]
        record = store.get(part_id, "st-1")
        assert record.verdict == late_verdict != "PASS"
        assert record.reasons == ("no verdict within 400 ms",)
    # The real verdict is a note on the record, not a second verdict.
    with sqlite3.connect(tmp_path / "records.db") as conn:
        notes = [json.loads(b) for (b,) in conn.execute("SELECT body FROM reports")]
    assert len(notes) >= len(chosen) and {n["kind"] for n in notes} == {"late_verdict"}
    assert {n["result"]["part_id"] for n in notes} >= chosen


def test_errors_are_review_with_the_reason_and_the_daemon_keeps_going(tmp_path, model_path, broker):
    listener = VerdictListener(broker.port)
    config = station_config(tmp_path, broker.port, model_path=model_path)
    source = CyclingSource(40, broken={5: corrupt_frame, 17: nan_audio})
    failing = source.part_id(29)
    runtime = SlowFor(build_runtime(config), set(), fail={failing})
    daemon = StationDaemon(config, source=source, runtime=runtime)
    thread = start(daemon)
    assert wait_until(lambda: len(listener.counts()) == 40, WAIT_S)
    stop(daemon, thread)

    store = RecordStore(config.records.url)
    assert sum(store.counts(station="st-1").values()) == 40
    received = listener.by_part()
    for index, words in ((5, "inspection failed"), (29, "model error: RuntimeError")):
        record = store.get(source.part_id(index), "st-1")
        assert record.verdict == "REVIEW", record
        assert any(words in reason for reason in record.reasons), record.reasons
        assert received[source.part_id(index)]["verdict"] == "REVIEW"
    nan = store.get(source.part_id(17), "st-1")
    assert nan.verdict != "PASS", "NaN audio must never pass"
    assert source.yielded == 40 and daemon.stats.errors == 0


def test_the_broker_goes_away_and_no_verdict_is_lost(tmp_path, model_path, broker):
    listener = VerdictListener(broker.port)
    config = station_config(tmp_path, broker.port, model_path=model_path)
    source = CyclingSource(240)
    daemon = StationDaemon(config, source=source)
    thread = start(daemon)
    assert wait_until(lambda: len(listener.counts()) >= 30, WAIT_S)
    broker.stop()
    stopped_at = daemon.stats.recorded
    # fail_safe "reject": parts keep flowing; their verdicts wait in the spool.
    assert wait_until(lambda: daemon.stats.recorded >= stopped_at + 60, WAIT_S)
    assert wait_until(lambda: daemon.bus.pending() > 0, WAIT_S)
    assert wait_until(lambda: daemon.bus.state is not BusState.CONNECTED, WAIT_S)
    broker.start()
    assert wait_until(lambda: daemon.stats.recorded == 240, WAIT_S)
    assert wait_until(lambda: len(listener.counts()) == 240, WAIT_S), "verdicts lost"
    stop(daemon, thread)
    assert set(listener.counts()) == {source.part_id(i) for i in range(240)}
    assert set(inspections_per_part(tmp_path / "records.db").values()) == {1}


def write_config(root: Path, port: int, model: Path, **fields) -> Path:
    data = {
        "station": "st-1",
        "line": "ln-1",
        "product": "bracket",
        "model": {"path": str(model), "threads": 1},
        "source": {"kind": "simulator", "size": 64, "seed": 3, "distinct": 8},
        "cycle_time_ms": 60_000,
        "bus": {"kind": "mqtt", "port": port, "backoff_min_s": 0.05, "backoff_max_s": 0.5},
        "records": {"url": "records.db", "evidence": "none"},
        "state_dir": "state",
        "metrics": {"port": 0},
    } | fields
    path = root / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def daemon_process(config: Path, log: Path, **env) -> subprocess.Popen:
    environment = os.environ | {"OMP_NUM_THREADS": "1"} | env
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "inspection.station.commands", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=REPO,
        )  # fmt: skip


@pytest.mark.slow
def test_kill_9_mid_run_then_restart_loses_no_part(tmp_path, model_path, broker):
    listener = VerdictListener(broker.port)
    config = write_config(tmp_path, broker.port, model_path, source={
        "kind": "simulator", "size": 64, "seed": 3, "distinct": 8, "n": 2000,
    }, max_inflight=16)  # fmt: skip
    process = daemon_process(config, tmp_path / "run1.log")
    assert wait_until(lambda: len(listener.counts()) >= 40, WAIT_S), (
        tmp_path / "run1.log"
    ).read_text()[-3000:]
    process.kill()  # SIGKILL: no drain, no flush
    process.wait(WAIT_S)
    published_before = set(listener.counts())
    journal = Spool(tmp_path / "state" / "journal.db", name="journal")
    in_flight = {item.key for item in journal.due(float("inf"), limit=1000)}
    journal.close()

    # Restart with nothing to capture: the daemon recovers, delivers, and exits.
    write_config(tmp_path, broker.port, model_path, source={
        "kind": "simulator", "size": 64, "seed": 3, "n": 0,
    })  # fmt: skip
    restart = daemon_process(config, tmp_path / "run2.log")
    assert restart.wait(WAIT_S) == 0, (tmp_path / "run2.log").read_text()[-3000:]

    per_part = inspections_per_part(tmp_path / "records.db")
    assert set(per_part.values()) == {1}, "a part was recorded twice"
    assert published_before <= set(per_part), "a published verdict has no record"
    # Parts are captured in order: every id up to the last one captured is recorded
    # (with its verdict, or as not inspected), none skipped.
    indices = sorted(int(part_id.rsplit("-", 1)[1]) for part_id in per_part)
    assert indices == list(range(len(indices)))
    assert in_flight <= set(per_part)
    store = RecordStore(tmp_path / "records.db")
    for part_id in in_flight:
        record = store.get(part_id, "st-1")
        assert record.verdict is not None or record.not_inspected == RESTARTED
    assert wait_until(lambda: set(listener.counts()) >= published_before, WAIT_S)
    listener.close()


@pytest.mark.slow
def test_sigterm_drains_and_notifies_systemd(tmp_path, model_path, broker):
    listener = VerdictListener(broker.port)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    config = write_config(tmp_path, broker.port, model_path, source={
        "kind": "simulator", "size": 64, "seed": 4, "distinct": 4, "rate_hz": 40,
    })  # fmt: skip
    process = daemon_process(
        config, tmp_path / "run.log", NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="400000"
    )
    assert wait_until(lambda: len(listener.counts()) >= 20, WAIT_S)
    process.send_signal(signal.SIGTERM)
    assert process.wait(WAIT_S) == 0, (tmp_path / "run.log").read_text()[-3000:]
    notify.settimeout(1)
    messages = []
    try:
        while True:
            messages.append(notify.recv(64).decode())
    except TimeoutError:
        pass
    notify.close()
    assert messages[0] == "READY=1" and "WATCHDOG=1" in messages
    assert messages[-1] == "STOPPING=1"

    journal = Spool(tmp_path / "state" / "journal.db", name="journal")
    assert journal.pending() == 0, "a part was left in flight"
    journal.close()
    store = RecordStore(tmp_path / "records.db")
    counts = store.counts(station="st-1")
    assert counts["NOT_INSPECTED"] == 0, "drained parts are decided, not dropped"
    recorded = set(inspections_per_part(tmp_path / "records.db"))
    assert wait_until(lambda: set(listener.counts()) == recorded, WAIT_S)
    listener.close()
    # The log is JSON lines with the part id.
    lines = [json.loads(line) for line in (tmp_path / "run.log").read_text().splitlines()]
    assert any(line.get("part_id") in recorded for line in lines)


def test_the_database_locked_for_a_while_loses_no_record(tmp_path, model_path, broker):
    listener = VerdictListener(broker.port)
    config = station_config(
        tmp_path, broker.port, model_path=model_path,
        records={"url": str(tmp_path / "records.db"), "evidence": "none", "busy_timeout_s": 0.2},
    )  # fmt: skip
    source = CyclingSource(150)
    daemon = StationDaemon(config, source=source)
    thread = start(daemon)
    assert wait_until(lambda: daemon.stats.recorded >= 20, WAIT_S)
    locker = sqlite3.connect(tmp_path / "records.db", isolation_level=None, timeout=60)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    locked_at = daemon.stats.recorded
    assert wait_until(lambda: daemon.records.spool.pending() >= 10, WAIT_S)
    # Verdicts keep reaching the line while records wait in the spool.
    assert wait_until(lambda: len(listener.counts()) >= locked_at + 10, WAIT_S)
    locker.execute("ROLLBACK")
    locker.close()
    assert wait_until(lambda: daemon.stats.recorded == 150, WAIT_S)
    assert wait_until(lambda: daemon.records.spool.pending() == 0, WAIT_S)
    stop(daemon, thread)
    per_part = inspections_per_part(tmp_path / "records.db")
    assert set(per_part) == {source.part_id(i) for i in range(150)}
    assert set(per_part.values()) == {1}
    assert wait_until(lambda: len(listener.counts()) == 150, WAIT_S)
    listener.close()


def test_a_restart_settles_every_part_left_in_the_journal(tmp_path, model_path, broker):
    """The two states a kill -9 can leave a part in: recorded but its verdict maybe not
    queued (queued now, from the record), or captured and never decided (recorded as not
    inspected, and no verdict sent: the part has long left the station)."""
    from inspection.types import Action, InspectionResult, Verdict

    listener = VerdictListener(broker.port)
    config = station_config(tmp_path, broker.port, model_path=model_path)
    store = RecordStore(config.records.url)
    decided = InspectionResult("K-1", Verdict.REJECT, None, Action.REWORK, reasons=("dent",))
    store.record("K-1", "st-1", decided)
    store.close()
    with Spool(tmp_path / "state" / "journal.db", name="journal") as journal:
        journal.put("K-1", {"captured_at": "2026-01-01T06:00:00+00:00"})
        journal.put("K-2", {"captured_at": "2026-01-01T06:00:01+00:00"})
    daemon = StationDaemon(config, source=CyclingSource(0))
    assert daemon.run() == 0  # the source is empty: the daemon settles, delivers, exits
    assert wait_until(lambda: "K-1" in listener.counts(), WAIT_S)

    assert listener.by_part()["K-1"]["verdict"] == "REJECT"
    assert listener.by_part()["K-1"]["reasons"] == ["dent"]
    assert "K-2" not in listener.counts()
    store = RecordStore(config.records.url)
    assert store.get("K-2", "st-1").not_inspected == RESTARTED
    assert inspections_per_part(tmp_path / "records.db") == Counter({"K-1": 1, "K-2": 1})
    with Spool(tmp_path / "state" / "journal.db", name="journal") as journal:
        assert journal.pending() == 0
    listener.close()


def test_fail_safe_hold_takes_no_part_until_the_broker_is_there(tmp_path, model_path):
    broker = Mosquitto(tmp_path / "broker")  # configured, not started yet
    config = station_config(
        tmp_path, None, model_path=model_path,
        bus={"kind": "mqtt", "port": broker.port, "fail_safe": "hold",
             "backoff_min_s": 0.05, "backoff_max_s": 0.2, "heartbeat_s": None},
    )  # fmt: skip
    source = CyclingSource(20)
    daemon = StationDaemon(config, source=source)
    thread = start(daemon)
    try:
        time.sleep(1.0)  # not a race: with the bus down no part may be taken at all
        assert daemon.bus.state is not BusState.CONNECTED
        assert daemon.stats.captured == 0 and source.yielded == 0
        broker.start()
        listener = VerdictListener(broker.port)
        assert wait_until(lambda: daemon.stats.recorded == 20, WAIT_S)
        assert wait_until(lambda: len(listener.counts()) == 20, WAIT_S)
        listener.close()
        thread.join(WAIT_S)  # the source is done: the daemon exits by itself
        assert daemon.exit_codes == [0]
    finally:
        daemon.request_stop()
        broker.stop()


def test_a_station_fuses_its_model_with_a_normality_model(tmp_path, model_path, broker):
    from conftest import tiny_normality_model

    from inspection.edge.bundle import BUNDLE_FORMAT
    from inspection.errors import UserError
    from inspection.models import save_model
    from inspection.models.fusion import FusedDetector

    normality = tiny_normality_model({"image": 0.55, "pixel": 0.65})
    normality_dir = save_model(normality, tmp_path / "normality", extra=normality.metadata)
    listener = VerdictListener(broker.port)
    model = {"path": str(model_path), "normality": str(normality_dir)}
    config = station_config(tmp_path, broker.port, model=model)
    runtime = build_runtime(config)
    assert isinstance(runtime.inspector.detector, FusedDetector)
    daemon = StationDaemon(config, source=CyclingSource(6), runtime=runtime)
    thread = start(daemon)
    assert wait_until(lambda: len(listener.counts()) == 6, WAIT_S)
    stop(daemon, thread)
    records = [RecordStore(config.records.url).get(f"T-{i:05d}", "st-1") for i in range(6)]
    assert all(r.model_version.startswith("fused(") for r in records)

    bundle = tmp_path / "bundle"  # a bundle decides with its own graph: refused, clearly
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"format": BUNDLE_FORMAT}))
    model = {"path": str(bundle), "normality": str(normality_dir)}
    with pytest.raises(UserError, match="edge bundle"):
        build_runtime(station_config(tmp_path, None, model=model))


def test_a_station_review_band_sends_what_would_pass_to_review(tmp_path, model_path, broker):
    from inspection.errors import UserError

    listener = VerdictListener(broker.port)
    # A band from almost 0 up to the image threshold: no part can pass any more.
    config = station_config(
        tmp_path, broker.port, model={"path": str(model_path), "review_from": 1e-6}
    )
    runtime = build_runtime(config)
    assert runtime.inspector.thresholds.review == 1e-6
    daemon = StationDaemon(config, source=CyclingSource(6), runtime=runtime)
    thread = start(daemon)
    assert wait_until(lambda: len(listener.counts()) == 6, WAIT_S)
    stop(daemon, thread)
    records = [RecordStore(config.records.url).get(f"T-{i:05d}", "st-1") for i in range(6)]
    assert all(r.verdict in ("REVIEW", "REJECT") for r in records)
    assert all(r.calibration_version.endswith("; review from 1e-06") for r in records)

    model = {"path": str(model_path), "review_from": 5.0}  # above any image threshold
    with pytest.raises(UserError, match="review band start 5"):
        build_runtime(station_config(tmp_path, None, model=model))


def test_a_station_guard_band_is_loaded_before_the_first_part(tmp_path, model_path):
    from inspection.errors import UserError

    band = tmp_path / "guard_band.json"
    band.write_text('{"margins": {"scratch": {"length_mm": {"fixed": 0.3, "proportional": 0.05}}}}')
    model = {"path": str(model_path), "guard_band": str(band)}
    runtime = build_runtime(station_config(tmp_path, None, model=model))
    guard = runtime.inspector.thresholds.guard
    assert guard.margin("scratch", "length_mm", 2.0) == pytest.approx(0.4)
    assert guard.version in runtime.inspector.thresholds.version  # recorded with each verdict
    model = {"path": str(model_path), "guard_band": str(tmp_path / "absent.json")}
    with pytest.raises(UserError, match="no such guard-band file"):
        build_runtime(station_config(tmp_path, None, model=model))


def test_a_station_says_how_it_reads_the_dent_depth_its_standard_limits(
    tmp_path, model_path, caplog
):
    """Bracket's 4.2.1 limits a dent's depth: the log says it is read on a height map,
    and from the shading only with a calibration in the guard band (else REVIEW)."""
    import logging

    from inspection.station.daemon import dent_depth_reading

    with caplog.at_level(logging.INFO, logger="inspection.station"):
        runtime = build_runtime(station_config(tmp_path, None, model={"path": str(model_path)}))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "clause(s) 4.2.1 of QS-BRK-200 limit a dent's depth" in said
    assert "not read: such a dent goes to REVIEW" in said and "limit samples" in said
    calibration = tmp_path / "shading_depth.json"
    calibration.write_text(
        json.dumps(
            {
                "margins": {"dent": {"depth_mm": {"fixed": 0.05, "proportional": 0.0}}},
                "shading_depth": {"azimuth_deg": -126.0, "gain": 1.4, "pairs": 35},
            }
        )
    )
    model = {"path": str(model_path), "guard_band": str(calibration)}
    calibrated = build_runtime(station_config(tmp_path, None, model=model))
    words = dent_depth_reading(calibrated.inspector.standard, calibrated.inspector.thresholds)
    assert "from the dent's shading (light from -126 degrees, calibrated on 35 dents" in words
    assert "dark spot" not in words  # no steep dents in this calibration
    steep = json.loads(calibration.read_text())
    steep["shading_depth"] |= {"least_lit": 0.0194, "steep": 23}
    calibration.write_text(json.dumps(steep))
    spotted = build_runtime(station_config(tmp_path, None, model=model))
    words = dent_depth_reading(spotted.inspector.standard, spotted.inspector.thresholds)
    assert "lit under 0.5 of the least of its 23 steep dents (0.019) reads 0 deep" in words
    from inspection.config import standard_path
    from inspection.standards import load_standard

    panel = load_standard(standard_path("panel"))  # its dents are judged by size alone
    assert dent_depth_reading(panel, runtime.inspector.thresholds) == ""


def test_a_station_with_a_profiler_can_search_its_height_maps_for_dents(tmp_path, model_path):
    model = {"path": str(model_path), "profiler_dents": True}
    thresholds = build_runtime(station_config(tmp_path, None, model=model)).inspector.thresholds
    assert thresholds.profiler_dents and thresholds.version.endswith("; profiler dents")
    plain = build_runtime(station_config(tmp_path, None, model={"path": str(model_path)}))
    assert not plain.inspector.thresholds.profiler_dents


def test_a_profiled_stations_records_keep_each_parts_height_map(tmp_path, model_path):
    """Evidence of a part with a height map: its image, then its height map as a float32
    TIFF (what the console shows beside the image), the frame's own values."""
    from inspection.capture.simulator import SimulatedLine
    from inspection.io import read_height_map, read_image

    config = station_config(
        tmp_path,
        None,
        model_path=model_path,
        source={"kind": "simulator", "n": 2, "size": 64, "rate_hz": None, "profiler": True},
        records={"url": str(tmp_path / "records.db"), "evidence": "all"},
    )
    assert StationDaemon(config).run() == 0  # a finite source: the daemon exits once done
    store = RecordStore(config.records.url)
    line = SimulatedLine(config.product, n=2, seed=config.source.seed, size=64, profiler=True)
    frames = {obs.part_id: obs.frames[0] for obs, _ in line.parts()}
    assert len(frames) == 2
    for part_id, frame in frames.items():
        record = store.get(part_id, "st-1")
        image, height = (store.evidence.find(digest) for digest in record.evidence)
        assert image.suffix == ".png" and height.suffix == ".tiff"
        assert (read_image(image) == frame.image).all()
        assert np.array_equal(read_height_map(height), frame.height_map, equal_nan=True)
    store.close()
