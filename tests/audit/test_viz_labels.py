"""Overlay labels: legible at the size drawn, inside the picture."""

from __future__ import annotations

import numpy as np

from inspection.viz import LABEL_MIN_SCALE, height_picture, label_scale, overlay


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


def test_a_dashed_outline_marks_the_edge_in_pieces_and_leaves_the_inside_as_it_was():
    """A dent's footprint on the height map, drawn beside the region the maps found: its
    edge dashed in the region's colour, its inside not tinted."""
    image = np.full((120, 120, 3), 100, np.uint8)
    footprint = np.zeros((120, 120), bool)
    footprint[30:90, 30:90] = True
    drawn = overlay(image, [], dashed=[(footprint, (255, 0, 0))])
    red = (drawn[:, :, 0] > 150) & (drawn[:, :, 1] < 90)
    edge = red[28:32, 30:90].any(axis=0)  # along the top edge
    assert 0.3 < edge.mean() < 0.8  # dashes, with gaps between them
    assert np.array_equal(drawn[40:80, 40:80], image[40:80, 40:80])
    assert np.array_equal(drawn[:20], image[:20])


def test_a_height_map_in_false_colour_shows_the_pit_blue_and_what_was_not_read_grey():
    rng = np.random.default_rng(0)
    height = rng.normal(0, 0.005, (120, 120)).astype(np.float32)
    height[50:60, 50:60] = -0.2  # a pit
    height[:15, 105:] = np.nan  # a hole the profiler saw nothing in
    pit = np.zeros((120, 120), bool)
    pit[50:60, 50:60] = True
    drawn = height_picture(height, [(pit, (255, 0, 0))])
    import cv2

    lowest = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]
    assert (drawn[53:57, 53:57] == lowest).all()  # the deepest: the scale's low end
    assert np.abs(drawn[20:40, 20:40].astype(int) - lowest).max() > 100  # the face: not
    assert (drawn[2:12, 108:118] == 128).all()  # nothing read: grey
    assert ((drawn[:, :, 0] > 200) & (drawn[:, :, 1] < 60))[48:62, 48:62].any()  # outlined
    assert (drawn[100:, 20:].max(axis=2) < 40).any()  # the range's label, bottom left
    blind = height_picture(np.full((40, 40), np.nan, np.float32))
    assert blind.shape == (40, 40, 3) and (blind[:5, :] == 128).all()


def test_the_false_colour_spans_the_parts_face_not_the_belt_below_it():
    """A part standing 3 mm above its belt, read beside it and through a hole: the scale
    spans the face (a 0.1 mm pit fills it) and the belt is clipped dark, not spread over
    it (the pit would be the face's colour)."""
    import cv2

    rng = np.random.default_rng(1)
    height = rng.normal(0, 0.005, (120, 120)).astype(np.float32)
    height[50:60, 50:60] = -0.1  # a pit
    height[:, :12] -= 3.0  # the belt beside the part
    height[90:100, 90:100] -= 3.0  # a hole the profiler reads the belt in
    drawn = height_picture(height)
    lowest = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]
    assert (drawn[53:57, 53:57] == lowest).all()  # the pit: the scale's low end
    assert (drawn[20:80, 2:10] == lowest).all() and (drawn[93:97, 93:97] == lowest).all()
    assert np.abs(drawn[20:40, 20:40].astype(int) - lowest).max() > 100  # the face: not
