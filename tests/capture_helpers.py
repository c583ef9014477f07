"""Cameras for tests: real video files, a camera you can unplug, a backoff you can hold.

At the top of ``tests/`` (like ``edge_guard.py``) so that any test folder can import it:
``from capture_helpers import Gate, Plug, write_video``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

N_FRAMES = 12
CEILING_S = 60.0  # generous: a loaded CI machine, never a speed assumption
SIZE = (64, 48)  # width, height


def rgb_of(i: int) -> tuple[int, int, int]:
    """Frame ``i``'s colour: red counts frames, blue stays high (checks channel order)."""
    return (10 + 18 * i, 90, 220)


def write_video(
    path: Path, n: int = N_FRAMES, fps: float = 30.0, size: tuple[int, int] = SIZE
) -> Path:
    """A real MJPG .avi (OpenCV writes it headless): frame ``i`` is a flat ``rgb_of(i)``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        r, g, b = rgb_of(i)
        writer.write(np.full((size[1], size[0], 3), (b, g, r), np.uint8))  # BGR on disk
    writer.release()
    return path


class Gate:
    """A backoff ``sleep`` for ``OpenCVCamera(sleep=...)``: records each delay and holds
    the capture thread until the test releases ``go`` (release many before disconnect)."""

    def __init__(self):
        self.delays: list[float] = []
        self.entered = threading.Semaphore(0)
        self.go = threading.Semaphore(0)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.entered.release()
        self.go.acquire(timeout=CEILING_S)

    def wait_entered(self) -> None:
        assert self.entered.acquire(timeout=CEILING_S), "the camera never backed off"


class Plug:
    """A real ``cv2.VideoCapture`` on a file behind a switch, for ``OpenCVCamera(opener=
    plug.open)``: while ``plugged`` is False, reads fail and opens give a closed device."""

    def __init__(self, path: Path):
        self.path, self.plugged, self.opens = path, True, 0

    def open(self) -> Plug.Capture:
        self.opens += 1
        return Plug.Capture(self, cv2.VideoCapture(str(self.path)))

    class Capture:
        def __init__(self, plug: Plug, inner: cv2.VideoCapture):
            self.plug, self.inner = plug, inner

        def isOpened(self) -> bool:  # OpenCV's name
            return self.plug.plugged and self.inner.isOpened()

        def read(self):
            return self.inner.read() if self.plug.plugged else (False, None)

        def set(self, prop: int, value: float) -> bool:
            return self.inner.set(prop, value)

        def get(self, prop: int) -> float:
            return self.inner.get(prop)

        def release(self) -> None:
            self.inner.release()
