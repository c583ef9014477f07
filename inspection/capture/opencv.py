"""A camera through OpenCV's ``VideoCapture``: a USB index, an RTSP/HTTP URL or a video file.

A capture thread reads frames as fast as the device delivers them (a video file: at its
frame rate) and keeps only the newest one, so that a consumer slower than the camera
never works on a stale frame and no queue grows behind it. :meth:`OpenCVCamera.read`
waits for a frame it has not returned before.

A lost device (a read fails, a file ends with ``loop=False``, an unplugged camera, a
dropped stream) is reopened by the thread itself with exponential backoff
(:class:`~inspection.line.base.Backoff`, the line bus's own); :attr:`OpenCVCamera.state`
and :attr:`OpenCVCamera.last_error` say where it stands. While the camera is lost the
newest frame is dropped, so a part triggered in the gap gets a :class:`CaptureError`
(recorded as not inspected), never a frame from before the gap.

Torch-free: the edge box runs it.

>>> with OpenCVCamera(0, width=1280, height=720) as camera:  # doctest: +SKIP
...     shot = camera.grab()
...     shot.frame.image.shape, shot.captured_at
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from inspection.capture.base import Camera, CaptureError
from inspection.line.base import Backoff
from inspection.types import Frame

__all__ = ["CameraState", "CapturedFrame", "OpenCVCamera", "VideoSource"]

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF = Backoff(min_s=0.5, max_s=10.0)
DEFAULT_FILE_FPS = 30.0  # a video file that declares no frame rate is played at this rate


class CameraState(enum.StrEnum):
    """Where a camera stands (the line bus's states, for a camera)."""

    DISCONNECTED = "disconnected"  # not connected, closed, or never opened yet
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # was delivering, lost it, reopening by itself


class VideoSource(Protocol):
    """What the capture thread needs of a ``cv2.VideoCapture`` (a test may wrap one)."""

    def isOpened(self) -> bool: ...  # OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def set(self, prop: int, value: float) -> bool: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class CapturedFrame:
    """A frame with when it was captured.

    Attributes
    ----------
    frame : Frame
        The image, RGB (or single-channel) uint8, with the camera id and scale.
    captured_at : datetime
        When the capture thread received it (UTC, from the camera's clock).
    index : int
        Its number since :meth:`OpenCVCamera.connect`, from 1; a gap between two frames a
        consumer got is the frames it was too slow for (dropped, not queued).
    """

    frame: Frame
    captured_at: datetime
    index: int


class OpenCVCamera(Camera):
    """A camera (or video file) read by a background thread that keeps the newest frame.

    Parameters
    ----------
    source : int | str
        A device index (``0``), a stream URL (``rtsp://...``) or a video file path.
    camera_id : str
        The camera's id at the station (:attr:`Frame.camera`).
    width, height, fps : int | float | None
        Asked of a device after it opens (a device may pick the nearest it supports).
        For a video file ``fps`` is the playback rate (default: the file's own).
    loop : bool
        A video file that ends starts again; ``False``: its end is a lost device,
        reopened with backoff like any other.
    mm_per_px : float | None
        The station's calibrated scale, carried by every frame.
    backoff : Backoff
        Delays between reopen attempts: ``min_s``, doubling up to ``max_s``.
    clock : Callable[[], float]
        Wall-clock seconds (``time.time``) stamped on frames as :attr:`CapturedFrame.captured_at`.
    open_timeout : float
        Seconds :meth:`connect` waits for the first frame, and OpenCV's own open timeout
        for a stream.
    read_timeout : float
        Seconds :meth:`read` waits for a new frame before it raises, and OpenCV's read
        timeout for a stream.
    opener : Callable[[], VideoSource] | None
        Opens the device (default: ``cv2.VideoCapture(source, ...)``). Called again on
        every reconnect.
    sleep : Callable[[float], None] | None
        Waits between reopen attempts (default: an interruptible wait, cut short by
        :meth:`disconnect`).
    """

    def __init__(
        self,
        source: int | str,
        camera_id: str = "cam0",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        *,
        loop: bool = True,
        mm_per_px: float | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        opener: Callable[[], VideoSource] | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        # "0" from a config file is the device index, as OpenCV's own tools read it.
        self.source = int(source) if isinstance(source, str) and source.isdigit() else source
        self.camera_id = camera_id
        self.width, self.height, self.fps = width, height, fps
        self.loop, self.mm_per_px, self.backoff, self.clock = loop, mm_per_px, backoff, clock
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self._opener = opener or self._open_cv
        self._sleep = sleep or self._interruptible_sleep
        self._state = CameraState.DISCONNECTED
        self._last_error: str | None = None
        self._latest: CapturedFrame | None = None
        self._returned = 0  # index of the last frame read() gave out
        self._count = 0
        self._reconnects = 0
        self._loss_reason = "read failed"
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> CameraState:
        """Connected, reconnecting by itself, or disconnected."""
        return self._state

    @property
    def last_error(self) -> str | None:
        """Why the device was last lost or failed to open (kept after it recovers)."""
        return self._last_error

    @property
    def reconnects(self) -> int:
        """How many times the device was opened again after it was lost."""
        return self._reconnects

    @property
    def frames_captured(self) -> int:
        """Frames received since :meth:`connect` (read or not)."""
        return self._count

    @property
    def is_file(self) -> bool:
        """The source is a video file (neither a device index nor a URL)."""
        return isinstance(self.source, str) and "://" not in self.source

    def connect(self) -> None:
        """Start the capture thread and wait for the first frame.

        Raises
        ------
        CaptureError
            When the device gives no frame within ``open_timeout`` (a wrong index, URL or
            path is a configuration error, reported at once); the thread is stopped.
            Once a device has delivered, later losses are reconnected by the thread.
        """
        if self._thread is not None:
            return
        self._stop.clear()
        self._count = self._returned = 0
        self._last_error = None
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera_id}")
        self._thread.daemon = True
        self._thread.start()
        with self._changed:
            self._changed.wait_for(
                lambda: self._count > 0 or self._last_error is not None, self.open_timeout
            )
            delivered, error = self._count > 0, self._last_error
        if not delivered:
            self.disconnect()
            raise CaptureError(
                f"camera {self.camera_id}: {error or 'no frame'} "
                f"(source {self.source!r}, waited up to {self.open_timeout:g} s)"
            )

    def grab(self, timeout: float | None = None) -> CapturedFrame:
        """The newest frame not returned before, with its capture time.

        Parameters
        ----------
        timeout : float | None
            Seconds to wait for a new frame (default ``read_timeout``).

        Raises
        ------
        CaptureError
            When no new frame arrived in time (the camera is lost, reconnecting, or not
            connected); the message carries :attr:`state` and :attr:`last_error`.
        """
        timeout = self.read_timeout if timeout is None else timeout
        with self._changed:
            fresh = self._changed.wait_for(
                lambda: self._latest is not None and self._latest.index > self._returned,
                timeout,
            )
            if not fresh or self._latest is None:
                raise CaptureError(
                    f"camera {self.camera_id}: no new frame within {timeout:g} s "
                    f"({self._state.value}; last error: {self._last_error or 'none'})"
                )
            self._returned = self._latest.index
            return self._latest

    def read(self) -> Frame:
        """The newest frame not returned before (see :meth:`grab`)."""
        return self.grab().frame

    def wait_for(self, state: CameraState, timeout: float) -> bool:
        """Wait until :attr:`state` is ``state``; ``False`` when ``timeout`` s passed."""
        with self._changed:
            return self._changed.wait_for(lambda: self._state is state, timeout)

    def disconnect(self) -> None:
        """Stop the capture thread and release the device."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=max(self.open_timeout, self.read_timeout) + 5.0)
        self._set_state(CameraState.DISCONNECTED, drop_frame=True)

    # ------------------------------------------------------------------ capture thread

    def _run(self) -> None:
        failures = 0  # consecutive failed opens (or losses) since the last good frame
        ever_delivered = False
        while not self._stop.is_set():
            if failures:
                self._sleep(self.backoff.delay(failures))
                if self._stop.is_set():
                    break
            try:
                device = self._open()
            except Exception as exc:  # a driver error must not end the thread
                failures += 1
                self._fail(f"cannot open: {exc}", ever_delivered)
                continue
            try:
                delivered = self._pump(device)
                reason = "stopped" if self._stop.is_set() else self._loss_reason
            except Exception as exc:
                delivered, reason = 0, f"read failed: {type(exc).__name__}: {exc}"
            finally:
                device.release()
            if self._stop.is_set():
                break
            if delivered:
                ever_delivered = True
                failures = 1  # wait backoff.min_s, then reopen
            else:
                failures += 1
            self._fail(reason, ever_delivered)

    def _fail(self, reason: str, ever_delivered: bool) -> None:
        logger.warning("camera %s: %s", self.camera_id, reason)
        state = CameraState.RECONNECTING if ever_delivered else CameraState.DISCONNECTED
        with self._changed:
            self._last_error = reason
        self._set_state(state, drop_frame=True)

    def _open(self) -> VideoSource:
        if self.is_file and not Path(str(self.source)).is_file():
            raise CaptureError(f"no such video file: {self.source}")
        device = self._opener()
        if not device.isOpened():
            device.release()
            raise CaptureError(f"OpenCV could not open {self.source!r}")
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, self.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
            (cv2.CAP_PROP_FPS, None if self.is_file else self.fps),
        ):
            if value is not None:
                device.set(prop, float(value))
        return device

    def _open_cv(self) -> VideoSource:
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout * 1000),
        ]
        return cv2.VideoCapture(self.source, cv2.CAP_ANY, timeouts)

    def _pump(self, device: VideoSource) -> int:
        """Read frames until the device fails or :meth:`disconnect`; returns how many."""
        period = self._file_period(device)
        delivered = 0
        due = time.monotonic()
        while not self._stop.is_set():
            ok, image = device.read()
            if (not ok or image is None) and self.is_file and self.loop and delivered:
                # End of a looping file: rewind (not a loss).
                device.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = device.read()
            if not ok or image is None:
                self._loss_reason = (
                    "video file ended" if self.is_file else "read failed (device lost)"
                )
                return delivered
            self._publish(image)
            delivered += 1
            if period:  # a file plays at its frame rate, as a camera would deliver it
                due += period
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                else:
                    due = time.monotonic()
        return delivered

    def _file_period(self, device: VideoSource) -> float:
        if not self.is_file:
            return 0.0
        fps = self.fps or device.get(cv2.CAP_PROP_FPS) or DEFAULT_FILE_FPS
        return 1.0 / fps if fps > 0 else 1.0 / DEFAULT_FILE_FPS

    def _publish(self, image: np.ndarray) -> None:
        frame = Frame(image=_to_rgb(image), camera=self.camera_id, mm_per_px=self.mm_per_px)
        captured_at = datetime.fromtimestamp(self.clock(), UTC)
        with self._changed:
            if self._stop.is_set():
                return  # disconnect() gave up waiting for a hung read: stay disconnected
            self._count += 1
            if self._state is not CameraState.CONNECTED:
                if self._state is CameraState.RECONNECTING:
                    self._reconnects += 1
                logger.info("camera %s: %s -> connected", self.camera_id, self._state.value)
                self._state = CameraState.CONNECTED
            self._latest = CapturedFrame(frame, captured_at, self._count)
            self._changed.notify_all()

    def _set_state(self, state: CameraState, drop_frame: bool = False) -> None:
        with self._changed:
            if state is not self._state:
                logger.info("camera %s: %s -> %s", self.camera_id, self._state.value, state.value)
            self._state = state
            if drop_frame:
                # A frame from before a loss must never stand in for a part seen after it.
                self._latest = None
            self._changed.notify_all()

    def _interruptible_sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def __repr__(self) -> str:
        return f"OpenCVCamera({self.source!r}, camera_id={self.camera_id!r}, state={self.state})"


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR / BGRA to the pipeline's RGB; a single channel stays as it is."""
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return image
