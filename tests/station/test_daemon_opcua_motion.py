"""The station daemon on the two paths its mosquitto tests leave out: the OPC UA bus (a
real asyncua server process; verdict codes and part ids read back from the server's
side) and a camera over a real video file fired by the motion trigger (every part that
enters and settles is captured once, a nudged part is not taken twice)."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="the station tests run a tiny torch model (models extra)")
pytest.importorskip("asyncua", reason="the OPC UA bus needs the line extra")
pytest.importorskip("cv2", reason="the camera source needs OpenCV")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "line"))  # the real servers
import cv2
from brokers import OpcUaServer
from station_helpers import (
    PRODUCT,
    WAIT_S,
    CyclingSource,
    corrupt_frame,
    inspections_per_part,
    nan_audio,
    station_config,
    tiny_model,
    wait_until,
)

from inspection.capture.opencv import CameraState, OpenCVCamera
from inspection.line.base import VERDICT_CODES, Backoff
from inspection.records import RecordStore
from inspection.station.daemon import StationDaemon
from inspection.station.sources import CameraParts, build_source
from inspection.types import Verdict

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(1)
    return tiny_model(tmp_path_factory.mktemp("station-model"))


def run(daemon: StationDaemon) -> threading.Thread:
    daemon.exit_codes = []
    thread = threading.Thread(target=lambda: daemon.exit_codes.append(daemon.run()), daemon=True)
    thread.start()
    assert wait_until(daemon.ready, WAIT_S), "the daemon did not become ready"
    return thread


# ---------------------------------------------------------------------- OPC UA


def latched(server: OpcUaServer) -> list[tuple[str, int]]:
    """``(part_id, verdict code)`` at every sequence write, as a PLC latching on the
    counter sees them (from the writes the server accepted, in order), with the check
    that the counter moved on by one each time."""
    rows, current, sequences = [], {}, []
    for write in server.written():
        current[write["node"]] = write["value"]
        if write["node"] == "Sequence":
            rows.append((current.get("PartId"), current.get("Verdict")))
            sequences.append(write["value"])
    assert sequences == list(range(1, len(sequences) + 1)), sequences
    return rows


def test_opcua_every_part_recorded_once_and_its_code_on_the_server(tmp_path, model_path):
    server = OpcUaServer(tmp_path / "plc").start()
    try:
        nodes = OpcUaServer.NODES
        config = station_config(
            tmp_path, None, model_path=model_path,
            bus={"kind": "opcua", "endpoint": server.endpoint,
                 "verdict_node": nodes["verdict"], "part_id_node": nodes["part_id"],
                 "sequence_node": nodes["sequence"], "trigger_node": None,
                 "heartbeat_s": None, "backoff_min_s": 0.05, "backoff_max_s": 0.5,
                 "timeout_s": 30.0},  # generous: a loaded machine is not a lost server
        )  # fmt: skip
        # Two spoiled parts: their verdicts are REVIEW (or at least not PASS).
        source = CyclingSource(20, broken={6: corrupt_frame, 13: nan_audio})
        daemon = StationDaemon(config, source=source)
        thread = run(daemon)
        ids = {source.part_id(i) for i in range(20)}
        assert wait_until(lambda: {pid for pid, _ in latched(server)} >= ids, WAIT_S), (
            server.log.read_text()[-2000:]
        )
        thread.join(WAIT_S)  # a finite source: the daemon drains and exits by itself
        assert not thread.is_alive() and daemon.exit_codes == [0]
        rows = latched(server)
    finally:
        server.stop()

    assert inspections_per_part(tmp_path / "records.db") == Counter(dict.fromkeys(ids, 1))
    assert Counter(pid for pid, _ in rows) == Counter(dict.fromkeys(ids, 1)), "lost or twice"
    store = RecordStore(config.records.url)
    recorded = {pid: store.get(pid, "st-1").verdict for pid in ids}
    store.close()
    for part_id, code in rows:
        assert code == VERDICT_CODES[Verdict(recorded[part_id])], part_id
        if recorded[part_id] != "PASS":
            assert code != VERDICT_CODES[Verdict.PASS], f"{part_id} PASS on the line"
    assert recorded[source.part_id(6)] == "REVIEW"
    assert recorded[source.part_id(13)] != "PASS"
    codes = Counter(code for _, code in rows)
    assert codes[1] and codes[2] and codes[3], f"all three verdicts on the wire: {codes}"
    assert daemon.stats.recorded == 20 and daemon.stats.errors == 0


# ---------------------------------------------------------------------- motion trigger

N_PARTS = 5
SIDE = 64  # one tile of the tiny model
EMPTY_LEVEL = 10  # the empty station is dark; a part is nowhere darker than ~35


def shifted(image: np.ndarray, dx: int) -> np.ndarray:
    """``image`` moved ``dx`` pixels right (negative: left) over the empty station."""
    out = np.full_like(image, EMPTY_LEVEL)
    if dx >= 0:
        out[:, dx:] = image[:, : SIDE - dx]
    else:
        out[:, :dx] = image[:, -dx:]
    return out


def line_frames(parts: list[np.ndarray]) -> list[np.ndarray]:
    """RGB frames of a station: empty, then each part slides in, settles, is nudged by
    a gripper and settles again, and slides out."""
    empty = np.full((SIDE, SIDE, 3), EMPTY_LEVEL, np.uint8)
    frames = []
    for part in parts:
        frames += [empty] * 6
        frames += [shifted(part, dx) for dx in (48, 32, 16)]  # entering: moving
        frames += [part] * 6  # still: the trigger fires on the 3rd of these
        frames += [shifted(part, 3)] + [part] * 4  # nudged: moves, still there
        frames += [shifted(part, dx) for dx in (-16, -32, -48)]  # leaving
    frames += [empty] * 8
    return frames


def write_line_video(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """A real MJPG .avi of ``frames`` (RGB), as OpenCV writes it headless."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (SIDE, SIDE))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


class LockstepCamera(OpenCVCamera):
    """A real :class:`OpenCVCamera` on a real ``cv2.VideoCapture`` whose capture thread
    reads the next frame of the file only once the last one was grabbed. A camera keeps
    only its newest frame, so a consumer slowed by a loaded machine would miss frames;
    in lockstep the trigger sees every frame of the file, whatever the machine's speed."""

    def __init__(self, path: Path, **options) -> None:
        self.taken = threading.Semaphore(1)  # the first frame needs no grab before it
        self.closing = threading.Event()
        self.grabs = 0
        super().__init__(str(path), opener=self._open_paced, **options)

    def _open_paced(self) -> LockstepCamera.Paced:
        return LockstepCamera.Paced(self, cv2.VideoCapture(str(self.source)))

    def grab(self, timeout: float | None = None):
        captured = super().grab(timeout)
        self.grabs += 1
        self.taken.release()
        return captured

    def disconnect(self) -> None:
        self.closing.set()
        super().disconnect()

    class Paced:
        def __init__(self, camera: LockstepCamera, inner: cv2.VideoCapture) -> None:
            self.camera, self.inner = camera, inner

        def read(self):
            while not self.camera.closing.is_set():
                if self.camera.taken.acquire(timeout=0.1):
                    return self.inner.read()
            return False, None

        def isOpened(self) -> bool:  # OpenCV's name
            return self.inner.isOpened()

        def set(self, prop: int, value: float) -> bool:
            return self.inner.set(prop, value)

        def get(self, prop: int) -> float:
            return self.inner.get(prop)

        def release(self) -> None:
            self.inner.release()


class Seen:
    """The runtime, keeping every image it was given (which frame the trigger took)."""

    def __init__(self, runtime) -> None:
        self.runtime, self.images, self._lock = runtime, {}, threading.Lock()

    def inspect(self, observation):
        with self._lock:
            self.images[observation.part_id] = observation.frames[0].image.copy()
        return self.runtime.inspect(observation)


def test_motion_trigger_on_a_video_file_one_part_per_part(tmp_path, model_path):
    from inspection.capture.simulator import SimulatedLine
    from inspection.station.daemon import build_runtime

    parts = [o.frames[0].image for o in SimulatedLine(PRODUCT, n=N_PARTS, seed=7, size=SIDE)]
    frames = line_frames(parts)
    video = write_line_video(tmp_path / "line.avi", frames)
    config = station_config(
        tmp_path, None, model_path=model_path,
        source={"kind": "camera", "device": str(video), "camera_id": "cam-1", "loop": False,
                "trigger": "motion",
                "motion": {"threshold": 25, "min_area": 300, "settle_frames": 3}},
    )  # fmt: skip
    built = build_source(config)  # the config's trigger, on a camera in lockstep
    assert isinstance(built, CameraParts) and built.motion is not None
    trigger = built.motion
    assert (trigger.min_area, trigger.settle_frames) == (300, 3)
    # Played once: at its end the camera waits in a backoff the test never sees end.
    camera = LockstepCamera(
        video, camera_id="cam-1", loop=False, fps=100, backoff=Backoff(3600, 3600),
        read_timeout=0.5,
    )  # fmt: skip
    source = CameraParts(camera, config.station, trigger, config.product)
    runtime = Seen(build_runtime(config))
    daemon = StationDaemon(config, source=source, runtime=runtime)
    thread = run(daemon)
    assert wait_until(lambda: camera.state is CameraState.RECONNECTING, WAIT_S), "file not over"
    assert camera.frames_captured == len(frames) == camera.grabs, "a frame was skipped"
    assert wait_until(lambda: daemon.stats.recorded >= N_PARTS, WAIT_S)
    daemon.request_stop()
    thread.join(WAIT_S)
    assert not thread.is_alive() and daemon.exit_codes == [0]

    assert trigger.fired == N_PARTS and trigger.passed_unsettled == 0
    assert daemon.stats.captured == N_PARTS == daemon.stats.recorded
    assert daemon.stats.duplicates == daemon.stats.not_inspected == daemon.stats.errors == 0
    per_part = inspections_per_part(tmp_path / "records.db")
    assert len(per_part) == N_PARTS and set(per_part.values()) == {1}
    store = RecordStore(config.records.url)
    for part_id in per_part:
        assert part_id.startswith("st-1-")
        assert store.get(part_id, "st-1").verdict is not None, "inspected"
    store.close()
    # Each part was taken on a frame of it settled, not while it moved, in order.
    assert set(runtime.images) == set(per_part)
    taken = [runtime.images[p] for p in sorted(per_part, key=lambda p: int(p.rsplit("-", 1)[1]))]
    for part, image in zip(parts, taken, strict=True):
        errors = [np.abs(image.astype(float) - frame).mean() for frame in frames]
        assert frames[int(np.argmin(errors))] is part, errors  # the still part itself
