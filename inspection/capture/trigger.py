"""Part-present detection by frame difference, for a station without a PLC trigger.

:class:`MotionTrigger` is fed every frame of a camera watching the station. It compares
each frame with the empty scene (the background) and with the frame before:

- **armed** (``EMPTY``): the scene matches the background; the background slowly follows
  it (``alpha``), so lighting that drifts over a shift does not look like a part;
- a part **enters** when at least ``min_area`` pixels differ from the background by more
  than ``threshold`` grey levels;
- it **fires once** when the part has settled: ``settle_frames`` frames in a row with
  fewer than ``min_area`` pixels changed from the frame before (a part still moving is
  blurred or cut off; the image to inspect is the one after it stops);
- it **re-arms** only when the scene is empty again: fewer than ``release_ratio *
  min_area`` pixels differ from the background, for ``settle_frames`` frames in a row.
  The gap between the enter and leave levels (hysteresis) and the frame count keep a
  part that flickers, is partly occluded by a gripper or is nudged from triggering twice.

A part that enters and leaves without ever settling fires nothing and is counted in
:attr:`MotionTrigger.passed_unsettled` (for the daemon to report). The bus trigger
(``LineBus.on_trigger``, carrying the part id) is the other way to trigger a station.

Torch-free, numpy + OpenCV.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import cv2
import numpy as np

from inspection.capture.base import CaptureError
from inspection.errors import UserError
from inspection.types import Frame

__all__ = ["MotionTrigger", "TriggerState", "TriggerStats"]


class TriggerState(enum.StrEnum):
    """Where the station's scene stands."""

    LEARNING = "learning"  # no background yet: the next frame becomes it
    EMPTY = "empty"  # armed
    ENTERING = "entering"  # something is there, not yet settled
    PRESENT = "present"  # fired; waiting for the scene to be empty again


@dataclass(frozen=True)
class TriggerStats:
    """What the last frame measured, in pixels (at the frame's resolution).

    Attributes
    ----------
    foreground : int
        Pixels differing from the background by more than ``threshold``.
    motion : int
        Pixels differing from the previous frame by more than ``threshold``.
    """

    foreground: int = 0
    motion: int = 0


class MotionTrigger:
    """Fires once per part that enters the scene and settles.

    Parameters
    ----------
    threshold : float
        Grey-level difference (0-255) that counts a pixel as changed; above the
        camera's noise, below the part's contrast with the empty station.
    min_area : int
        Changed pixels that make a part (and, frame to frame, make motion).
    settle_frames : int
        Consecutive still frames before firing, and consecutive empty frames before
        re-arming.
    release_ratio : float
        The scene is empty again below ``release_ratio * min_area`` changed pixels.
    alpha : float
        How fast the background follows an empty scene (per frame, 0-1).
    blur : int
        Gaussian kernel (odd pixels; ``0``: none) that evens out sensor noise.
    background : np.ndarray | None
        The empty station; ``None``: the first frame fed (start with the station empty).
    """

    def __init__(
        self,
        threshold: float = 25.0,
        min_area: int = 500,
        settle_frames: int = 3,
        *,
        release_ratio: float = 0.5,
        alpha: float = 0.05,
        blur: int = 5,
        background: np.ndarray | None = None,
    ):
        if threshold <= 0 or min_area < 1 or settle_frames < 1:
            raise UserError("threshold > 0, min_area >= 1 and settle_frames >= 1 are required")
        if not 0 < release_ratio <= 1 or not 0 <= alpha <= 1:
            raise UserError("release_ratio must be in (0, 1] and alpha in [0, 1]")
        if blur and blur % 2 == 0:
            raise UserError(f"blur must be odd (or 0), not {blur}")
        self.threshold, self.min_area, self.settle_frames = threshold, min_area, settle_frames
        self.release_ratio, self.alpha, self.blur = release_ratio, alpha, blur
        self.fired = 0
        self.passed_unsettled = 0
        self.reset(background)

    @property
    def state(self) -> TriggerState:
        return self._state

    @property
    def armed(self) -> bool:
        """The next part that settles will fire."""
        return self._state in (TriggerState.EMPTY, TriggerState.ENTERING)

    @property
    def stats(self) -> TriggerStats:
        """The last frame's measurements (to tune ``threshold`` and ``min_area``)."""
        return self._stats

    def reset(self, background: np.ndarray | None = None) -> None:
        """Forget the scene: ``background``, or the next frame, becomes the empty station."""
        self._background = None if background is None else self._grey(background)
        self._previous: np.ndarray | None = None
        self._state = TriggerState.LEARNING if self._background is None else TriggerState.EMPTY
        self._still = self._empty = 0
        self._stats = TriggerStats()

    def update(self, frame: Frame | np.ndarray) -> bool:
        """Feed the next frame; ``True`` exactly once per part, on the frame it settled.

        Raises
        ------
        CaptureError
            When the frame's size differs from the background's (a camera reconfigured:
            :meth:`reset` with the station empty).
        """
        grey = self._grey(frame.image if isinstance(frame, Frame) else frame)
        if self._background is None:
            self._background, self._previous = grey.copy(), grey  # followed in place
            self._state = TriggerState.EMPTY
            return False
        if grey.shape != self._background.shape:
            raise CaptureError(
                f"frame size {grey.shape[::-1]} differs from the trigger's background "
                f"{self._background.shape[::-1]}: reset the trigger with the station empty"
            )
        previous = grey if self._previous is None else self._previous
        self._stats = TriggerStats(
            foreground=self._changed(grey, self._background),
            motion=self._changed(grey, previous),
        )
        self._previous = grey
        return self._step(grey)

    # ------------------------------------------------------------------ internals

    def _step(self, grey: np.ndarray) -> bool:
        present = self._stats.foreground >= self.min_area
        gone = self._stats.foreground < self.release_ratio * self.min_area
        still = self._stats.motion < self.min_area
        self._empty = self._empty + 1 if gone else 0
        if self._state is TriggerState.EMPTY:
            if present:
                self._state, self._still = TriggerState.ENTERING, 0
            elif still:
                self._follow(grey)
        if self._state is TriggerState.ENTERING:
            if self._empty >= self.settle_frames:  # it left before it settled
                self.passed_unsettled += 1
                self._state = TriggerState.EMPTY
                return False
            self._still = self._still + 1 if still and not gone else 0
            if self._still >= self.settle_frames:
                self._state = TriggerState.PRESENT
                self.fired += 1
                return True
            return False
        if self._state is TriggerState.PRESENT and self._empty >= self.settle_frames:
            self._state = TriggerState.EMPTY  # re-armed
        return False

    def _follow(self, grey: np.ndarray) -> None:
        """Let the background drift with an empty, still scene (slow light changes)."""
        assert self._background is not None
        cv2.accumulateWeighted(grey, self._background, self.alpha)

    def _changed(self, a: np.ndarray, b: np.ndarray) -> int:
        return int(np.count_nonzero(cv2.absdiff(a, b) > self.threshold))

    def _grey(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.ndim == 3:
            code = cv2.COLOR_RGBA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY
            image = cv2.cvtColor(image, code)
        elif image.ndim != 2:
            raise CaptureError(f"not an image: an array of shape {image.shape}")
        grey = image.astype(np.float32)
        if image.dtype == np.uint16:
            grey /= 257.0  # threshold is in 8-bit grey levels
        if self.blur:
            grey = cv2.GaussianBlur(grey, (self.blur, self.blur), 0)
        return grey
