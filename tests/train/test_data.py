"""Training images are resized exactly as the detector resizes the images it scores."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.datasets import Sample
from inspection.io import read_image, write_image
from inspection.models.config import CLIP_MEAN, CLIP_STD
from inspection.models.preprocess import PreprocessOptions, preprocess
from inspection.train.data import load_items


@pytest.mark.parametrize("squash", [False, True])
@pytest.mark.parametrize("shape", [(40, 52), (90, 50), (200, 70)])  # up, mixed, down
def test_a_training_item_is_the_image_the_detector_scores(tmp_path, squash, shape):
    # A model fitted on one resizing and scored on another sees a shift on every image:
    # area-enlarged (blocky) training images scored PaDiM's bilinear-enlarged test
    # images twice as anomalous.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    write_image(tmp_path / "part.png", image)
    options = PreprocessOptions(64, CLIP_MEAN, CLIP_STD, squash=squash)
    (item,) = load_items([Sample(tmp_path / "part.png")], options, "")
    trained = preprocess(item.image, options).images  # what training feeds the model
    scored = preprocess(read_image(tmp_path / "part.png"), options).images  # inference
    assert trained.shape == scored.shape
    # Equal up to the stored training image's uint8 (OpenCV's fixed-point bilinear on
    # uint8 rounds to within one grey level); the two interpolations differ by ~100.
    tolerance = 1.01 / 255 / min(CLIP_STD)
    np.testing.assert_allclose(trained, scored, atol=tolerance)
