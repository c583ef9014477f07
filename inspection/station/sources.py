"""The station's part sources beyond the simulator: a watched folder and a camera.

- ``folder``: :class:`~inspection.capture.folder.FolderSource`; the daemon acknowledges
  each part once it is recorded (files to ``done/``, or ``failed/`` with the reason).
- ``camera``: :class:`CameraParts`, an :class:`~inspection.capture.opencv.OpenCVCamera`
  (USB index, RTSP URL, video file) fired by a trigger: the line bus's part-present
  message (carrying the part id) or a :class:`~inspection.capture.trigger.MotionTrigger`
  (frame difference; the part id is made up from the station and the time).

A camera that gives no frame for a triggered part yields the part with no frames and the
reason in ``metadata["capture_error"]``: the daemon records it as not inspected and tells
the line the fail-safe verdict, never PASS. The camera reconnects by itself.

Torch-free.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from inspection.capture.base import CaptureError, PartSource
from inspection.types import Observation

log = logging.getLogger("inspection.station")

CAPTURE_ERROR = "capture_error"  # the capture package's key for a part without a frame


class CameraParts(PartSource):
    """Parts from a camera, one per trigger.

    Parameters
    ----------
    camera : OpenCVCamera
        Connected by the first iteration; reconnects by itself.
    station : str
        Set on every observation (and in made-up part ids).
    trigger : MotionTrigger | None
        Frame-difference trigger; ``None``: parts come from :meth:`trigger` (the line bus's
        part-present messages, wired by the daemon through :meth:`attach_bus`).
    product : str | None
        Set on every observation.
    """

    def __init__(
        self, camera: Any, station: str, trigger: Any = None, product: str | None = None
    ) -> None:
        self.camera, self.station, self.motion, self.product = camera, station, trigger, product
        self._triggers: queue.Queue[str] = queue.Queue()
        self._closed = threading.Event()
        self._seq = 0

    # ------------------------------------------------------------------ triggers

    def attach_bus(self, bus: Any) -> None:
        """Take part-present triggers (with their part ids) from the line bus."""
        if self.motion is None and bus is not None:
            bus.on_trigger(lambda trigger: self.trigger(trigger.part_id))

    def trigger(self, part_id: str) -> None:
        """A part is in front of the camera: capture it (the next fresh frame)."""
        self._triggers.put(part_id)

    def close(self) -> None:
        """End iteration and release the camera."""
        self._closed.set()
        self.camera.disconnect()

    # ------------------------------------------------------------------ parts

    def __iter__(self) -> Iterator[Observation]:
        self._connect()
        if self.motion is None:
            yield from self._on_triggers()
        else:
            yield from self._on_motion()

    def _connect(self) -> None:
        # A camera down at start is not fatal: it reconnects; triggered parts meanwhile
        # are not inspected, with the reason.
        try:
            self.camera.connect()
        except CaptureError as error:
            log.error("camera not delivering yet: %s", error)

    def _on_triggers(self) -> Iterator[Observation]:
        while not self._closed.is_set():
            try:
                part_id = self._triggers.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                captured = self.camera.grab()
            except CaptureError as error:
                yield self._gap(part_id, str(error))
                continue
            yield self._observation(part_id, captured)

    def _on_motion(self) -> Iterator[Observation]:
        while not self._closed.is_set():
            try:
                captured = self.camera.grab()
            except CaptureError as error:
                # No part id without a frame: nothing to record; the camera state and
                # the log say the station is blind.
                log.warning("camera: %s", error)
                continue
            if self.motion.update(captured.frame):
                self._seq += 1
                stamp = captured.captured_at.strftime("%Y%m%dT%H%M%S%f")
                yield self._observation(f"{self.station}-{stamp}-{self._seq}", captured)

    def _observation(self, part_id: str, captured: Any) -> Observation:
        return Observation(
            part_id=part_id,
            station=self.station,
            frames=(captured.frame,),
            timestamp=captured.captured_at,
            product=self.product,
        )

    def _gap(self, part_id: str, reason: str) -> Observation:
        return Observation(
            part_id=part_id,
            station=self.station,
            frames=(),
            timestamp=datetime.now(UTC),
            product=self.product,
            metadata={CAPTURE_ERROR: f"no frame: {reason}"},
        )


def build_source(config: Any) -> PartSource:
    """The part source ``config.source`` names (simulator, folder or camera)."""
    options = config.source
    if options.kind == "simulator":
        from inspection.station.daemon import SimulatorParts

        return SimulatorParts(options, config.product, config.station)
    if options.kind == "folder":
        from inspection.capture.folder import FolderSource

        inbox = options.inbox
        return FolderSource(
            inbox,
            options.done_dir or inbox / "done",
            options.failed_dir or inbox / "failed",
            settle_s=options.settle_s,
            poll_s=options.poll_s,
            station=config.station,
            mm_per_px=options.mm_per_px,
            product=config.product,
            unreadable_after_s=options.unreadable_after_s,
            height_encoding=options.height_encoding and options.height_encoding.encoding(),
        )
    if options.kind == "camera":
        from inspection.capture.opencv import OpenCVCamera
        from inspection.capture.trigger import MotionTrigger
        from inspection.line.base import Backoff

        camera = OpenCVCamera(
            options.device,
            options.camera_id,
            options.width,
            options.height,
            options.fps,
            loop=options.loop,
            mm_per_px=options.mm_per_px,
            backoff=Backoff(options.backoff_min_s, options.backoff_max_s),
            read_timeout=options.read_timeout_s,
        )
        motion = None
        if options.trigger == "motion":
            m = options.motion
            motion = MotionTrigger(m.threshold, m.min_area, m.settle_frames)
        return CameraParts(camera, config.station, motion, config.product)
    raise ValueError(f"unknown source kind {options.kind!r}")
