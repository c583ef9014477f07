"""OpenCVCamera on real video files written with cv2.VideoWriter (MJPG in .avi, headless).

Reconnects are driven through the camera's backoff ``sleep`` hook: the test holds the
capture thread in its backoff wait while it removes or restores the file, so nothing
races the clock. Every wait has a generous ceiling.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from capture_helpers import CEILING_S, N_FRAMES, SIZE, Gate, Plug, write_video

from inspection.capture import CaptureError
from inspection.capture.opencv import CameraState, OpenCVCamera
from inspection.line.base import Backoff


def frame_number(image: np.ndarray) -> int:
    """Which frame of the file an RGB image is (by its red level; MJPG is lossy)."""
    red = float(image[..., 0].mean())
    return round((red - 10) / 18)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "line.avi")


def test_frames_are_rgb_stamped_and_counted(video: Path):
    ticks = iter(range(1_000_000, 2_000_000))
    with OpenCVCamera(str(video), camera_id="top", mm_per_px=0.5, clock=lambda: next(ticks)) as cam:
        shot = cam.grab(timeout=CEILING_S)
        assert cam.state is CameraState.CONNECTED
    image = shot.frame.image
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    assert abs(image[..., 2].mean() - 220) < 8  # blue is blue: BGR became RGB
    assert shot.frame.camera == "top" and shot.frame.mm_per_px == 0.5
    assert shot.captured_at >= datetime.fromtimestamp(1_000_000, UTC)
    assert shot.captured_at < datetime.fromtimestamp(2_000_000, UTC)
    assert shot.index >= 1
    assert cam.state is CameraState.DISCONNECTED


def test_a_slow_consumer_gets_the_newest_frame_never_a_stale_one(video: Path):
    with OpenCVCamera(str(video), read_timeout=CEILING_S) as cam:
        first = cam.grab()
        # Be slow: let the camera deliver several more frames before reading again.
        ready = threading.Event()
        deadline = threading.Timer(CEILING_S, ready.set)
        deadline.start()
        while cam.frames_captured < first.index + 5 and not ready.wait(0.01):
            pass
        deadline.cancel()
        second = cam.grab()
        assert second.index >= first.index + 5  # the frames in between were dropped
        # and the one returned is the file's frame of that number (looping file)
        assert frame_number(second.frame.image) == (second.index - 1) % N_FRAMES
        # a frame is handed out once: the next read waits for a new one
        third = cam.grab()
        assert third.index > second.index


def test_a_missing_source_fails_at_connect_with_the_reason(tmp_path: Path):
    cam = OpenCVCamera(str(tmp_path / "nope.avi"), open_timeout=CEILING_S)
    with pytest.raises(CaptureError, match=r"no such video file: .*nope\.avi"):
        cam.connect()
    assert cam.state is CameraState.DISCONNECTED
    with pytest.raises(CaptureError, match="no new frame"):
        cam.grab(timeout=0.05)


def test_a_file_removed_then_restored_reconnects_with_backoff(video: Path):
    gate = Gate()
    backoff = Backoff(min_s=0.01, max_s=0.04)
    cam = OpenCVCamera(str(video), loop=False, backoff=backoff, sleep=gate, fps=240)
    cam.connect()
    try:
        gate.wait_entered()  # the file ended (loop=False): lost, backing off
        assert cam.frames_captured == N_FRAMES  # every frame of the file was read
        assert cam.state is CameraState.RECONNECTING
        assert cam.last_error == "video file ended"

        hidden = video.with_suffix(".gone")
        video.rename(hidden)
        gate.go.release()  # reopen: the file is gone
        gate.wait_entered()
        assert "no such video file" in (cam.last_error or "")
        assert cam.state is CameraState.RECONNECTING
        with pytest.raises(CaptureError, match="reconnecting"):
            cam.grab(timeout=0.05)  # no frame from before the gap stands in for a new part

        hidden.rename(video)
        gate.go.release()  # reopen: the file is back, plays to its end, is lost again
        gate.wait_entered()
        assert cam.reconnects == 1
        assert cam.frames_captured == 2 * N_FRAMES  # the whole file a second time
        assert cam.last_error == "video file ended"
        # exponential: min_s after the loss, doubled after the failed reopen, and back to
        # min_s after the good reconnect
        assert gate.delays == [backoff.delay(1), backoff.delay(2), backoff.delay(1)]
    finally:
        gate.go.release(1000)
        cam.disconnect()


def test_an_unplugged_camera_backs_off_exponentially_and_comes_back(video: Path):
    plug, gate = Plug(video), Gate()
    backoff = Backoff(min_s=0.01, max_s=0.04)
    cam = OpenCVCamera(str(video), opener=plug.open, backoff=backoff, sleep=gate)
    cam.connect()
    try:
        cam.grab(timeout=CEILING_S)
        plug.plugged = False
        gate.wait_entered()
        assert cam.last_error == "video file ended"  # a file source: a failed read ends it
        for _ in range(4):  # four failed reopens
            gate.go.release()
            gate.wait_entered()
        assert cam.state is CameraState.RECONNECTING
        assert "could not open" in (cam.last_error or "")
        assert gate.delays == [backoff.delay(k) for k in range(1, 6)]
        assert gate.delays[-1] == backoff.max_s  # capped
        opens = plug.opens
        plug.plugged = True
        gate.go.release()
        assert cam.wait_for(CameraState.CONNECTED, CEILING_S)
        assert cam.grab(timeout=CEILING_S).frame.image.shape[:2] == (SIZE[1], SIZE[0])
        assert plug.opens == opens + 1 and cam.reconnects == 1
    finally:
        gate.go.release(1000)
        cam.disconnect()


def test_a_device_index_in_a_config_string_is_an_index():
    assert OpenCVCamera("0").source == 0
    assert not OpenCVCamera("0").is_file
    assert not OpenCVCamera("rtsp://127.0.0.1:1/x").is_file
