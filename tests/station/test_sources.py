"""The daemon on the capture backends: a watched folder (files acknowledged once recorded)
and a camera fired by the line's part-present messages that is unplugged for a while
(parts in the gap are not inspected, never PASS; it comes back by itself)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the station tests run a tiny torch model (models extra)")
pytest.importorskip("cv2", reason="the capture backends need OpenCV")

from station_helpers import (
    WAIT_S,
    Mosquitto,
    VerdictListener,
    mosquitto_available,
    station_config,
    tiny_model,
    wait_until,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from capture_helpers import Plug, write_video

from inspection.capture.opencv import CameraState, OpenCVCamera
from inspection.line.base import Backoff, BusState
from inspection.records import RecordStore
from inspection.station.daemon import StationDaemon
from inspection.station.sources import CameraParts


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    return tiny_model(tmp_path_factory.mktemp("station-model"))


pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def run(daemon: StationDaemon) -> threading.Thread:
    daemon.exit_codes = []
    thread = threading.Thread(target=lambda: daemon.exit_codes.append(daemon.run()), daemon=True)
    thread.start()
    assert wait_until(daemon.ready, WAIT_S)
    return thread


def test_a_watched_folder_each_file_recorded_then_moved(tmp_path, model_path):
    from inspection.capture.simulator import SimulatedLine
    from inspection.io import write_image

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = []
    for observation in SimulatedLine("bracket", n=6, seed=2, size=64):
        names.append(f"{observation.part_id}.png")
        write_image(inbox / f"{observation.part_id}.png", observation.frames[0].image)
    (inbox / "broken.png").write_bytes(b"\x89PNG not really")
    config = station_config(
        tmp_path, None, model_path=model_path,
        source={"kind": "folder", "inbox": str(inbox), "settle_s": 0.05, "poll_s": 0.05,
                "unreadable_after_s": 0.2},
    )  # fmt: skip
    daemon = StationDaemon(config)
    thread = run(daemon)
    assert wait_until(lambda: daemon.stats.recorded + daemon.stats.not_inspected == 7, WAIT_S)
    daemon.request_stop()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "a folder source must stop on SIGTERM"
    assert daemon.exit_codes == [0]

    assert sorted(p.name for p in (inbox / "done").glob("*.png")) == sorted(names)
    assert [p.name for p in (inbox / "failed").glob("*.png")] == ["broken.png"]
    assert not list(inbox.glob("*.png")), "nothing left behind, nothing deleted"
    store = RecordStore(config.records.url)
    broken = store.get("broken", "st-1")
    assert broken.verdict is None and broken.not_inspected
    assert store.counts(station="st-1")["NOT_INSPECTED"] == 1


@pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")
def test_an_unplugged_camera_parts_in_the_gap_are_not_inspected(tmp_path, model_path):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    broker = Mosquitto(tmp_path / "broker").start()
    try:
        listener = VerdictListener(broker.port)
        plug = Plug(write_video(tmp_path / "line.avi"))
        camera = OpenCVCamera(
            str(plug.path), opener=plug.open, backoff=Backoff(0.05, 0.2), read_timeout=0.5
        )
        config = station_config(tmp_path, broker.port, model_path=model_path)
        daemon = StationDaemon(config, source=CameraParts(camera, "st-1", product="bracket"))
        thread = run(daemon)
        assert daemon.bus.wait_for(BusState.CONNECTED, WAIT_S)
        line = mqtt.Client(CallbackAPIVersion.VERSION2)
        line.connect("127.0.0.1", broker.port)
        line.loop_start()

        def trigger(part_id: str) -> None:
            line.publish("inspection/ln-1/st-1/trigger", part_id, qos=1).wait_for_publish(30)

        def recorded(part_id: str) -> bool:
            return part_id in listener.counts()

        # The bus subscribes to triggers just after it connects: repeat the first one
        # until it is taken (a repeated id is skipped by the daemon's journal).
        assert wait_until(lambda: trigger("P-0") or recorded("P-0"), WAIT_S, step=1.0)
        trigger("P-1")
        assert wait_until(lambda: recorded("P-1"), WAIT_S)

        plug.plugged = False
        assert wait_until(lambda: camera.state is not CameraState.CONNECTED, WAIT_S)
        trigger("FLUSH")  # may still take the last frame from before the gap
        assert wait_until(lambda: recorded("FLUSH"), WAIT_S)
        for part_id in ("G-1", "G-2"):
            trigger(part_id)
        assert wait_until(lambda: recorded("G-1") and recorded("G-2"), WAIT_S)

        plug.plugged = True
        assert camera.wait_for(CameraState.CONNECTED, WAIT_S)
        trigger("P-2")
        assert wait_until(lambda: recorded("P-2"), WAIT_S)
        daemon.request_stop()
        thread.join(WAIT_S)
        assert daemon.exit_codes == [0]
        line.loop_stop()
        verdicts = listener.by_part()
        listener.close()
    finally:
        broker.stop()

    store = RecordStore(config.records.url)
    for part_id in ("G-1", "G-2"):
        record = store.get(part_id, "st-1")
        assert record.verdict is None and "no frame" in record.not_inspected
        assert verdicts[part_id]["verdict"] == "REJECT", "the line hears the fail-safe"
    for part_id in ("P-0", "P-1", "P-2"):
        assert store.get(part_id, "st-1").verdict is not None, "inspected when it sees"
    assert camera.reconnects >= 1
