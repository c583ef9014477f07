"""The part's silhouette: learned only where good frames show a part on a background, an
interior that keeps clear of the part's outline, and no silhouette for a frame unlike the
good ones (it is then judged whole)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.silhouette import (
    MARGIN,
    SilhouetteRule,
    foreground_split,
    learn_silhouette,
    outline,
    part_interior,
)

H, W = 96, 128


def part_frame(seed: int, shift: tuple[int, int] | None = None, parts: int = 1) -> np.ndarray:
    """A bright plate with two dark holes on a dark speckled belt, placed a few pixels
    differently each time (a station's frame)."""
    rng = np.random.default_rng(seed)
    frame = rng.normal(30, 8, (H, W, 3)).clip(0, 255)
    frame[rng.random((H, W)) < 0.01] = 200  # bright specks of the belt
    for k in range(parts):
        dy, dx = shift if shift is not None else rng.integers(-6, 7, 2)
        top, left = 24 + dy, 28 + dx + 70 * k
        frame[top : top + 48, left : left + (72 if parts == 1 else 40)] = rng.normal(170, 6, 3)
        for cx in (left + 8, left + (62 if parts == 1 else 30)):
            cv2.circle(frame, (int(cx), int(top + 8)), 4, (25, 25, 25), -1)
    return frame.astype(np.uint8)


def texture_frame(seed: int) -> np.ndarray:
    """A surface filling the frame (a crop of a tile, a web): smooth blotches."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(120, 30, (H // 8, W // 8))
    grey = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 5, (H, W))
    return np.repeat(grey.clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def rule() -> SilhouetteRule:
    learned = learn_silhouette(part_frame(seed) for seed in range(30))
    assert learned is not None
    return learned


def test_a_station_that_shows_parts_on_a_belt_gets_a_rule_covering_their_area(rule):
    plate_share = 48 * 72 / (H * W)
    assert rule.min_area < plate_share < rule.max_area < 1.5 * plate_share
    assert rule.good_parts == 30
    assert SilhouetteRule.from_dict(rule.to_dict()) == rule


def test_the_interior_is_the_part_less_a_margin_and_holds_its_holes(rule):
    interior = part_interior(part_frame(99, shift=(0, 0)), rule)
    assert interior is not None
    margin = round(MARGIN * min(H, W))
    assert interior[24 + 24, 28 + 36]  # the plate's middle
    assert interior[24 + 8, 28 + 8]  # a hole is the part's
    assert not interior[5, 5] and not interior[90, 120]  # the belt
    assert not interior[24 + margin - 1, 28 + 36]  # the band along the outline
    assert interior[24 + margin + 1, 28 + 36]


def test_a_frame_unlike_the_good_ones_is_judged_whole(rule):
    empty = part_frame(1)
    empty[:] = np.random.default_rng(1).normal(30, 8, empty.shape).clip(0, 255)
    off_the_edge = part_frame(2, shift=(-30, 0))  # the plate runs off the top
    for frame in (empty, off_the_edge, part_frame(3, parts=2), texture_frame(4)):
        assert part_interior(frame, rule) is None


def brick_frame(seed: int) -> np.ndarray:
    """Bricks and mortar filling the frame: two brightnesses well apart, as a part and its
    belt are, but no shape inside the frame."""
    rng = np.random.default_rng(seed)
    frame = np.full((H, W, 3), 40, np.uint8)
    for row, y in enumerate(range(-rng.integers(0, 12), H, 16)):
        for x in range(-8 * (row % 2) - rng.integers(0, 8), W, 32):
            frame[max(y, 0) : y + 13, max(x, 0) : x + 29] = rng.integers(150, 190)
    return frame


def test_a_texture_filling_the_frame_gets_no_rule():
    assert learn_silhouette(texture_frame(seed) for seed in range(30)) is None
    assert all(not outline(texture_frame(seed)).plausible for seed in range(10))
    bricks = [outline(brick_frame(seed)) for seed in range(30)]
    assert min(o.separation for o in bricks) > 0.8  # as bimodal as a part on a belt ...
    assert not any(o.plausible for o in bricks)  # ... but no part inside the frame
    assert learn_silhouette(brick_frame(seed) for seed in range(30)) is None


def test_too_few_or_too_few_plausible_good_frames_get_no_rule():
    assert learn_silhouette(part_frame(seed) for seed in range(19)) is None
    mixed = [part_frame(seed) for seed in range(25)] + [texture_frame(s) for s in range(5)]
    assert learn_silhouette(mixed) is None  # 5 of 30 frames give none: the rule cannot hold


def test_a_dark_part_on_a_bright_belt_is_outlined_alike(rule):
    inverted = learn_silhouette(255 - part_frame(seed) for seed in range(30))
    assert inverted is not None
    assert abs(inverted.min_area - rule.min_area) < 0.02
    assert abs(inverted.max_area - rule.max_area) < 0.02
    frame = part_frame(9, shift=(0, 0))
    dark, bright = part_interior(255 - frame, inverted), part_interior(frame, rule)
    assert dark is not None and (dark ^ bright).sum() < 0.01 * H * W


def test_any_image_the_line_reads_gives_the_same_interior(rule):
    frame = part_frame(7, shift=(2, -3))
    expected = part_interior(frame, rule)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    for variant in (frame.astype(np.uint16) * 257, frame.astype(np.float32) / 255, grey):
        found = part_interior(variant, rule)
        assert found is not None and (found ^ expected).sum() < 0.01 * H * W


def test_a_flat_frame_splits_into_nothing():
    _, separation = foreground_split(np.full((H, W), 77, np.uint8))
    assert separation == 0.0 and not outline(np.zeros((H, W, 3), np.uint8)).plausible


@pytest.mark.parametrize(
    "record",
    [None, "yes", [], {"min_area": 0.2}, {"min_area": "a", "max_area": 0.5, "good_parts": 3},
     {"min_area": 0.6, "max_area": 0.4, "good_parts": 30}],
)  # fmt: skip
def test_a_record_that_is_not_a_rule_reads_as_none(record):
    assert SilhouetteRule.from_dict(record) is None


def test_a_large_frame_is_outlined_as_its_smaller_copy(rule):
    frame = part_frame(8, shift=(1, 1))
    large = cv2.resize(frame, (W * 6, H * 6), interpolation=cv2.INTER_NEAREST)  # 768 px
    small, big = part_interior(frame, rule), part_interior(large, rule)
    assert big is not None and big.shape == (H * 6, W * 6)
    shrunk = cv2.resize(big.astype(np.uint8), (W, H), interpolation=cv2.INTER_AREA) > 0
    assert (shrunk ^ small).sum() < 0.02 * H * W
