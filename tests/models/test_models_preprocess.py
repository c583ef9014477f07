"""Torch-free preprocessing: every kind of station image, tiling and stitching."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.io import InputError
from inspection.models.config import CLIP_MEAN, CLIP_STD
from inspection.models.preprocess import (
    PreprocessOptions,
    cut_tiles,
    plan_tiles,
    preprocess,
    resize_image,
    stitch_tiles,
    tile_positions,
)

OPTIONS = PreprocessOptions(image_size=64, mean=CLIP_MEAN, std=CLIP_STD)
RNG = np.random.default_rng(0)


def _denorm(tiles):
    mean = np.asarray(CLIP_MEAN, np.float32)[:, None, None]
    return tiles * np.asarray(CLIP_STD, np.float32)[:, None, None] + mean


def test_an_image_of_model_size_is_one_tile():
    tiles = preprocess(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8), OPTIONS)
    assert tiles.images.shape == (1, 3, 64, 64) and tiles.images.dtype == np.float32
    assert tiles.layout.boxes == ((0, 0, 64, 64),)


def test_gray_16_bit_and_rgba():
    gray16 = np.full((64, 64), 65535, np.uint16)
    x = _denorm(preprocess(gray16, OPTIONS).images[0])
    np.testing.assert_allclose(x, 1.0, atol=1e-5)  # full scale of 16 bit is 1, all channels
    rgb = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.zeros((64, 64, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(preprocess(rgba, OPTIONS).images, preprocess(rgb, OPTIONS).images)
    one = preprocess(rgb, PreprocessOptions(64, (0.5,), (0.5,), in_chans=1)).images
    assert one.shape == (1, 1, 64, 64)


def test_odd_sized_and_small_images():
    odd = preprocess(RNG.integers(0, 256, (97, 131), dtype=np.uint8), OPTIONS)
    assert odd.images.shape[1:] == (3, 64, 64) and len(odd.images) == len(odd.layout.boxes) == 6
    assert odd.layout.work_shape == (97, 131)  # native resolution
    small = preprocess(RNG.integers(0, 256, (20, 50), dtype=np.uint8), OPTIONS)
    assert small.layout.work_shape == (64, 160)  # short side up to 64, aspect kept
    assert resize_image(RNG.integers(0, 256, (20, 50), dtype=np.uint8), OPTIONS).shape == (
        3,
        64,
        64,
    )


def test_tiles_cover_the_image_with_overlap():
    assert tile_positions(64, 64, 0.25) == [0]
    positions = tile_positions(517, 64, 0.25)
    assert positions[0] == 0 and positions[-1] == 517 - 64
    assert max(np.diff(positions)) <= 48
    layout = plan_tiles((300, 517), OPTIONS)
    covered = np.zeros((300, 517), bool)
    for x0, y0, x1, y1 in layout.boxes:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_stitching_tiles_of_a_map_gives_the_map_back(reduce):
    layout = plan_tiles((300, 517), OPTIONS)
    known = RNG.standard_normal((300, 517, 3)).astype(np.float32)
    tiles = np.moveaxis(cut_tiles(known, layout), -1, 1)  # (T, C, S, S)
    np.testing.assert_allclose(
        stitch_tiles(tiles, layout, reduce), np.moveaxis(known, -1, 0), atol=1e-6
    )


def test_stitching_undoes_the_upscale_of_a_small_image():
    layout = plan_tiles((40, 50), OPTIONS)
    yy, xx = np.mgrid[0:40, 0:50]
    smooth = np.sin(xx / 9.0) + np.cos(yy / 7.0)
    tiles = cut_tiles(smooth.astype(np.float32), layout)[:, None]  # (T, 1, S, S)
    back = stitch_tiles(tiles, layout)
    assert back.shape == (1, 40, 50)
    np.testing.assert_allclose(back[0], smooth, atol=0.05)


def test_masks_are_cut_crisp():
    mask = np.zeros((97, 131), bool)
    mask[50, 10:120] = True  # a 1 px scratch
    tiles = cut_tiles(mask, plan_tiles(mask.shape, OPTIONS))
    assert tiles.dtype == bool and tiles.sum() >= mask.sum()


def test_large_images_can_be_capped():
    layout = plan_tiles((4000, 6000), PreprocessOptions(64, CLIP_MEAN, CLIP_STD, max_side=600))
    assert max(layout.work_shape) == 600 and len(layout) < 200


@pytest.mark.parametrize(
    "image",
    [np.zeros((10, 10, 2), np.uint8), np.full((64, 64), np.nan, np.float32), np.zeros((0, 5))],
)
def test_unusable_images_are_input_errors(image):
    with pytest.raises(InputError):
        preprocess(image, OPTIONS)
