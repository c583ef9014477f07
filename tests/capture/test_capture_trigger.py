"""MotionTrigger on synthetic frame sequences: one fire per part, hysteresis, no drift."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.capture import CaptureError
from inspection.capture.trigger import MotionTrigger, TriggerState
from inspection.errors import UserError
from inspection.types import Frame

H, W = 60, 80
MIN_AREA = 200  # a 20 x 20 part is 400 px


class Scene:
    """A grey conveyor with sensor noise; parts are bright squares."""

    def __init__(self, seed: int = 0, level: float = 60.0):
        self.rng = np.random.default_rng(seed)
        self.level = level

    def frame(self, parts: tuple[tuple[int, int, int], ...] = ()) -> np.ndarray:
        """RGB uint8; each part ``(x, y, side)``, cut off at the frame's edge."""
        image = self.level + self.rng.normal(0, 3, (H, W))
        for x, y, side in parts:
            image[max(y, 0) : max(y + side, 0), max(x, 0) : max(x + side, 0)] = 200
        grey = np.clip(image, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)


def feed(trigger: MotionTrigger, frames) -> list[int]:
    """Indices of the frames that fired."""
    return [i for i, f in enumerate(frames) if trigger.update(f)]


def part_passes(scene: Scene, still_frames: int, x_stop: int = 30) -> list[np.ndarray]:
    """A part slides in from the left, stops for ``still_frames``, slides out right."""
    frames = [scene.frame() for _ in range(5)]
    frames += [scene.frame(((x, 20, 20),)) for x in range(-15, x_stop, 6)]  # moving in
    frames += [scene.frame(((x_stop, 20, 20),)) for _ in range(still_frames)]
    frames += [scene.frame(((x, 20, 20),)) for x in range(x_stop + 6, W + 1, 6)]  # out
    frames += [scene.frame() for _ in range(6)]
    return frames


def test_fires_once_per_part_after_it_settles_and_rearms_when_empty():
    scene, trigger = Scene(), MotionTrigger(threshold=25, min_area=MIN_AREA, settle_frames=3)
    first = part_passes(scene, still_frames=12)
    fired = feed(trigger, first)
    stop = 5 + len(range(-15, 30, 6))  # index of the first frame where the part stands still
    # The stopped part's first frame still differs from the last moving one; three still
    # frames in a row after it settle it.
    assert fired == [stop + 3]
    assert trigger.state is TriggerState.EMPTY and trigger.armed  # re-armed at the end
    assert feed(trigger, part_passes(scene, still_frames=12)) == [stop + 3]  # the next part
    assert trigger.fired == 2 and trigger.passed_unsettled == 0


def test_a_part_that_flickers_or_is_occluded_does_not_trigger_twice():
    scene, trigger = Scene(1), MotionTrigger(threshold=25, min_area=MIN_AREA, settle_frames=3)
    frames = [scene.frame() for _ in range(3)] + [scene.frame(((30, 20, 20),))] * 5
    assert len(feed(trigger, frames)) == 1
    # A gripper hides part of it for a while (the area drops to ~140 px: under min_area,
    # above the release level of 100), then lets go: still the same part.
    occluded = []
    for _ in range(8):
        image = scene.frame(((30, 20, 13),))
        image[20:33, 38:50] = 60  # the gripper, background-coloured
        occluded.append(image)
    held = occluded + [scene.frame(((30, 20, 20),)) for _ in range(8)]
    assert feed(trigger, held[:1]) == []
    assert MIN_AREA / 2 < trigger.stats.foreground < MIN_AREA  # the case the test is about
    assert feed(trigger, held[1:]) == []
    # Also flickering every other frame:
    flicker = [occluded[0] if i % 2 else scene.frame(((30, 20, 20),)) for i in range(10)]
    assert feed(trigger, flicker) == []
    # The part vanishes for two frames only (fewer than settle_frames): no re-arm.
    blink = [scene.frame(), scene.frame()] + [scene.frame(((30, 20, 20),))] * 5
    assert feed(trigger, blink) == []
    assert trigger.state is TriggerState.PRESENT and trigger.fired == 1


def test_a_part_that_never_stops_fires_nothing_and_is_counted():
    scene, trigger = Scene(2), MotionTrigger(threshold=25, min_area=MIN_AREA, settle_frames=3)
    assert feed(trigger, part_passes(scene, still_frames=0)) == []
    assert trigger.passed_unsettled == 1 and trigger.state is TriggerState.EMPTY


def test_noise_small_things_and_slow_light_drift_do_not_trigger():
    scene, trigger = Scene(3), MotionTrigger(threshold=25, min_area=MIN_AREA, settle_frames=3)
    frames = [scene.frame() for _ in range(10)]
    frames += [scene.frame(((10, 10, 8),))] * 10  # a screw on the belt: 64 px < min_area
    for _ in range(150):  # the hall lights up by 60 grey levels over a shift
        scene.level += 0.4
        frames.append(scene.frame())
    assert feed(trigger, frames) == []
    assert trigger.stats.foreground < MIN_AREA
    # and after the drift a part still fires (the background followed the light)
    assert len(feed(trigger, [scene.frame(((30, 20, 20),))] * 5)) == 1


def test_frames_of_another_size_are_refused_until_reset():
    scene = Scene(4)
    trigger = MotionTrigger(threshold=25, min_area=MIN_AREA, background=scene.frame())
    assert trigger.state is TriggerState.EMPTY  # given a background: armed at once
    with pytest.raises(CaptureError, match="reset the trigger"):
        trigger.update(np.zeros((H + 1, W, 3), np.uint8))
    trigger.reset()
    assert trigger.state is TriggerState.LEARNING
    trigger.update(Frame(image=np.zeros((H + 1, W), np.uint8)))  # a Frame, grey, new size
    assert trigger.state is TriggerState.EMPTY


def test_uint16_frames_use_8_bit_grey_levels():
    rng = np.random.default_rng(5)
    empty = (3000 + rng.normal(0, 100, (H, W))).astype(np.uint16)
    part = empty.copy()
    part[20:40, 30:50] = 3000 + 20 * 257  # 20 grey levels brighter: under threshold 25
    trigger = MotionTrigger(threshold=25, min_area=MIN_AREA, background=empty)
    assert feed(trigger, [part] * 6) == []
    part[20:40, 30:50] = 3000 + 60 * 257  # 60 levels: a part
    assert len(feed(trigger, [part] * 6)) == 1


def test_bad_settings_are_refused():
    with pytest.raises(UserError):
        MotionTrigger(threshold=0)
    with pytest.raises(UserError, match="odd"):
        MotionTrigger(blur=4)
