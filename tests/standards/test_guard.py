"""Guard bands: a reading within its uncertainty of a limit is REVIEW, never PASS."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from inspection.standards import (
    GuardBand,
    GuardBandError,
    apply_standard,
    load_guard_band,
    measure_guard_band,
)
from inspection.standards.guard import (
    MIN_PAIRS,
    MIN_STEEP_DENTS,
    ShadingDepth,
    fit_band,
    fit_shading_depth,
    written_band_words,
)
from inspection.standards.schema import Condition
from inspection.types import Action, Defect, Verdict

BAND = GuardBand({"scratch": {"length_mm": (0.5, 0.0)}, "color_deviation": {"delta_e": (0.4, 0.0)}})


# Bracket: scratch in zone A > 2 mm rework, > 5 mm scrap; colour ΔE > 3 rework.
@pytest.mark.parametrize(
    ("cls", "attrs", "plain", "guarded", "clause"),
    [
        # well inside the tolerance: the band changes nothing
        ("scratch", {"length_mm": 1.2}, Action.ACCEPT, Action.ACCEPT, None),
        # within 0.5 of the 2 mm limit: conformance not proven
        ("scratch", {"length_mm": 1.6}, Action.ACCEPT, Action.REVIEW, "4.1.2"),
        # rejected on the reading: the band never softens a rejection, nor hardens it
        ("scratch", {"length_mm": 4.8}, Action.REWORK, Action.REWORK, "4.1.2"),
        ("scratch", {"length_mm": 5.2}, Action.SCRAP, Action.SCRAP, "4.1.1"),
        ("color_deviation", {"delta_e": 2.7}, Action.ACCEPT, Action.REVIEW, "4.3.1"),
        ("color_deviation", {"delta_e": 2.5}, Action.ACCEPT, Action.ACCEPT, None),
        # a class without a band is read as exact
        ("contamination", {"area_mm2": 1.4}, None, None, None),
    ],
)
def test_guarded_acceptance(bracket_standard, cls, attrs, plain, guarded, clause):
    defect = [Defect(cls, attrs, zone="A")]
    unguarded = apply_standard(bracket_standard, defect).decisions[0]
    with_band = apply_standard(bracket_standard, defect, guard=BAND).decisions[0]
    if plain is None:  # the same decision with or without the band
        assert with_band == unguarded
        return
    assert unguarded.action is plain
    assert with_band.action is guarded
    assert with_band.clause_id == clause


def test_review_reason_names_reading_band_and_limit(bracket_standard):
    result = apply_standard(
        bracket_standard, [Defect("scratch", {"length_mm": 1.64}, zone="A")], guard=BAND
    )
    assert result.verdict is Verdict.REVIEW
    reason = result.decisions[0].reason
    assert "length_mm=1.64 ±0.5" in reason
    assert "clause 4.1.2" in reason and "length_mm > 2" in reason
    assert "needs review" in reason


def test_band_applies_in_a_zone_it_was_not_measured_for(bracket_standard):
    # zone unknown: decided in every zone, and the band applies in each
    defect = [Defect("scratch", {"length_mm": 1.7})]
    assert apply_standard(bracket_standard, defect).verdict is Verdict.PASS
    assert apply_standard(bracket_standard, defect, guard=BAND).verdict is Verdict.REVIEW


def test_a_zero_band_is_no_band(bracket_standard):
    zero = GuardBand({"scratch": {"length_mm": (0.0, 0.0)}})
    defect = [Defect("scratch", {"length_mm": 1.99}, zone="A")]
    assert apply_standard(bracket_standard, defect, guard=zero).verdict is Verdict.PASS


@pytest.mark.parametrize(
    ("condition", "measured", "margin", "holds"),
    [
        ("length_mm > 2", 1.6, 0.5, True),
        ("length_mm > 2", 1.5, 0.5, False),  # 1.5 + 0.5 = 2 is not > 2
        ("length_mm >= 2", 1.5, 0.5, True),
        ("length_mm < 1", 1.3, 0.5, True),
        ("length_mm <= 1", 1.6, 0.5, False),
        ("length_mm < 0.1", 0.3, 5.0, True),  # the band stops at 0, which is < 0.1
        ("length_mm == 2", 2.4, 0.5, True),
        ("length_mm == 2", 2.6, 0.5, False),
        ("length_mm != 2", 2.0, 0.5, True),
        ("length_mm != 2", 2.0, 0.0, False),
    ],
)
def test_condition_holds_within(condition, measured, margin, holds):
    assert Condition.model_validate(condition).holds_within(measured, margin) is holds


@pytest.mark.parametrize(
    ("condition", "measured", "above", "below", "holds"),
    [
        ("area_mm2 > 4", 3.8, 0.1, 2.0, False),  # only the truth above the reading matters
        ("area_mm2 > 4", 3.8, 0.3, 0.0, True),
        ("area_mm2 < 1", 1.3, 0.0, 0.5, True),  # only the truth under it
        ("area_mm2 < 1", 1.3, 0.5, 0.2, False),
        ("area_mm2 == 2", 2.4, 0.0, 0.5, True),
        ("area_mm2 == 2", 1.6, 0.0, 0.5, False),
    ],
)
def test_condition_holds_within_two_sides(condition, measured, above, below, holds):
    assert Condition.model_validate(condition).holds_within(measured, above, below) is holds


def test_counts_are_never_banded():
    band = GuardBand({"contamination": {"count": (3.0, 0.0), "area_mm2": (0.2, 0.5)}})
    assert band.margin("contamination", "count", 4) == 0.0
    assert band.margin("contamination", "total_count", 4) == 0.0
    assert band.margin("contamination", "area_mm2", 1.0) == pytest.approx(0.7)
    assert band.margin("scratch", "length_mm", 1.0) == 0.0


def test_the_readings_a_band_allows_of_a_true_value_invert_it():
    """The readings a gauge could give of a true size, the band taken at the reading (as
    it is fitted): a map that reads small pits at a third of their area (truth up to 180 %
    above a reading) could read a 18 mm² pit as 6.4 mm², not as nothing."""
    band = GuardBand(
        {"dent": {"area_mm2": (0.0, 1.8)}, "scratch": {"length_mm": (0.3, 0.0)}},
        below={"dent": {"area_mm2": (0.0, 0.36)}, "scratch": {"length_mm": (0.1, 1.0)}},
    )
    low, high = band.readings_of("dent", "area_mm2", 18.0)
    assert low == pytest.approx(18.0 / 2.8) and high == pytest.approx(18.0 / 0.64)
    for reading in (low, high):  # each edge: the truth lies just within the band of it
        assert 18.0 - reading == pytest.approx(
            band.margin("dent", "area_mm2", reading)
            if reading < 18.0
            else -band.margin_below("dent", "area_mm2", reading)
        )
    # a band under the reading as wide as the reading: any reading above the truth
    assert band.readings_of("scratch", "length_mm", 2.0) == (pytest.approx(1.7), math.inf)
    assert band.readings_of("scratch", "length_mm", 0.1) == (0.0, math.inf)  # not under 0
    assert band.readings_of("scratch", "count", 3.0) == (3.0, 3.0)  # counted, not read
    assert band.readings_of("crack", "length_mm", 2.0) == (2.0, 2.0)  # no band: as read


def _covered(band, readings, truths, side: float = 1.0) -> float:
    """The share of the truths at most the band ``side`` of their readings (1: above)."""
    fixed, proportional = band
    beyond = side * (truths - readings)
    return float(np.mean(beyond <= fixed + proportional * readings + 1e-12))


def test_measured_band_of_a_constant_scatter_is_its_quantile():
    """Errors that scatter evenly: each side holds 97.5 % of its truths, and at the
    typical reading is no wider than about the band of 95 % of the errors' size."""
    rng = np.random.default_rng(0)
    errors = rng.normal(0.0, 0.1, 400)
    pairs = [("scratch", {"width_mm": 0.4 + e, "count": 1}, {"width_mm": 0.4}) for e in errors]
    band = measure_guard_band(pairs, source="set")
    quantile = float(np.quantile(np.abs(errors), 0.95))  # about 1.96 sigma
    assert 0.15 < quantile < 0.25
    readings, truths = 0.4 + errors, np.full(400, 0.4)
    for side, bands in ((1.0, band.margins), (-1.0, band.below)):
        one_side = bands["scratch"]["width_mm"]
        assert _covered(one_side, readings, truths, side) >= 0.975
        fixed, proportional = one_side
        assert fixed + proportional * 0.4 < 1.25 * quantile
    assert "count" not in band.margins["scratch"]
    assert band.pairs == {"scratch": 400}
    assert band.source == "set"


def test_measured_band_grows_with_the_size_read():
    """Areas read within 10 % (1 sigma): a band of one constant would be as wide for a
    speck as for a pit 20 times its area; the fitted one grows with the reading."""
    rng = np.random.default_rng(1)
    truths = rng.uniform(0.5, 10.0, 500)
    readings = truths * (1 + rng.normal(0.0, 0.1, 500))
    pairs = [
        ("dent", {"area_mm2": r}, {"area_mm2": t}) for r, t in zip(readings, truths, strict=True)
    ]
    band = measure_guard_band(pairs)
    constant = float(np.quantile(np.abs(readings - truths), 0.95))
    for side, bands in ((1.0, band.margins), (-1.0, band.below)):
        fixed, proportional = bands["dent"]["area_mm2"]
        assert 0.1 < proportional < 0.35
        assert _covered((fixed, proportional), readings, truths, side) >= 0.975
        assert fixed + proportional * 0.5 < constant / 3


def test_a_gauge_that_over_reads_guards_acceptance_only_by_its_under_reads(bracket_standard):
    """Areas read 10-40 % over the truth (the anomaly map's blurred pits): the truth never
    lies above the reading, so a pit read just inside a limit is proven inside it and
    passes, where a band of the errors' size sent it to review. A gauge that under-reads
    as much (the wide shallow pits read at half their area) guards the same pit."""
    rng = np.random.default_rng(2)
    truths = rng.uniform(0.3, 2.5, 200)
    over = [("dent", {"length_mm": t * rng.uniform(1.1, 1.4)}, {"length_mm": t}) for t in truths]
    under = [("dent", {"length_mm": t * rng.uniform(0.6, 0.9)}, {"length_mm": t}) for t in truths]
    over_band, under_band = measure_guard_band(over), measure_guard_band(under)
    assert over_band.margin("dent", "length_mm", 1.4) == pytest.approx(0.0)
    assert over_band.margin_below("dent", "length_mm", 1.4) > 0.2
    assert under_band.margin("dent", "length_mm", 1.4) > 0.2
    assert under_band.margin_below("dent", "length_mm", 1.4) == pytest.approx(0.0)
    symmetric = GuardBand({"dent": {"length_mm": over_band.below["dent"]["length_mm"]}})
    # bracket: a dent over 1.5 mm is reworked (4.2.2), one deeper than 0.3 mm scrapped
    pit = [Defect("dent", {"length_mm": 1.4, "depth_mm": 0.05}, zone="A")]
    assert apply_standard(bracket_standard, pit, guard=over_band).verdict is Verdict.PASS
    assert apply_standard(bracket_standard, pit, guard=symmetric).verdict is Verdict.REVIEW
    guarded = apply_standard(bracket_standard, pit, guard=under_band)
    assert guarded.verdict is Verdict.REVIEW
    above = under_band.margin("dent", "length_mm", 1.4)
    assert f"length_mm=1.4 +{above:.2g}/−0 lies within" in guarded.decisions[0].reason


def test_a_band_of_two_sides_round_trips(tmp_path):
    """Each side as fitted goes to the file and back; a file that gives one pair holds it
    for both sides, as one written before the sides were fitted apart did."""
    band = GuardBand({"dent": {"area_mm2": (0.0, 0.05)}}, below={"dent": {"area_mm2": (0.1, 0.3)}})
    written = band.to_dict()["margins"]["dent"]["area_mm2"]
    assert written == {
        "fixed": 0.0,
        "proportional": 0.05,
        "below": {"fixed": 0.1, "proportional": 0.3},
    }
    path = tmp_path / "guard_band.json"
    path.write_text(json.dumps(band.to_dict()))
    loaded = load_guard_band(path)
    assert (loaded.margins, loaded.below) == (band.margins, band.below)
    assert loaded.version == band.version != GuardBand(band.margins).version
    assert loaded.margin_below("dent", "area_mm2", 2.0) == pytest.approx(0.7)
    assert BAND.margin_below("scratch", "length_mm", 3.0) == BAND.margin(
        "scratch", "length_mm", 3.0
    )
    assert "below" not in json.dumps(BAND.to_dict()["margins"])
    same = GuardBand(BAND.margins, below=BAND.margins)  # both sides fitted alike
    assert same.version == BAND.version and same.to_dict() == BAND.to_dict()


def test_a_shading_depth_round_trips_and_changes_the_version(tmp_path):
    """The station's depth from shading travels in the guard band's file, and is part of
    its version: a line reading depths so records which calibration read them."""
    shaded = GuardBand(BAND.margins, shading=ShadingDepth(-127.5, 1.35, 16))
    path = tmp_path / "guard_band.json"
    path.write_text(json.dumps(shaded.to_dict()))
    loaded = load_guard_band(path)
    assert loaded.shading == shaded.shading and loaded.margins == BAND.margins
    assert loaded.version == shaded.version != BAND.version
    assert GuardBand({}, shading=shaded.shading).version != "no guard band"


@dataclass(frozen=True)
class _Shading:
    """A dent's shading as :func:`fit_shading_depth` sees it: a moment towards the light
    and a darkening integral along the light, largest along ``toward_light``."""

    toward_light: tuple[float, float]
    along: float  # px, along toward_light; less by the cosine off it
    lit: float = 0.05  # the most it brightens the surface
    linear: bool = True  # gentle enough to read its depth from

    def integral_px(self, azimuth: float) -> float:
        off = azimuth - math.atan2(self.toward_light[1], self.toward_light[0])
        return self.along * max(0.0, math.cos(off))


def test_a_shading_depth_is_fitted_on_dents_of_known_depth():
    """Moments pointing 40-60 degrees (the light at 50), integrals of 2 px per 0.1 mm of
    depth at 0.1 mm a pixel: the light at 50 degrees, a gain of 2 (0.2 mm of darkening
    integral per 0.1 mm), and that reading back; fewer dents than a band needs, or none
    of a depth above 0, fit nothing."""
    DEPTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    dents = [
        (_Shading((math.cos(math.radians(a)), math.sin(math.radians(a))), 20 * d), 0.1, d)
        for a, d in zip((40, 45, 50, 55, 60, 50, 50, 50), DEPTHS, strict=True)
    ]
    fitted = fit_shading_depth(dents)
    assert fitted is not None and fitted.pairs == 8
    assert fitted.azimuth_deg == pytest.approx(50, abs=0.01)
    assert fitted.gain == pytest.approx(2.0, rel=0.01)
    assert fitted.depth_mm(dents[3][0], 0.1) == pytest.approx(0.4, rel=0.01)
    assert fit_shading_depth(dents[: MIN_PAIRS - 1]) is None
    assert fit_shading_depth([(s, 0.1, 0.0) for s, _, _ in dents]) is None
    assert fitted.least_lit is None and fitted.steep == 0  # no steep dent among them


def _steep(lit: float) -> _Shading:
    """A dent too dark to read its depth from, lit ``lit`` on its far slope."""
    return _Shading((0.0, 1.0), 1e3, lit=lit, linear=False)


def test_steep_dents_give_the_least_a_true_dent_is_lit():
    """Gentle dents fit the light and the gain as ever; steep ones (dark enough to read
    short, whatever their integral) give the least their lit slope brightened the
    surface. A steep region lit under half that reads 0 deep (a dark spot, not a
    depression); one lit more stays unread, and so does every steep region where fewer
    than MIN_STEEP_DENTS steep dents were fitted on."""
    gentle = [
        (_Shading((math.cos(math.radians(50)), math.sin(math.radians(50))), 20 * d), 0.1, d)
        for d in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    ]
    steep = [(_steep(0.02 + 0.001 * i), 0.1, 0.5) for i in range(MIN_STEEP_DENTS)]
    fitted = fit_shading_depth(gentle + steep)
    assert fitted is not None and fitted.pairs == 8 and fitted.steep == MIN_STEEP_DENTS
    assert fitted.least_lit == pytest.approx(0.02)
    assert fitted.azimuth_deg == pytest.approx(50, abs=0.01)  # the steep moments left out
    assert fitted.gain == pytest.approx(2.0, rel=0.01)
    assert fitted.depth_mm(_steep(0.0099), 0.1) == 0.0
    assert fitted.depth_mm(_steep(0.0101), 0.1) is None
    assert fitted.depth_mm(gentle[3][0], 0.1) == pytest.approx(0.4, rel=0.01)
    too_few = fit_shading_depth(gentle + steep[: MIN_STEEP_DENTS - 1])
    assert too_few.least_lit is None and too_few.depth_mm(_steep(0.0), 0.1) is None
    assert fit_shading_depth(steep) is None  # a gain needs gentle dents


def test_the_least_lit_round_trips_and_changes_the_version(tmp_path):
    plain = ShadingDepth(-127.5, 1.35, 16)
    lit = ShadingDepth(-127.5, 1.35, 16, least_lit=0.019, steep=23)
    path = tmp_path / "shading.json"
    path.write_text(json.dumps(GuardBand(BAND.margins, shading=lit).to_dict()))
    assert load_guard_band(path).shading == lit
    assert GuardBand({}, shading=lit).version != GuardBand({}, shading=plain).version
    assert "least_lit" not in plain.to_dict()  # a file of before reads as it was written
    assert plain.steep_words == ""  # no level: every steep region unread
    assert "the least of its 23 steep dents (0.019) reads 0 deep" in lit.steep_words
    by_hand = ShadingDepth(-127.5, 1.35, 16, least_lit=0.019)  # no count written
    assert "the least of its steep dents (0.019)" in by_hand.steep_words


def test_a_written_calibration_is_read_back_to_be_said_and_not_where_it_cannot_be():
    """An evaluation's metrics carry the calibration as written: read back, its words
    (the label's and the log's); nothing where it sets none or is malformed (a
    hand-edited record)."""
    from inspection.standards.guard import shading_depth_of

    written = ShadingDepth(-127.5, 1.35, 16, least_lit=0.019, steep=23).to_dict()
    read = shading_depth_of(written)
    assert "23 steep dents (0.019) reads 0 deep" in read.steep_words
    words = "calibrated on 16 limit samples' dents, dark spots told by 23 steep ones' lit slope"
    assert read.calibration_words == words
    plain = shading_depth_of(ShadingDepth(-127.5, 1.35, 16).to_dict())
    assert plain.steep_words == "" and plain.calibration_words.endswith("16 limit samples' dents")
    assert shading_depth_of({**written, "pairs": "16"}).calibration_words.startswith(
        "calibrated on limit samples' dents"
    )  # a count not written as one is not said
    for malformed in (None, 2, {**written, "least_lit": "0.019"}, {**written, "gain": 0}):
        assert shading_depth_of(malformed) is None


def test_too_few_pairs_give_no_band():
    few = [("dent", {"area_mm2": 1.0}, {"area_mm2": 2.0})] * (MIN_PAIRS - 1)
    band = measure_guard_band(few)
    assert band.margins == {}
    assert band.pairs == {"dent": MIN_PAIRS - 1}  # recorded, so the file says why
    assert band.version == "no guard band"


def test_file_round_trip_and_version(tmp_path):
    path = tmp_path / "guard_band.json"
    path.write_text(json.dumps(BAND.to_dict()))
    loaded = load_guard_band(path)
    assert loaded.margins == BAND.margins
    assert loaded.version == BAND.version != "no guard band"
    other = GuardBand({"scratch": {"length_mm": (0.5, 0.1)}})
    assert other.version != BAND.version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cannot read"),
        ("[1, 2]", "expected an object"),
        ('{"margins": {"scratch": 0.5}}', "must map attributes"),
        ('{"margins": {"scratch": {"length_mm": -0.1}}}', "negative"),
        ('{"margins": {"scratch": {"length_mm": "0.5"}}}', "not a finite number"),
        ('{"margins": {"scratch": {"length_mm": NaN}}}', "not a finite number"),
        ('{"margins": {"scratch": {"length_mm": true}}}', "not a finite number"),
        ('{"margins": {"dent": {"area_mm2": {"fixed": 0.1, "slope": 0.2}}}}', "unknown field"),
        ('{"margins": {"dent": {"area_mm2": {"proportional": -0.2}}}}', "proportional"),
        ('{"margins": {"dent": {"area_mm2": {"fixed": 0.1, "below": -1}}}}', "below: -1 is neg"),
        ('{"margins": {"dent": {"area_mm2": {"below": {"below": 1}}}}}', "below: unknown field"),
        ('{"margins": {}, "shading_depth": 2}', r"shading_depth: expected \{azimuth_deg"),
        ('{"margins": {}, "shading_depth": {"gain": 1.0}}', "azimuth_deg: None is not a number"),
        ('{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": 0}}', "gain: 0 must be"),
        ('{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": NaN}}', "not a finite"),
        ('{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": 1, "tilt": 3}}', "unknown"),
        (
            '{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": 1, "least_lit": 0}}',
            "between 0",
        ),
        (
            '{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": 1, "least_lit": 2}}',
            "2 must lie",
        ),
        (
            '{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": 1, "least_lit": "a"}}',
            "not a fin",
        ),
        (
            '{"margins": {}, "shading_depth": {"azimuth_deg": 9, "gain": 1, "least_lit": true}}',
            "True is",
        ),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "band.json"
    path.write_text(text)
    with pytest.raises(GuardBandError, match=message):
        load_guard_band(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(GuardBandError, match="no such guard-band file"):
        load_guard_band(tmp_path / "absent.json")


def test_a_band_reads_as_one_or_two_sides():
    assert written_band_words({"fixed": 0.3, "proportional": 0.0}) == "±0.3"
    two = {"fixed": 0.0, "proportional": 0.05, "below": {"fixed": 0.15, "proportional": 0.42}}
    assert written_band_words(two) == "+5 % / −(0.15 + 42 %)"


def test_each_side_holds_its_own_errors_where_a_symmetric_band_does_not():
    """Tile's pits: small ones read 10-50 % over, one in ten wide and shallow and read at
    half its area. The band of the errors' size is wider than the gauge errs under the
    truth and narrower than it errs above: it leaves out more than 2.5 % of the truths
    above their readings. Each side holds its 97.5 %, and the side the gauge errs little
    on is narrower than the symmetric band."""
    rng = np.random.default_rng(3)
    small = [(t * rng.uniform(1.1, 1.5), t) for t in rng.uniform(1.0, 5.0, 90)]
    wide = [(t * rng.uniform(0.4, 0.6), t) for t in rng.uniform(4.0, 8.0, 10)]
    reading, truth = np.asarray(small + wide).T
    pairs = [
        ("dent", {"area_mm2": r}, {"area_mm2": t}) for r, t in zip(reading, truth, strict=True)
    ]
    band = measure_guard_band(pairs)
    symmetric = fit_band(list(zip(reading, truth, strict=True)))
    assert _covered(symmetric, reading, truth, 1.0) < 0.975
    above, below = band.margins["dent"]["area_mm2"], band.below["dent"]["area_mm2"]
    assert _covered(above, reading, truth, 1.0) >= 0.975
    assert _covered(below, reading, truth, -1.0) >= 0.975
    typical = float(np.median(reading))
    assert below[0] + below[1] * typical < symmetric[0] + symmetric[1] * typical


PROVING = GuardBand(BAND.margins, prove_rejection=True)


# Bracket zone A: scratch > 2 mm rework, > 5 mm scrap (2 < length <= 5: 4.1.2); ΔE > 3
# rework; contamination of 3 or more reworked, however small (counts are exact).
@pytest.mark.parametrize(
    ("cls", "attrs", "plain", "proving", "clause"),
    [
        # beyond the limit by less than the band: the truth may lie inside it
        ("scratch", {"length_mm": 2.3}, Action.REWORK, Action.REVIEW, "4.1.2"),
        ("color_deviation", {"delta_e": 3.3}, Action.REWORK, Action.REVIEW, "4.3.1"),
        # beyond it by more: proven
        ("scratch", {"length_mm": 2.6}, Action.REWORK, Action.REWORK, "4.1.2"),
        ("color_deviation", {"delta_e": 3.5}, Action.REWORK, Action.REWORK, "4.3.1"),
        # within the band of the scrap limit, yet rework or scrap whichever it is: proven,
        # the disposition as read
        ("scratch", {"length_mm": 5.2}, Action.SCRAP, Action.SCRAP, "4.1.1"),
        ("scratch", {"length_mm": 4.8}, Action.REWORK, Action.REWORK, "4.1.2"),
        # acceptance is guarded as ever
        ("scratch", {"length_mm": 1.6}, Action.ACCEPT, Action.REVIEW, "4.1.2"),
        ("scratch", {"length_mm": 1.2}, Action.ACCEPT, Action.ACCEPT, None),
    ],
)
def test_proven_rejection(bracket_standard, cls, attrs, plain, proving, clause):
    defect = [Defect(cls, attrs, zone="A")]
    assert apply_standard(bracket_standard, defect).decisions[0].action is plain
    decided = apply_standard(bracket_standard, defect, guard=PROVING).decisions[0]
    assert (decided.action, decided.clause_id) == (proving, clause)
    as_read = apply_standard(bracket_standard, defect, guard=BAND).decisions[0]
    if plain is not Action.ACCEPT:  # without the proof a reading beyond a limit rejects
        assert as_read.action is plain


def test_unproven_rejection_names_the_reading_band_and_limit(bracket_standard):
    defect = [Defect("color_deviation", {"delta_e": 3.2}, zone="B")]
    result = apply_standard(bracket_standard, defect, guard=PROVING)
    assert result.verdict is Verdict.REVIEW
    reason = result.decisions[0].reason
    assert "delta_e=3.2 ±0.4" in reason and "delta_e > 3" in reason
    assert "nonconformance not proven" in reason


def test_counts_prove_rejection_whatever_the_size(bracket_standard):
    """Three contamination specks, each read within the area band of 4.5.1's limit: the
    count (exact) rejects all three whatever their true size."""
    band = GuardBand({"contamination": {"area_mm2": (0.5, 0.0)}}, prove_rejection=True)
    specks = [Defect("contamination", {"area_mm2": 0.9}, zone="A") for _ in range(3)]
    assert apply_standard(bracket_standard, specks, guard=band).verdict is Verdict.REJECT
    assert apply_standard(bracket_standard, specks[:1], guard=band).verdict is Verdict.REVIEW


def test_proving_rejection_round_trips_and_changes_the_version(tmp_path):
    path = tmp_path / "guard_band.json"
    path.write_text(json.dumps(PROVING.to_dict()))
    loaded = load_guard_band(path)
    assert loaded.prove_rejection and loaded.margins == BAND.margins
    assert loaded.version == PROVING.version != BAND.version
    assert BAND.proving_rejection() == PROVING
    assert "prove_rejection" not in BAND.to_dict() and "REJECT only" in PROVING.to_dict()["rule"]
    scratches = BAND.proving_rejection(["scratch"])
    path.write_text(json.dumps(scratches.to_dict()))
    loaded = load_guard_band(path)
    assert loaded.prove_rejection == frozenset({"scratch"}) == scratches.prove_rejection
    assert loaded.version == scratches.version not in (PROVING.version, BAND.version)
    assert BAND.proving_rejection([]) == BAND  # no class: as read
    for written in ("yes", 1, ["scratch", 2], [""]):
        path.write_text(json.dumps({**BAND.to_dict(), "prove_rejection": written}))
        with pytest.raises(GuardBandError, match=r"prove_rejection: .* is not true, false or a"):
            load_guard_band(path)


def test_rejection_is_proven_for_the_classes_listed(bracket_standard):
    """A band proving scratches' rejection only: a scratch read just over its limit is
    REVIEW, a colour patch read just over its own rejects as read."""
    band = BAND.proving_rejection(["scratch"])
    scratch = [Defect("scratch", {"length_mm": 2.3}, zone="A")]
    patch = [Defect("color_deviation", {"delta_e": 3.3}, zone="A")]
    assert apply_standard(bracket_standard, scratch, guard=band).verdict is Verdict.REVIEW
    assert apply_standard(bracket_standard, patch, guard=band).verdict is Verdict.REJECT
    assert apply_standard(bracket_standard, patch, guard=PROVING).verdict is Verdict.REVIEW
