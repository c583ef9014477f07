"""Overlay labels: legible at the size drawn, inside the picture."""

from __future__ import annotations

import numpy as np

from inspection.viz import LABEL_MIN_SCALE, label_scale, overlay


def test_label_scale_grows_with_the_picture_and_has_a_floor():
    assert label_scale((64, 64)) == label_scale((200, 120)) == LABEL_MIN_SCALE
    assert label_scale((1000, 2000)) == 4.0


def test_a_label_at_the_right_edge_stays_inside_on_a_dark_box():
    image = np.full((200, 200, 3), 200, np.uint8)
    mask = np.zeros((200, 200), bool)
    mask[100:110, 190:200] = True  # a defect at the right edge
    drawn = overlay(image, [(mask, "scratch 4.1.1", (255, 0, 0))])
    dark = (drawn.max(axis=2) < 40)[:, :180]  # the label's box, left of the defect
    rows, cols = np.nonzero(dark)
    assert cols.size and cols.min() < 150  # the text runs leftwards into the picture
    assert 8 <= rows.max() - rows.min() + 1 <= 40  # a box of legible height
    red = (drawn[:, :, 0] > 200) & (drawn[:, :, 1] < 60)
    assert red[rows.min() : rows.max() + 1, : cols.max()].any()  # the text itself
