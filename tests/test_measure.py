"""Measurement on masks of known size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspection.measure import (
    COLOUR_HOLE_PX,
    Component,
    colour_along_px,
    connected_components,
    defects_from_mask,
    delta_e,
    fragment_groups,
    gauge_on_image,
    join_fragments,
    measure_region,
    one_signed_share,
    region_delta_e,
)


def test_rectangle_of_known_size():
    mask = np.zeros((100, 100), bool)
    mask[20:24, 10:60] = True  # 50 x 4 px
    comp = measure_region(mask, mm_per_px=0.1)
    assert comp.length_mm == pytest.approx(5.0, rel=1e-6)
    assert comp.width_mm == pytest.approx(0.4, rel=1e-6)
    assert comp.area_mm2 == pytest.approx(2.0, rel=1e-6)
    assert comp.bbox.as_list() == [10, 20, 60, 24]


@pytest.mark.parametrize("angle", [0, 17, 45, 80])
def test_rotated_line_length(angle):
    mask = np.zeros((200, 200), np.uint8)
    length = 120
    dx, dy = np.cos(np.radians(angle)) * length / 2, np.sin(np.radians(angle)) * length / 2
    cv2.line(mask, (int(100 - dx), int(100 - dy)), (int(100 + dx), int(100 + dy)), 1, 3)
    comp = measure_region(mask > 0, mm_per_px=0.05)
    assert comp.length_mm == pytest.approx(length * 0.05, rel=0.05)


def test_disc_area():
    mask = np.zeros((200, 200), np.uint8)
    cv2.circle(mask, (100, 100), 40, 1, -1)
    comp = measure_region(mask > 0, mm_per_px=0.2)
    assert comp.area_mm2 == pytest.approx(np.pi * 8.0**2, rel=0.02)
    assert comp.length_mm == pytest.approx(16.0, rel=0.03)


def test_a_blob_is_as_wide_as_a_caliper_reads_it_and_a_bowed_stroke_as_its_stroke():
    """A standard's ``width_mm`` of a dent or a speck is its breadth across its length,
    which the mean width (area / length) reads a fifth short on a disc; a scratch's is
    its stroke's, which the rectangle around a bowed one reads as wide as its bow."""
    yy, xx = np.mgrid[:100, :100]
    disc = (yy - 50) ** 2 + (xx - 50) ** 2 <= 20**2  # 41 px across
    comp = measure_region(disc, mm_per_px=0.1)
    for name in ("dent", "contamination", "color_deviation", "missing_feature"):
        assert comp.width_mm_of(name) == pytest.approx(4.1, abs=0.1)
        assert comp.attributes(name)["width_mm"] == pytest.approx(4.1, abs=0.1)
    assert comp.width_mm_of("scratch") == pytest.approx(comp.area_mm2 / comp.length_mm)
    assert comp.width_mm_of("scratch") < 0.8 * comp.width_mm_of("dent")  # about pi/4
    ring = np.abs(np.hypot(yy - 90, xx - 50) - 60) <= 1.5  # a bowed stroke, 3 px wide
    bow = measure_region(ring & (yy < 60), mm_per_px=0.1)
    assert bow.width_mm_of("scratch") == pytest.approx(0.3, abs=0.08)
    assert bow.width_mm_of("crack") == bow.width_mm_of("scratch") < bow.width_mm_of("dent") / 4


def test_components_split_and_drop_specks():
    mask = np.zeros((50, 50), bool)
    mask[5:10, 5:10] = True
    mask[30:40, 30:35] = True
    mask[45, 45] = True  # one-pixel speck
    comps = connected_components(mask, 1.0, min_area_px=4)
    assert sorted(c.area_px for c in comps) == [25, 50]


def _broken_line(gap_px: int) -> np.ndarray:
    """A 2 px thick line 60 px long with a hole of ``gap_px`` pixels in its middle."""
    mask = np.zeros((40, 100), bool)
    mask[20:22, 10:70] = True
    mask[20:22, 40 - gap_px // 2 : 40 - gap_px // 2 + gap_px] = False
    return mask


@pytest.mark.parametrize("gap_px", [1, 5, 7])
def test_pieces_of_a_broken_line_within_the_gap_are_measured_as_one(gap_px):
    pieces = connected_components(_broken_line(gap_px), 0.1)
    assert len(pieces) == 2
    (joined,) = join_fragments(pieces, gap_px=8)
    assert joined.length_mm == pytest.approx(6.0)  # the whole line, the hole spanned
    assert joined.area_px == sum(p.area_px for p in pieces)  # the hole not counted
    assert joined.bbox.as_list() == [10, 20, 70, 22]
    assert (joined.mask == _broken_line(gap_px)).all()


def test_pieces_farther_apart_than_the_gap_stay_apart():
    pieces = connected_components(_broken_line(12), 0.1)
    assert [c.area_px for c in join_fragments(pieces, gap_px=8)] == [c.area_px for c in pieces]
    assert join_fragments(pieces, gap_px=0) == pieces


def test_joining_is_transitive_and_keeps_the_order_of_first_members():
    mask = np.zeros((40, 100), bool)
    mask[5:7, 5:25] = True  # a: alone, far away
    for x0 in (30, 50, 70):  # b, c, d: a chain 6 px apart, b never near d
        mask[30:32, x0 : x0 + 14] = True
    pieces = connected_components(mask, 1.0)
    joined = join_fragments(pieces, gap_px=8)
    assert [c.area_px for c in joined] == [40, 3 * 28]
    assert joined[1].length_px == pytest.approx(54.0)
    assert fragment_groups(pieces, gap_px=8) == [[0], [1, 2, 3]]  # the groups it joins
    assert fragment_groups(pieces, gap_px=0) == [[0], [1], [2], [3]]


def _surface_with_stroke(rng, noise: float = 4.0, contrast: float = 60.0):
    """A noisy grey surface, a stroke 3 px wide and 50 px long drawn on it, and a map
    region around the stroke as a coarse map cuts it: 2 px wider each side, 2 px short
    at each end."""
    image = rng.normal(120, noise, (60, 100, 3))
    stroke = np.zeros((60, 100), bool)
    stroke[29:32, 20:70] = True
    image[stroke] += contrast
    region = np.zeros_like(stroke)
    region[27:34, 22:68] = True
    return np.clip(image, 0, 255).astype(np.uint8), stroke, region


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stroke_gauge_reads_the_stroke_on_the_image_not_the_maps_blur(seed):
    image, stroke, region = _surface_with_stroke(np.random.default_rng(seed))
    on_map = measure_region(region, 0.1)
    gauged = gauge_on_image(image, on_map)
    assert (on_map.length_mm, on_map.width_mm) == pytest.approx((4.6, 0.7))
    assert gauged.length_mm == pytest.approx(5.0, abs=0.1)
    assert gauged.width_mm == pytest.approx(0.3, abs=0.05)
    assert (gauged.mask & ~stroke).sum() <= 2  # the surface's noise hardly joins it
    assert gauged.mm_per_px == 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_piece_of_a_broken_stroke_too_faint_to_gauge_keeps_the_maps_cut(seed):
    """A stroke the map broke in two, joined into one region: where its second piece is
    too faint for the gauge on the surface's noise, the map's cut of that piece stands,
    and the stroke reads from one end to the other, not as its clear piece alone."""
    rng = np.random.default_rng(seed)
    image, _, region = _surface_with_stroke(rng)
    image[29:32, 45:70] = np.clip(rng.normal(120, 4.0, (3, 25, 3)), 0, 255)  # all but gone
    region[:, 40:50] = False  # the map's gap between the pieces
    gauged = gauge_on_image(image, measure_region(region, 0.1))
    assert gauged.length_mm == pytest.approx(4.8, abs=0.2)  # the clear piece gauged from
    # its true end (x 20), the faint one as the map cut it (to x 67)
    clear = gauge_on_image(image, measure_region(region & (np.arange(100) < 40), 0.1))
    assert clear.length_mm < 2.6  # without the faint piece: the clear one, 3 px past its cut


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_dark_speck_beside_a_light_streak_is_gauged_without_the_streak(seed):
    """Held-out bracket 000240: a speck 3 px across at the end of a brushed surface's
    light streak, the map's region over both. The gauge's contrast has no sign, and it
    read the streak as the mark's too: a 10 px "scratch" of a 3 px speck."""
    rng = np.random.default_rng(seed)
    image = rng.normal(170, 3.0, (60, 100, 3))
    image[30:32, 30:46] += 15  # the streak, lighter than the surface
    image[30:33, 46:49] -= 35  # the speck, darker
    image = np.clip(image, 0, 255).astype(np.uint8)
    region = np.zeros((60, 100), bool)
    region[29:34, 40:50] = True
    gauged = gauge_on_image(image, measure_region(region, 0.1))
    assert gauged.bbox.x0 >= 45 and gauged.length_px <= 4


def _faint_line(rng, pieces, row: int = 30):
    """A grey surface with the surface's noise (4 grey levels) and a line 1 px wide along
    ``row``, each ``(x0, x1, contrast)`` of ``pieces`` one stretch of it."""
    image = rng.normal(120, 4.0, (60, 120, 3))
    for x0, x1, contrast in pieces:
        image[row, x0:x1] += contrast
    return np.clip(image, 0, 255).astype(np.uint8)


def _seen_in_part(x0: int, x1: int, row: int = 30):
    """The map's region over a stretch of the line: 3 px wider than it each side."""
    region = np.zeros((60, 120), bool)
    region[row - 3 : row + 4, x0:x1] = True
    return measure_region(region, 0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_stroke_the_map_saw_in_part_is_followed_to_its_ends(seed):
    """A faint scratch (5 deviations of the surface's noise) the map lit over a sixth of
    its length: gauged, then followed along the image, it reads its whole 6 mm, and the
    surface's noise beyond its ends does not carry it on."""
    from inspection.measure import follow_stroke

    image = _faint_line(np.random.default_rng(seed), [(20, 80, -20.0)])
    gauged = gauge_on_image(image, _seen_in_part(45, 55))
    assert gauged.length_mm < 1.8  # the gauge alone: the lit stretch and its search
    followed = follow_stroke(image, gauged)
    assert followed.length_mm == pytest.approx(6.0, abs=0.3)
    assert followed.bbox.x0 >= 18 and followed.bbox.x1 <= 82


def test_the_follower_reads_a_grey_or_16_bit_frame_as_its_8_bit_colour_one():
    """A monochrome camera's frame, 8 or 16 bits: the stroke is followed as on the RGB
    frame it was made from."""
    from inspection.measure import follow_stroke

    image = _faint_line(np.random.default_rng(4), [(20, 80, -20.0)])
    gauged = gauge_on_image(image, _seen_in_part(45, 55))
    colour = follow_stroke(image, gauged)
    grey = image[..., 0]
    for frame in (grey, grey.astype(np.uint16) * 257, grey[..., None]):
        followed = follow_stroke(frame, gauged)
        assert followed.length_mm == pytest.approx(6.0, abs=0.3)
        assert followed.length_mm == pytest.approx(colour.length_mm, abs=0.3)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_follower_stops_at_a_gap_or_a_mark_of_the_other_side(seed):
    """Past more than FOLLOW_GAP_PX steps with nothing, or where the line turns from
    darker than the surface to lighter (another mark, not this stroke), the stroke ends;
    a stroke too short to have a direction is left as it was."""
    from inspection.measure import follow_stroke

    rng = np.random.default_rng(seed)
    gapped = _faint_line(rng, [(20, 45, -20.0), (52, 80, -20.0)])
    followed = follow_stroke(gapped, gauge_on_image(gapped, _seen_in_part(30, 40)))
    assert followed.bbox.x1 <= 46 and followed.bbox.x0 <= 21
    turned = _faint_line(rng, [(20, 45, -20.0), (45, 80, 20.0)])
    followed = follow_stroke(turned, gauge_on_image(turned, _seen_in_part(30, 40)))
    assert followed.bbox.x1 <= 46
    speck = np.zeros((60, 120), bool)
    speck[29:32, 40:43] = True  # 3 x 3 px on the line
    speck = measure_region(speck, 0.1)
    assert follow_stroke(gapped, speck) is speck


def test_stroke_gauge_keeps_the_stroke_dark_or_light_and_in_grey_or_16_bit():
    image, _, region = _surface_with_stroke(np.random.default_rng(3), contrast=-60.0)
    on_map = measure_region(region, 0.1)
    grey16 = image[..., 0].astype(np.uint16) * 257
    for variant in (image, image[..., 0], image[..., :1], grey16):
        assert gauge_on_image(variant, on_map).length_mm == pytest.approx(5.0, abs=0.1)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_stroke_lost_in_the_surface_noise_is_left_to_the_map(seed):
    rng = np.random.default_rng(seed)
    image, _, region = _surface_with_stroke(rng, noise=8.0, contrast=0.0)
    assert gauge_on_image(image, measure_region(region, 0.1)) is None
    flat = np.full((60, 100, 3), 120, np.uint8)
    assert gauge_on_image(flat, measure_region(region, 0.1)) is None


def _faded_speck(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Component]:
    """A round speck of radius 5 px whose darkness falls off linearly over its outer 3 px
    (oil thinning towards its rim), on a noisy surface, and the map's wider region."""
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(yy - 30, xx - 30)
    darkness = 60.0 * np.clip((5.0 - r) / 3.0, 0, 1)  # full inside 2 px, 0 at 5 px
    image = np.clip(rng.normal(150, 2.0, (60, 60, 3)) - darkness[..., None], 0, 255)
    return image.astype(np.uint8), r < 5.0, measure_region(r <= 7.0, 0.1)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_lower_edge_keeps_more_of_a_faded_specks_rim(seed):
    image, speck, on_map = _faded_speck(np.random.default_rng(seed))
    half = gauge_on_image(image, on_map)  # half maximum: cut 3.5 px out
    third = gauge_on_image(image, on_map, edge=1 / 3)  # a third: 4 px out
    true_area = speck.sum() * 0.01
    assert half.area_mm2 < third.area_mm2 <= true_area < on_map.area_mm2
    assert third.area_mm2 == pytest.approx(0.49, abs=0.06)  # r <= 4 px: 49 px


def test_one_signed_share_tells_a_speck_from_a_dents_shading():
    rng = np.random.default_rng(7)
    image, _, on_map = _faded_speck(rng)
    assert one_signed_share(image, on_map) > 0.9
    assert one_signed_share(255 - image, on_map) > 0.9  # a light speck on a dark surface
    dent = rng.normal(150, 2.0, (60, 60)).astype(np.float32)
    dent[24:36, 24:30] += 40  # the slope facing the light
    dent[24:36, 30:36] -= 40  # the one in shadow
    region = np.zeros((60, 60), bool)
    region[22:38, 22:38] = True
    dent_image = np.clip(dent, 0, 255).astype(np.uint8)
    assert one_signed_share(dent_image, measure_region(region, 0.1)) < 0.2
    flat = np.full((60, 60), 150, np.uint8)
    assert one_signed_share(flat, measure_region(region, 0.1)) == 0.0  # nothing stands out


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        measure_region(np.zeros((5, 5), bool), 1.0)


def test_delta_e_reference_values():
    # CIEDE2000 is zero for equal colours and symmetric.
    assert delta_e(np.array([10, 200, 30], np.uint8), np.array([10, 200, 30], np.uint8)) == 0
    a, b = np.array([0.5, 0.4, 0.3]), np.array([0.52, 0.4, 0.28])
    assert delta_e(a, b) == pytest.approx(delta_e(b, a))
    # Sharma et al. (2005) test pair 1, given in Lab: check through skimage directly.
    from skimage.color import deltaE_ciede2000

    assert deltaE_ciede2000([50, 2.6772, -79.7751], [50, 0, -82.7485]) == pytest.approx(
        2.0425, abs=1e-4
    )


def test_region_delta_e_ignores_lighting_gradient_with_surround():
    ref = np.array([150, 150, 155])
    ramp = np.linspace(0.75, 1.2, 120)[None, :, None]
    image = np.clip(ref * ramp * np.ones((120, 120, 1)), 0, 255).astype(np.uint8)
    mask = np.zeros((120, 120), bool)
    mask[50:70, 95:110] = True
    assert region_delta_e(image, mask, ref) > 5  # the gradient alone looks like a defect
    assert region_delta_e(image, mask, ref, surround_px=6) < 0.6
    shifted = image.copy()
    shifted[mask] = np.clip(shifted[mask].astype(int) + np.array([14, -4, -10]), 0, 255)
    assert region_delta_e(shifted, mask, ref, surround_px=6) > 4


def test_a_patch_colour_is_read_on_the_core_of_a_region_wider_than_it():
    """A map's region 2 px past a 12 x 12 px patch on every side takes in good surface
    (44 % of it): read on its core, the patch's own ΔE; the ring is still good surface."""
    ref = np.array([120, 130, 140])
    image = np.tile(ref.astype(np.uint8), (80, 80, 1))
    image[30:42, 30:42] = [150, 120, 110]
    patch = np.zeros((80, 80), bool)
    patch[30:42, 30:42] = True
    region = np.zeros_like(patch)
    region[28:44, 28:44] = True
    true = region_delta_e(image, patch, ref, surround_px=6)
    assert region_delta_e(image, region, ref, surround_px=6) < 0.8 * true  # diluted
    assert region_delta_e(image, region, ref, surround_px=6, core_px=2) == pytest.approx(
        true, abs=1e-3
    )
    speck = np.zeros_like(patch)
    speck[35:37, 35:37] = True  # no core of 9 pixels: read whole
    assert region_delta_e(image, speck, ref, core_px=2) == region_delta_e(image, speck, ref)


def test_defects_from_mask_attributes():
    image = np.full((64, 64, 3), 128, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:12, 10:40] = True
    (defect,) = defects_from_mask(mask, "scratch", 0.1, image, np.array([128, 128, 128]))
    assert defect.defect_class == "scratch"
    assert defect.attributes["length_mm"] == pytest.approx(3.0)
    assert defect.attributes["delta_e"] == pytest.approx(0.0, abs=1e-6)
    assert defect.mask.sum() == 60


def _blobs(seed: int, shape=(180, 260), n=12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(n):
        centre = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        axes = (int(rng.integers(1, 25)), int(rng.integers(1, 6)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_components_read_through_their_box_equal_a_whole_frame_reading(seed):
    """Each component is measured from its own box; the figures are those of reading
    the whole frame, pixel for pixel (regions touching the frame's edges included)."""
    mask = _blobs(seed)
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    comps = connected_components(mask, mm_per_px=0.1)
    assert len(comps) == n - 1
    for comp, i in zip(comps, range(1, n), strict=True):
        full = labels == i
        ys, xs = np.nonzero(full)
        (_, _), (w, h), _ = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
        np.testing.assert_array_equal(comp.mask, full)
        assert comp.bbox.as_list() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert comp.centroid == (xs.mean(), ys.mean()) and comp.area_px == xs.size
        assert comp.length_px == max(w, h) + 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_region_delta_e_reads_nothing_beyond_its_window(seed):
    """A region's colour is read from its box grown by the ring and half the light's
    segment: the rest of the frame may be anything."""
    rng = np.random.default_rng(seed)
    image = (rng.random((180, 260, 3)) * 255).astype(np.uint8)
    reference = np.array([120, 130, 140])
    pad = 9 + colour_along_px(image.shape) // 2 + COLOUR_HOLE_PX
    for comp in connected_components(_blobs(seed), mm_per_px=1.0):
        far = np.ones(image.shape[:2], bool)
        far[
            max(0, comp.bbox.y0 - pad) : comp.bbox.y1 + pad,
            max(0, comp.bbox.x0 - pad) : comp.bbox.x1 + pad,
        ] = False
        other = image.copy()
        other[far] = 255 - other[far]
        got = region_delta_e(image, comp.mask, reference, surround_px=9)
        assert np.isfinite(got)
        assert region_delta_e(other, comp.mask, reference, surround_px=9) == got


REFERENCE = np.array([88, 106, 124])  # a painted panel's blue-grey


def _glossy_face(size: int = 256, band_across: float = 0.0) -> np.ndarray:
    """A painted face under a softbox: the paint's colour with a straight, soft-edged
    reflection band across it (white added, as a gloss mirrors the light) and a gentle
    lighting gradient; float RGB in 0..1."""
    yy, xx = np.mgrid[:size, :size] / size
    across = (xx - yy) / np.sqrt(2) - band_across  # the band runs along x = y
    band = np.clip((0.08 - np.abs(across)) / 0.04 + 0.5, 0, 1)
    gloss = 0.1 * band * band * (3 - 2 * band)
    face = REFERENCE / 255 * (1 + 0.03 * (xx - 0.5))[..., None]
    return face + gloss[..., None] * (1 - face)


def _with_patch(face: np.ndarray, patch: np.ndarray, shift_lab: np.ndarray) -> np.ndarray:
    """``face`` with its colour moved by ``shift_lab`` (CIELAB) under ``patch``, pixel by
    pixel, as a tint changes the paint under the gloss."""
    from skimage.color import lab2rgb, rgb2lab

    out = face.copy()
    out[patch] = np.clip(lab2rgb(rgb2lab(face[patch][:, None]) + shift_lab)[:, 0], 0, 1)
    return out


def _patch_astride_the_bands_edge(size: int = 256, off: float = 0.1) -> np.ndarray:
    """An ellipse whose centre lies ``off`` (a share of the frame) across the band."""
    mask = np.zeros((size, size), np.uint8)
    step = off * size / np.sqrt(2)
    centre = (round(0.5 * size + step), round(0.5 * size - step))
    cv2.ellipse(mask, centre, (size // 16, size // 24), 45, 0, 360, 1, -1)
    return mask > 0


def test_faint_patches_on_a_reflection_bands_edge_read_their_own_colour():
    """A ring around a patch on the band's edge averages the band with the paint beside
    it; read along the light, the surface under the patch is the surface beside it along
    the band, and the patch reads its own ΔE (a panel's limits are 1 ΔE apart)."""
    from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

    face = _glossy_face()
    lab = rgb2lab(REFERENCE[None, None] / 255)[0, 0]
    by_ring, by_light = [], []
    for off in (0.06, 0.08, 0.1, 0.12):
        patch = _patch_astride_the_bands_edge(off=off)
        ring = (cv2.dilate(patch.astype(np.uint8), np.ones((27, 27), np.uint8)) > 0) & ~patch
        for shift in ([0.0, 0.6, -1.2], [0.8, 0.0, 0.0], [0.0, -1.0, 0.0]):
            moved = lab2rgb((lab + np.array(shift))[None, None])
            truth = float(deltaE_ciede2000(lab, rgb2lab(moved)[0, 0]))
            image = np.round(_with_patch(face, patch, np.array(shift)) * 255).astype(np.uint8)
            ring_reading = image[patch].mean(0) / image[ring].mean(0) * REFERENCE / 255
            by_ring.append(abs(delta_e(np.clip(ring_reading, 0, 1), REFERENCE / 255) - truth))
            got = region_delta_e(image, patch, REFERENCE, surround_px=13, core_px=2)
            by_light.append(abs(got - truth))
    assert max(by_light) < 0.35
    assert np.mean(by_light) < 0.15
    assert np.mean(by_light) < 0.4 * np.mean(by_ring)  # the ring's reading is what fails
    good = np.round(face * 255).astype(np.uint8)
    assert region_delta_e(good, _patch_astride_the_bands_edge(), REFERENCE, 13, 2) < 0.2


def test_the_surface_along_the_light_reads_a_large_or_grey_frame_as_a_small_colour_one():
    """A 1024 px frame is read on a shrunk copy (the light's segment 81 px long there),
    and a grey or 16-bit frame as its 8-bit colour one: the same reading."""
    face, patch = _glossy_face(), _patch_astride_the_bands_edge()
    image = np.round(_with_patch(face, patch, np.array([-1.5, 0.0, 0.0])) * 255).astype(np.uint8)
    small = region_delta_e(image, patch, REFERENCE, surround_px=13, core_px=2)
    big_face, big_patch = _glossy_face(1024), _patch_astride_the_bands_edge(1024)
    big = np.round(_with_patch(big_face, big_patch, np.array([-1.5, 0.0, 0.0])) * 255)
    big_reading = region_delta_e(big.astype(np.uint8), big_patch, REFERENCE, 51, 8)
    assert big_reading == pytest.approx(small, abs=0.15)
    grey = image.mean(axis=2).round().astype(np.uint8)
    grey_rgb = np.repeat(grey[..., None], 3, axis=2)
    level = np.array([100, 100, 100])
    assert region_delta_e(grey, patch, level, 13, 2) == pytest.approx(
        region_delta_e(grey_rgb, patch, level, 13, 2), abs=1e-3
    )
    assert region_delta_e(grey.astype(np.uint16) * 257, patch, level, 13, 2) == pytest.approx(
        region_delta_e(grey, patch, level, 13, 2), abs=1e-3
    )


def test_a_colour_region_on_the_frames_edge_is_read():
    face = np.round(_glossy_face() * 255).astype(np.uint8)
    edge = np.zeros(face.shape[:2], bool)
    edge[:6, 100:130] = True
    assert 0 <= region_delta_e(face, edge, REFERENCE, 13, 2) < 0.5


def _pit(depth_mm: float, radius_px: int = 6, size: int = 64, noise_mm: float = 0.0):
    """A height map with a pit ``h = -depth (1 - d^2)^2`` (the synthetic line's dent) in
    its middle, the pit's disc as the mask."""
    yy, xx = np.mgrid[:size, :size]
    d2 = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2) / radius_px**2
    height = np.where(d2 <= 1, -depth_mm * (1 - d2) ** 2, 0.0).astype(np.float32)
    height += np.random.default_rng(0).normal(0, noise_mm, height.shape).astype(np.float32)
    return height, d2 <= 1


@pytest.mark.parametrize("radius_px", [3, 6, 12])
def test_a_pits_depth_is_read_off_the_height_map(radius_px):
    from inspection.measure import depth_below_surface

    height, mask = _pit(0.25, radius_px)
    assert depth_below_surface(height, mask) == pytest.approx(0.25, abs=1e-6)
    # a region the map cut wider than the pit, on a face 2 mm up, reads the same
    wide = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert depth_below_surface(height + 2.0, wide) == pytest.approx(0.25, abs=1e-6)
    # the profiler's noise can only deepen it (the lowest point), never make it shallower
    noisy, _ = _pit(0.25, radius_px, noise_mm=0.005)
    assert 0.25 - 0.005 < depth_below_surface(noisy, mask) < 0.25 + 0.03


def test_no_depth_where_the_profiler_saw_nothing():
    from inspection.measure import depth_below_surface

    height, mask = _pit(0.25)
    blind = height.copy()
    blind[mask] = np.nan
    assert depth_below_surface(blind, mask) is None
    blind = np.full_like(height, np.nan)
    blind[mask] = height[mask]  # the pit seen, the surface around it not
    assert depth_below_surface(blind, mask) is None
    assert depth_below_surface(height, np.zeros_like(mask)) is None
    bump = -height  # a mark standing proud of the face has no depth
    assert depth_below_surface(bump, mask) == 0.0


def _disc_mask(radius_px: float, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius_px**2


@pytest.mark.parametrize("radius_px", [4, 8, 12])
@pytest.mark.parametrize("region_scale", [0.5, 1.0, 1.6])
def test_a_dents_footprint_is_read_off_the_height_map_whatever_region_found_it(
    radius_px, region_scale
):
    """The anomaly map's region may cut a pit too wide or too narrow; the footprint is
    the pit's own, so its area holds within 30 % of the pit's disc either way (a bowl's
    rim, shallower than the profiler's noise, is not seen)."""
    from inspection.measure import footprint_below_surface

    height, pit = _pit(0.1, radius_px, noise_mm=0.005)
    footprint = footprint_below_surface(height, _disc_mask(radius_px * region_scale))
    assert footprint is not None and footprint.shape == pit.shape
    assert footprint.sum() == pytest.approx(pit.sum(), rel=0.3)
    assert footprint[pit].mean() > 0.75  # the pit's own pixels, not a blob beside it


def test_a_dents_footprint_on_a_tilted_face_is_the_same_as_on_a_level_one():
    """The surface is the plane through the ring, not one level: on a face tilted 0.01
    mm a pixel (10x the pit's rim depth over the window) the low side is not a pit."""
    from inspection.measure import footprint_below_surface

    height, pit = _pit(0.1, 8, noise_mm=0.005)
    level = footprint_below_surface(height, pit)
    tilted = footprint_below_surface(height + 0.01 * np.mgrid[:64, :64][1], pit)
    assert level is not None and tilted is not None
    assert np.sum(level != tilted) <= 0.05 * pit.sum()


def test_a_depression_beside_the_region_is_not_its_footprint():
    from inspection.measure import footprint_below_surface

    height, pit = _pit(0.1, 5, noise_mm=0.005)
    yy, xx = np.mgrid[:64, :64]
    other = (yy - 32) ** 2 + (xx - 10) ** 2 <= 16  # a second pit 22 px to the left
    height[other] -= 0.1
    footprint = footprint_below_surface(height, pit)
    assert footprint is not None and not footprint[other].any()


def _on_a_part(size: int = 96, belt: int = 10, thickness: float = 3.0):
    """A face (0 mm) standing ``thickness`` above its belt, which shows ``belt`` px wide
    beside it and through a hole of radius 8 px at (70, 70) the profiler reads into; and
    the face's hole and belt as a mask."""
    yy, xx = np.mgrid[:size, :size]
    hole = (yy - 70) ** 2 + (xx - 70) ** 2 <= 64
    off = hole | (xx < belt) | (yy < belt) | (xx >= size - belt) | (yy >= size - belt)
    height = np.where(off, -thickness, 0.0).astype(np.float32)
    height += np.random.default_rng(3).normal(0, 0.005, height.shape).astype(np.float32)
    return height, hole, off


def test_a_hole_or_the_belt_the_profiler_reads_into_is_no_dent_and_no_dents_surface():
    """With the scale, a wall (steeper than 45 degrees) bounds the face: a region on a
    hole or the belt has no depth or footprint (a cut's, not a dent's), and a dent beside
    the hole is measured on the face alone (its ring reaching into the hole would put the
    surface 3 mm down)."""
    from inspection.measure import depth_below_surface, footprint_below_surface

    height, hole, off = _on_a_part()
    yy, xx = np.mgrid[:96, :96]
    assert depth_below_surface(height, hole) > 2.9  # without the scale: read as a 3 mm pit
    assert footprint_below_surface(height, hole, 0.2) is None
    assert depth_below_surface(height, hole, 0.2) is None
    strip = xx < 10
    assert footprint_below_surface(height, strip, 0.2) is None
    d2 = ((yy - 70) ** 2 + (xx - 48) ** 2) / 5**2  # a pit 6 px from the hole's rim
    pit = d2 <= 1
    height += np.where(pit, -0.08 * (1 - d2) ** 2, 0).astype(np.float32)
    assert depth_below_surface(height, pit, 0.2) == pytest.approx(0.08, abs=0.02)
    footprint = footprint_below_surface(height, pit, 0.2)
    assert footprint is not None and not footprint[off].any()
    assert footprint.sum() == pytest.approx(pit.sum(), rel=0.4)


def test_no_footprint_where_the_profiler_saw_nothing_or_nothing_lies_below():
    from inspection.measure import footprint_below_surface

    height, pit = _pit(0.1, 8, noise_mm=0.005)
    blind = height.copy()
    blind[30, 30] = np.nan  # one point of the pit missed: its footprint would read short
    assert footprint_below_surface(blind, pit) is None
    flat = np.random.default_rng(1).normal(0, 0.005, height.shape).astype(np.float32)
    assert footprint_below_surface(flat, pit) is None  # noise alone
    assert footprint_below_surface(-height, pit) is None  # a mark standing proud
    assert footprint_below_surface(height, np.zeros_like(pit)) is None


def test_a_height_maps_depressions_are_its_pits_not_its_steps_or_holes():
    """A pit on a part standing 3 mm proud of its belt, with a through-hole the profiler
    reads nothing in: the pit is the one depression (the part's edge is a step, not a
    pit, and a footprint touching a missed point is none)."""
    from inspection.measure import depressions

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    height = rng.normal(0, 0.005, (256, 256)).astype(np.float32)
    assert depressions(height, 0.2) == []  # noise alone
    d2 = ((yy - 100) ** 2 + (xx - 120) ** 2) / 16**2  # 6.4 mm across, 0.06 mm deep
    pit = d2 <= 1
    height += np.where(pit, -0.06 * (1 - d2) ** 2, 0).astype(np.float32)
    belt = (xx < 30) | (xx > 226) | (yy < 30) | (yy > 226)
    height[belt] -= 3.0
    height[(yy - 200) ** 2 + (xx - 60) ** 2 <= 36] = np.nan
    (footprint,) = depressions(height, 0.2)
    assert footprint[pit].mean() > 0.6 and not footprint[~pit].any()
    # A designed pocket with walls (machined: steeper than 45 degrees) is not a dent ...
    pocket = (yy - 170) ** 2 + (xx - 170) ** 2 <= 100
    height[pocket] -= 0.5
    assert len(depressions(height, 0.2)) == 1
    # ... but a designed recess as gently dished as a dent is a depression too (hence
    # opt-in), unless the profiler's export masks it (NaN), as its own software masks a
    # region.
    height[pocket] += 0.5
    d2 = ((yy - 170) ** 2 + (xx - 170) ** 2) / 20**2  # an embossed dish, 0.5 mm deep
    dish = d2 <= 1
    height += np.where(dish, -0.5 * (1 - d2) ** 2, 0).astype(np.float32)
    assert len(depressions(height, 0.2)) == 2
    height[dish] = np.nan
    assert len(depressions(height, 0.2)) == 1
    assert depressions(np.full_like(height, np.nan), 0.2) == []
    # a scale so fine that the search would be wider than the frame: as wide as the frame
    assert depressions(height[40:48, 40:48], 0.0001) == []


@pytest.mark.parametrize("belt", [6, 12, 30])
def test_the_belt_and_the_holes_a_profiler_reads_into_are_not_depressions(belt):
    """A part filling the frame but for a belt strip narrower than the search (which the
    closing fills as it would a pit), and a through-hole the profiler reads the belt in
    (no shadow): walls bound them, so the one depression is the pit."""
    from inspection.measure import depressions

    height, _, _ = _on_a_part(belt=belt)
    assert depressions(height, 0.2) == []
    yy, xx = np.mgrid[:96, :96]
    d2 = ((yy - 44) ** 2 + (xx - 44) ** 2) / 8**2  # 3.2 mm across, 0.06 mm deep
    pit = d2 <= 1
    height += np.where(pit, -0.06 * (1 - d2) ** 2, 0).astype(np.float32)
    (footprint,) = depressions(height, 0.2)
    assert footprint[pit].mean() > 0.6 and not footprint[~pit].any()


@pytest.mark.parametrize("product", ["bracket", "panel", "tile"])
def test_a_synthetic_stations_height_maps_hold_their_dents_and_nothing_else(product):
    """The synthetic profiler's view of a part: on its belt (read beside it and through
    its holes and notches, but not in the part's shadow), tilted, its face a little wavy,
    a point lost here and there. The search finds each part's dent, and nothing on a
    good part: not the belt, not a hole, not a hollow of the face's waviness."""
    from inspection.measure import depressions
    from inspection.synth.part import generate_part

    for index in range(3):
        good = generate_part(product, index, 5, None)
        assert depressions(good.height_map(), good.mm_per_px) == []
        dented = generate_part(product, index, 5, "dent")
        (found,) = depressions(dented.height_map(), dented.mm_per_px)
        assert (found & dented.mask).sum() > 0.5 * found.sum()


def test_a_height_maps_dropouts_are_filled_and_its_shadows_are_not():
    """Pieces of up to DROPOUT_MAX_PX unread points take the mean of the points read
    around them; a larger gap (the belt in the part's shadow) stays unread, and a map
    with nothing to fill, or nothing read, comes back as it was."""
    from inspection.measure import DROPOUT_MAX_PX, fill_dropouts

    yy, xx = np.mgrid[:40, :40].astype(np.float32)
    height = 0.01 * xx + 0.02 * yy  # a tilted face
    read = height.copy()
    read[5, 5] = np.nan  # a single point
    read[20:22, 30:32] = np.nan  # four points, 2 x 2
    read[30:36, 2:12] = np.nan  # a shadow
    filled = fill_dropouts(read)
    assert DROPOUT_MAX_PX == 4
    assert filled[5, 5] == pytest.approx(height[5, 5], abs=1e-5)  # a plane's mean
    assert np.allclose(filled[20:22, 30:32], height[20:22, 30:32], atol=0.02)
    assert np.isnan(filled[30:36, 2:12]).all()
    assert np.isnan(read[5, 5])  # the map as read is left as it was
    assert fill_dropouts(height) is height
    blind = np.full((1, 1), np.nan, np.float32)
    assert np.isnan(fill_dropouts(blind)).all()


def test_unread_points_part_the_face_from_the_belt_as_a_wall_does():
    """The belt in the part's shadow borders the face with no step a wall test sees: the
    face the search keeps to (:func:`top_face`) stops at the unread strip rather than
    running on over the belt beyond it."""
    from inspection.measure import WALL_SLOPE, top_face, walls

    height = np.full((60, 60), -3.0, np.float32)  # the belt, 3 mm down
    part = np.zeros(height.shape, bool)
    part[10:50, 5:36] = True
    height[part] = 0.0
    height[10:50, 36:40] = np.nan  # the part's shadow beside its edge, as long as it
    steep = walls(height, WALL_SLOPE * 0.2)
    # At the corners a point of the face and one of the belt meet beside the shadow,
    # where the 3x3 gradient reads NaN: the edge is a wall there all the same.
    assert steep[9, 35] and steep[10, 35]
    face = top_face(height, steep)
    assert np.array_equal(face, part & ~steep) and face[12:48, 7:34].all()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 0.6),
    st.integers(1, 40),
    st.integers(1, 40),
)
def test_filling_dropouts_changes_only_small_gaps_and_leaves_none(seed, share, rows, cols):
    """Whatever the map and however much of it is unread: the points read stay as read,
    every gap of at most DROPOUT_MAX_PX points is filled within the range of the points
    read around it, and every larger gap stays unread."""
    from inspection.measure import DROPOUT_MAX_PX, fill_dropouts

    rng = np.random.default_rng(seed)
    height = rng.normal(0, 1, (rows, cols)).astype(np.float32)
    height[rng.random((rows, cols)) < share] = np.nan
    filled = fill_dropouts(height)
    read = np.isfinite(height)
    assert np.array_equal(filled[read], height[read])
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (~read).astype(np.uint8), connectivity=8
    )
    for piece in range(1, count):
        gap = labels == piece
        if stats[piece, cv2.CC_STAT_AREA] > DROPOUT_MAX_PX or not read.any():
            assert np.isnan(filled[gap]).all()
        else:
            assert np.isfinite(filled[gap]).all()
            assert height[read].min() - 1e-6 <= filled[gap].min()
            assert filled[gap].max() <= height[read].max() + 1e-6


def test_a_colour_region_with_unreadable_pixels_is_read_where_it_can_be():
    """A float frame with NaN pixels on the ring is read on the rest of it; one whose
    region is all NaN reads NaN, which the standard sends to REVIEW (never a PASS)."""
    face = _glossy_face().astype(np.float32)
    patch = _patch_astride_the_bands_edge()
    clean = region_delta_e(face, patch, REFERENCE, 13, 2)
    holed = face.copy()
    ring = (cv2.dilate(patch.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~patch
    holed[np.nonzero(ring)[0][::3], np.nonzero(ring)[1][::3]] = np.nan
    assert region_delta_e(holed, patch, REFERENCE, 13, 2) == pytest.approx(clean, abs=0.1)
    blind = face.copy()
    blind[patch] = np.nan
    assert not np.isfinite(region_delta_e(blind, patch, REFERENCE, 13, 2))


def _photographed_dents(product: str, n: int) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    """``(image, mask, mm_per_px, depth_mm)`` of the synthetic line's first ``n`` dents
    of ``product`` (seed 5)."""
    from inspection.synth.part import generate_part

    dents = []
    for index in range(n):
        part = generate_part(product, index, 5, "dent")
        (dent,) = part.defects
        dents.append((part.image, dent.mask, part.mm_per_px, dent.attributes["depth_mm"]))
    return dents


@pytest.mark.parametrize("product", ["bracket", "tile"])
def test_a_photographed_dents_depth_reads_from_its_shading(product):
    """The synthetic station's dents, lit from LIGHT_DIR: the first twenty's gentle
    dents' shading points to the light within 6 degrees (5.1 on bracket's 15), and with
    the gain fitted on them, the next twenty's gentle ones read their depth within 30 %
    at the median (the glaze's speckle and the brushing mark shallow ones); the steep
    ones stay unread."""
    from inspection.measure import dent_shading
    from inspection.standards.guard import fit_shading_depth
    from inspection.synth.surfaces import LIGHT_DIR

    read = [
        (dent_shading(image, mask), mm, depth)
        for image, mask, mm, depth in _photographed_dents(product, 40)
    ]
    fitted = fit_shading_depth(read[:20])
    light = np.degrees(np.arctan2(LIGHT_DIR[1], LIGHT_DIR[0]))
    assert abs((fitted.azimuth_deg - light + 180) % 360 - 180) < 6
    gentle = [(shading, mm, depth) for shading, mm, depth in read[20:] if shading.linear]
    errors = [abs(fitted.depth_mm(shading, mm) / depth - 1) for shading, mm, depth in gentle]
    assert len(gentle) >= 8 and np.median(errors) < 0.3
    assert all(fitted.depth_mm(s, mm) is None for s, mm, _ in read[20:] if not s.linear)


def _dark_spots(product: str, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image, mask)``: a pair of dark dots 2 px in radius, 6 px apart (a speck pair,
    the glaze's speckle the maps took for a pit), less than half as bright as the
    surface, where the synthetic line's first ``n`` dents of ``product`` lie, on the
    same parts without them."""
    from inspection.synth.part import generate_part

    spots = []
    for index, (_, dent, _, _) in enumerate(_photographed_dents(product, n)):
        image = generate_part(product, index, 5, None).image.astype(np.float32)
        ys, xs = np.nonzero(dent)
        cx, cy = int(xs.mean()), int(ys.mean())
        mask = np.zeros(dent.shape, np.uint8)
        for x in (cx - 3, cx + 3):
            cv2.circle(mask, (x, cy), 2, 1, -1)
        image[mask > 0] *= 0.45
        spots.append((image.astype(np.uint8), mask > 0))
    return spots


@pytest.mark.parametrize("product", ["bracket", "tile"])
def test_a_steep_dark_spot_with_no_lit_slope_reads_no_depth(product):
    """Too dark to read a depth from, a dent and a dark spot differ in their lit slope:
    fitted on thirty dents of known depth (the 11-12 steep ones among them taken as
    enough here; a station needs MIN_STEEP_DENTS), at least half of ten speck pairs read
    0 deep (a depth clause passes them on their area), and no true dent does (a steep
    one stays unread: REVIEW). The least a steep dent is lit differs between the
    products' surfaces, the level with it."""
    from inspection.measure import dent_shading
    from inspection.standards.guard import fit_shading_depth

    dents = [
        (dent_shading(image, mask), mm, depth)
        for image, mask, mm, depth in _photographed_dents(product, 30)
    ]
    fitted = fit_shading_depth(dents, min_steep=8)
    assert fitted.least_lit is not None and fitted.steep >= 8
    mm = dents[0][1]
    spots = [dent_shading(image, mask) for image, mask in _dark_spots(product, 10)]
    assert all(not spot.linear for spot in spots)
    assert sum(fitted.depth_mm(spot, mm) == 0.0 for spot in spots) >= 5
    assert all(fitted.depth_mm(s, mm) != 0.0 for s, mm, _ in dents)


def test_a_patch_darker_all_over_reads_no_depth():
    """A colour patch or speck the maps took for a dent darkens both sides of its centre
    alike: its shading's odd part, the dent's, is a small share of a dent's."""
    from inspection.measure import dent_shading
    from inspection.synth.part import generate_part

    image, mask, _, _ = _photographed_dents("tile", 1)[0]
    patch = generate_part("tile", 0, 5, None).image.astype(np.float32)  # the same part, good
    patch[mask] *= 0.6  # as dark as the dent's dark slope, all over
    flat = dent_shading(patch.astype(np.uint8), mask)
    directions = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    dent = max(dent_shading(image, mask).integral_px(a) for a in directions)
    assert max(flat.integral_px(a) for a in directions) < 0.3 * dent  # 0.22; its darkening, 3.2


def test_a_dents_shading_reads_on_grey_16_bit_and_edge_frames_and_not_without_surface():
    """The same shading on the frame as grey or 16-bit; a dent cut by the frame's edge is
    read on the part of it the frame holds; a region with no surface around it readable
    (NaN) reads nothing."""
    from inspection.measure import dent_shading

    image, mask, _, _ = _photographed_dents("tile", 1)[0]
    colour = dent_shading(image, mask)
    grey = dent_shading(image.mean(axis=2), mask)
    wide = dent_shading(image.astype(np.uint16) * 257, mask)
    for other in (grey, wide):
        assert other.integral_px(1.0) == pytest.approx(colour.integral_px(1.0), rel=1e-3)
    ys, xs = np.nonzero(mask)
    cut = (slice(int(ys.mean()), None), slice(int(xs.mean()), None))  # the frame from its centre
    assert dent_shading(image[cut], mask[cut]) is not None
    blind = image.astype(np.float32)
    blind[~mask] = np.nan
    assert dent_shading(blind, mask) is None
    assert dent_shading(image, np.zeros_like(mask)) is None
