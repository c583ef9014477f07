"""Abstract capture devices: one base class per kind of hardware (as lerobot does).

A backend (industrial camera SDK, folder, simulator) subclasses these; the line daemon
and the console only ever talk to the base interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from types import TracebackType

from inspection.types import AudioClip, Frame, Observation


class CaptureError(RuntimeError):
    """A device failed to deliver: the part is then decided REVIEW, never PASS."""


class Camera(abc.ABC):
    """A camera at an inspection station."""

    camera_id: str

    @abc.abstractmethod
    def connect(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> Frame:
        """Capture one frame (blocking until the trigger fires or the device times out)."""

    @abc.abstractmethod
    def disconnect(self) -> None: ...

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()


class Microphone(abc.ABC):
    """A microphone at the station (tap test, line sound, operator note)."""

    @abc.abstractmethod
    def record(self, seconds: float) -> AudioClip: ...


class PartSource(abc.ABC):
    """Whole parts as they pass the station: frames from every camera, plus audio."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Observation]: ...
