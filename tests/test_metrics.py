"""Metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.metrics import (
    false_reject_rate_at_miss,
    image_auroc,
    median_abs_error,
    median_signed_error,
    per_class_scores,
    pixel_aupro,
    pixel_auroc,
    rouge_l,
    threshold_for_frr,
)


def test_image_auroc_perfect_inverted_and_undefined():
    y = [False, False, True, True]
    assert image_auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert image_auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert image_auroc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert image_auroc([True, True], [0.1, 0.2]) is None


def test_false_reject_rate_at_miss():
    good = np.linspace(0, 1, 101)  # scores 0.00 .. 1.00
    bad = np.full(100, 0.5)
    bad[0] = 0.0  # one defective part scores like the best good part
    y = [False] * 101 + [True] * 100
    s = np.concatenate([good, bad])
    # Missing 1 of 100 is allowed: the threshold is 0.5 -> good parts >= 0.5 rejected.
    assert false_reject_rate_at_miss(y, s, 0.01) == pytest.approx(51 / 101)
    # Missing none: threshold 0.0 -> every good part rejected.
    assert false_reject_rate_at_miss(y, s, 0.0) == 1.0


def _disc_mask(size=64, centre=(32, 32), r=8):
    yy, xx = np.mgrid[:size, :size]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= r * r


def test_pixel_metrics_perfect_and_random():
    masks = [_disc_mask(), np.zeros((64, 64), bool)]
    perfect = [m.astype(np.float32) for m in masks]
    assert pixel_auroc(masks, perfect) == 1.0
    assert pixel_aupro(masks, perfect) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    noise = [rng.random((64, 64)).astype(np.float32) for _ in masks]
    assert pixel_auroc(masks, noise) == pytest.approx(0.5, abs=0.05)
    # Random maps: PRO equals FPR on average, so the normalised area is about 0.15.
    assert pixel_aupro(masks, noise) == pytest.approx(0.15, abs=0.05)


def test_aupro_weights_regions_equally():
    big = _disc_mask(128, (40, 40), 30)
    small = _disc_mask(128, (110, 110), 3)
    mask = big | small
    finds_big_only = big.astype(np.float32)
    # Pixel AUROC is high because the big region dominates the pixels...
    assert pixel_auroc([mask], [finds_big_only]) > 0.97
    # ...while AUPRO counts the missed small region as half of the defects: PRO is 0.5
    # at FPR 0 and rises linearly to 1 at FPR 1 (all flagged), so the normalised area
    # up to FPR 0.3 is (0.5 + 0.65) / 2 = 0.575.
    assert pixel_aupro([mask], [finds_big_only]) == pytest.approx(0.575, abs=0.01)
    assert pixel_aupro([mask], [mask.astype(np.float32)]) == pytest.approx(1.0)


def test_pixel_metrics_skip_images_without_masks_and_resize_maps():
    masks = [None, _disc_mask(64)]
    maps = [np.zeros((10, 10)), _disc_mask(64).astype(np.float32)[::2, ::2]]  # half resolution
    assert pixel_auroc(masks, maps) > 0.99
    assert pixel_auroc([None], [np.zeros((4, 4))]) is None


def test_per_class_scores():
    truth = ["good", "scratch", "scratch", "dent", "dent", "good"]
    pred = [None, "scratch", "dent", "dent", "dent", "scratch"]
    scores = per_class_scores(truth, pred)
    assert scores["scratch"]["accuracy"] == 0.5
    assert scores["scratch"]["precision"] == 0.5
    assert scores["dent"]["accuracy"] == 1.0
    assert scores["dent"]["precision"] == pytest.approx(2 / 3)
    assert scores["dent"]["f1"] == pytest.approx(0.8)
    assert "good" not in scores


def test_median_abs_error():
    assert median_abs_error([(1.0, 1.5), (2.0, 2.0), (3.0, 2.0)]) == 0.5
    assert median_abs_error([]) is None


def test_median_signed_error_keeps_the_direction():
    assert median_signed_error([(1.5, 1.0), (2.5, 2.0), (3.0, 4.0)]) == 0.5  # over-reads
    assert median_signed_error([(1.0, 1.5), (2.0, 2.5)]) == -0.5
    assert median_signed_error([]) is None


def test_rouge_l():
    assert rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("a b", "c d") == 0.0
    assert rouge_l("", "") == 1.0 and rouge_l("x", "") == 0.0
    # Chinese is compared character by character (no spaces to split on)
    assert rouge_l("不合格：2 处", "不合格：3 处", characters=True) == pytest.approx(5 / 6)


def test_threshold_for_frr_is_the_conformal_order_statistic():
    goods = np.random.default_rng(0).permutation(np.arange(199) / 199)
    threshold = threshold_for_frr(goods, 0.05)  # passes the ceil(200 * 0.95) = 190th
    assert (goods < threshold).sum() == 190
    assert threshold_for_frr(goods, 0.0) > goods.max()
    with pytest.raises(ValueError, match="no good scores"):
        threshold_for_frr([], 0.01)


def test_threshold_for_frr_keeps_its_promise_on_new_goods():
    """Over many draws of 59 held-out goods the rate at which new goods are rejected stays
    within 5 %; a plain 95th percentile of the same goods rejects more."""
    rng = np.random.default_rng(1)
    conformal, plain = [], []
    for _ in range(400):
        held, new = rng.normal(size=59), rng.normal(size=500)
        conformal.append(np.mean(new >= threshold_for_frr(held, 0.05)))
        plain.append(np.mean(new >= np.quantile(held, 0.95)))
    assert np.mean(conformal) <= 0.05 + 0.003 < np.mean(plain)


def test_threshold_for_frr_with_too_few_goods_passes_them_all():
    goods = [0.1, 0.3, 0.2]
    assert 0.3 < threshold_for_frr(goods, 0.01) < 0.3 + 1e-12
