"""The rule engine on a table of cases, boundaries included."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.standards import apply_standard, assign_zone
from inspection.types import Action, Defect, Severity, Verdict

# (class, zone, attributes, expected action, expected clause, expected severity)
BRACKET_CASES = [
    # scratch on the visible face: > 5 scrap, (2, 5] rework, <= 2 accept
    ("scratch", "A", {"length_mm": 5.01}, Action.SCRAP, "4.1.1", Severity.CRITICAL),
    ("scratch", "A", {"length_mm": 5.0}, Action.REWORK, "4.1.2", Severity.MAJOR),
    ("scratch", "A", {"length_mm": 2.01}, Action.REWORK, "4.1.2", Severity.MAJOR),
    ("scratch", "A", {"length_mm": 2.0}, Action.ACCEPT, None, None),
    ("scratch", "A", {"length_mm": 0.4}, Action.ACCEPT, None, None),
    # the same scratch in the edge band is judged by the edge-band clause
    ("scratch", "B", {"length_mm": 8.0}, Action.ACCEPT, None, None),
    ("scratch", "B", {"length_mm": 10.0}, Action.ACCEPT, None, None),
    ("scratch", "B", {"length_mm": 10.5}, Action.REWORK, "4.1.3", Severity.MAJOR),
    # dent: depth > 0.3 scrap outranks length > 1.5 rework
    ("dent", "A", {"length_mm": 2.0, "depth_mm": 0.31}, Action.SCRAP, "4.2.1", Severity.CRITICAL),
    ("dent", "A", {"length_mm": 2.0, "depth_mm": 0.3}, Action.REWORK, "4.2.2", Severity.MAJOR),
    ("dent", "B", {"length_mm": 1.5, "depth_mm": 0.1}, Action.ACCEPT, None, None),
    # dent without a depth: the scrap clause cannot be evaluated -> review, never pass
    ("dent", "A", {"length_mm": 1.0}, Action.REVIEW, "4.2.1", Severity.CRITICAL),
    # ... unless the rework clause holds: rejected whatever the depth, 4.2.2 governs
    ("dent", "A", {"length_mm": 2.0}, Action.REWORK, "4.2.2", Severity.MAJOR),
    # colour: > 3 rework
    ("color_deviation", "A", {"delta_e": 3.0}, Action.ACCEPT, None, None),
    ("color_deviation", "B", {"delta_e": 3.2}, Action.REWORK, "4.3.1", Severity.MAJOR),
    # crack: any size, any zone
    ("crack", "B", {"length_mm": 0.1}, Action.SCRAP, "4.4.1", Severity.CRITICAL),
    ("crack", None, {}, Action.SCRAP, "4.4.1", Severity.CRITICAL),
    ("missing_feature", "B", {"area_mm2": 3.0}, Action.SCRAP, "4.6.1", Severity.CRITICAL),
    # a class the standard does not list
    ("burr", "A", {"length_mm": 0.1}, Action.REVIEW, None, None),
]


@pytest.mark.parametrize(("cls", "zone", "attrs", "action", "clause", "severity"), BRACKET_CASES)
def test_single_defect_table(bracket_standard, cls, zone, attrs, action, clause, severity):
    result = apply_standard(bracket_standard, [Defect(cls, attrs, zone=zone)], part_id="p")
    (decision,) = result.decisions
    assert decision.action is action
    assert decision.clause_id == clause
    assert decision.severity == severity
    assert result.verdict is action.verdict
    assert result.standard_id == "QS-BRK-200"
    assert result.standard_version == bracket_standard.version


def test_no_defects_is_pass(bracket_standard):
    result = apply_standard(bracket_standard, [], part_id="p0")
    assert result.verdict is Verdict.PASS
    assert result.action is Action.ACCEPT
    assert result.severity is None


def test_worst_defect_governs_the_part(bracket_standard):
    defects = [
        Defect("scratch", {"length_mm": 3.0}, zone="A"),  # rework
        Defect("crack", {"length_mm": 1.0}, zone="B"),  # scrap
        Defect("color_deviation", {"delta_e": 1.0}, zone="A"),  # accept
    ]
    result = apply_standard(bracket_standard, defects)
    assert result.verdict is Verdict.REJECT
    assert result.action is Action.SCRAP
    assert result.severity is Severity.CRITICAL
    assert result.clauses == ("4.1.2", "4.4.1")


def test_review_is_not_hidden_behind_accept_but_reject_wins(bracket_standard):
    review = Defect("burr", {}, zone="A")
    accept = Defect("scratch", {"length_mm": 1.0}, zone="A")
    assert apply_standard(bracket_standard, [accept, review]).verdict is Verdict.REVIEW
    scrap = Defect("crack", {}, zone="A")
    assert apply_standard(bracket_standard, [review, scrap]).verdict is Verdict.REJECT


@pytest.mark.parametrize(("n_spots", "action"), [(2, Action.ACCEPT), (3, Action.REWORK)])
def test_count_per_zone(bracket_standard, n_spots, action):
    spots = [Defect("contamination", {"area_mm2": 0.1}, zone="A") for _ in range(n_spots)]
    # spots in another zone do not count towards zone A
    spots += [Defect("contamination", {"area_mm2": 0.1}, zone="B") for _ in range(3)]
    result = apply_standard(bracket_standard, spots)
    assert result.action is action
    zone_a = [d for d in result.decisions if d.zone == "A"]
    assert all(d.action is action for d in zone_a)


def test_total_count_across_zones(panel_standard):
    spots = [Defect("contamination", {"length_mm": 0.2}, zone=z) for z in "AACC"]
    result = apply_standard(panel_standard, spots)
    assert {d.clause_id for d in result.decisions} == {"P-7.2"}
    assert apply_standard(panel_standard, spots[:3]).verdict is Verdict.PASS


def test_review_action_gives_review(panel_standard):
    result = apply_standard(panel_standard, [Defect("color_deviation", {"delta_e": 1.5})])
    assert result.verdict is Verdict.REVIEW
    assert result.clauses == ("P-5.2",)
    result = apply_standard(panel_standard, [Defect("color_deviation", {"delta_e": 2.5})])
    assert (result.verdict, result.clauses) == (Verdict.REJECT, ("P-5.1",))


def test_zone_from_centroid(bracket_standard):
    mask = np.zeros((100, 200), bool)
    mask[45:55, 95:105] = True  # centre of the part -> visible face A
    centre = Defect("scratch", {"length_mm": 6.0}, mask=mask)
    assert assign_zone(bracket_standard, centre, (200, 100)) == "A"
    edge_mask = np.zeros((100, 200), bool)
    edge_mask[2:5, 2:20] = True  # corner -> edge band B
    edge = Defect("scratch", {"length_mm": 6.0}, mask=edge_mask)
    result = apply_standard(bracket_standard, [centre, edge], image_size=(200, 100))
    assert [d.zone for d in result.decisions] == ["A", "B"]
    assert [d.action for d in result.decisions] == [Action.SCRAP, Action.ACCEPT]


def test_same_defects_differ_between_standards(bracket_standard, panel_standard):
    scratch = [Defect("scratch", {"length_mm": 4.0, "width_mm": 0.1}, zone="A")]
    assert apply_standard(bracket_standard, scratch).action is Action.REWORK
    assert apply_standard(panel_standard, scratch).action is Action.SCRAP


def test_reason_names_clause_and_measurement(bracket_standard):
    result = apply_standard(bracket_standard, [Defect("scratch", {"length_mm": 7.25}, zone="A")])
    reason = result.reasons[0]
    assert "4.1.1" in reason and "7.25" in reason and "length_mm > 5" in reason


def _dent_standard(*clauses: tuple[str, str, str, str]) -> str:
    """A one-zone standard of dents, one clause per (id, condition, severity, action)."""
    lines = [
        f'  - {{id: {cid}, defect: dent, when: ["{when}"], severity: {severity}, '
        f"action: {action}, text: {{en: t, zh: t}}}}"
        for cid, when, severity, action in clauses
    ]
    header = """
id: QS-DENT-1
title: {en: dents, zh: 凹坑}
product: x
revision: A
zones: [{id: A, name: {en: face, zh: 面}, region: [0, 0, 1, 1]}]
defect_classes: [{id: dent, name: {en: dent, zh: 凹坑}}]
clauses:
"""
    return header + "\n".join(lines) + "\n"


def _judge_dent(standard_text: str, attributes: dict):
    """The result of one dent in zone A under a one-zone dent standard, and its decision."""
    from inspection.standards import parse_standard

    result = apply_standard(parse_standard(standard_text), [Defect("dent", attributes, zone="A")])
    (decision,) = result.decisions
    return result, decision


RANKING_STANDARD = _dent_standard(
    ("d1", "length_mm > 1", "minor", "rework"),
    ("d2", "length_mm > 2", "major", "rework"),
    ("d3", "depth_mm > 0.5", "minor", "scrap"),
    ("d4", "depth_mm > 0.2", "critical", "scrap"),
)


def test_clauses_rank_strictest_first_and_the_first_that_holds_governs():
    from inspection.standards import parse_standard, ranked_clauses

    standard = parse_standard(RANKING_STANDARD)
    # Action, then severity, then the file's order.
    assert [c.id for c in ranked_clauses(standard, "dent", "A")] == ["d4", "d3", "d2", "d1"]

    def decide(attrs):
        return _judge_dent(RANKING_STANDARD, attrs)[1]

    assert decide({"length_mm": 3.0, "depth_mm": 0.1}).clause_id == "d2"  # major beats minor
    assert decide({"length_mm": 1.5, "depth_mm": 0.6}).clause_id == "d4"  # critical scrap
    # Depth not measured, no clause holds: both scrap clauses could apply; the strictest
    # is cited for review.
    review = decide({"length_mm": 0.5})
    assert review.action is Action.REVIEW and review.clause_id == "d4"


def test_a_rejecting_clause_that_holds_decides_whatever_an_unmeasured_stricter_one():
    result, decision = _judge_dent(RANKING_STANDARD, {"length_mm": 3.0})
    # d2 (major rework) holds: REJECT whatever the depth; d4 (scrap) only changes the
    # disposition, and the reason says so.
    assert result.verdict is Verdict.REJECT
    assert decision.action is Action.REWORK and decision.clause_id == "d2"
    assert "clause d4 (critical, scrap) needs depth_mm" in decision.reason
    assert decision.reason.endswith("scrap if it holds")


ACCEPTING_STANDARD = _dent_standard(
    ("a1", "length_mm > 1", "minor", "accept"),
    ("s1", "depth_mm > 0.2", "critical", "scrap"),
)


def test_an_accepting_clause_that_holds_leaves_an_unmeasured_stricter_one_to_review():
    result, decision = _judge_dent(ACCEPTING_STANDARD, {"length_mm": 3.0})
    # The depth decides PASS or REJECT: never a PASS.
    assert result.verdict is Verdict.REVIEW
    assert decision.action is Action.REVIEW and decision.clause_id == "s1"
    measured, chosen = _judge_dent(ACCEPTING_STANDARD, {"length_mm": 3.0, "depth_mm": 0.1})
    assert measured.verdict is Verdict.PASS and chosen.clause_id == "a1"


# --- measurements, zones and unknown zones the standard cannot decide (issue 19) ---


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1.0, -0.001])
@pytest.mark.parametrize(
    ("cls", "zone", "attrs"),
    [
        ("scratch", "A", {"length_mm": 8.0}),  # would be scrap
        ("scratch", "A", {"length_mm": 0.5}),  # would be accept
        ("crack", "B", {}),  # clause without conditions: scrap whatever the sizes
        ("scratch", None, {"length_mm": 0.5}),
    ],
)
def test_invalid_measurement_is_review_naming_it(bracket_standard, value, cls, zone, attrs):
    attrs = {**attrs, "width_mm": value}  # any attribute, even one no clause reads
    result = apply_standard(bracket_standard, [Defect(cls, attrs, zone=zone)])
    (decision,) = result.decisions
    assert decision.action is Action.REVIEW and result.verdict is Verdict.REVIEW
    assert f"width_mm={value:g}" in decision.reason


def test_invalid_measurement_reason_lists_each_bad_attribute(bracket_standard):
    attrs = {"length_mm": float("nan"), "width_mm": 0.2, "area_mm2": -3.0}
    (decision,) = apply_standard(bracket_standard, [Defect("scratch", attrs, zone="A")]).decisions
    assert "length_mm=nan" in decision.reason and "area_mm2=-3" in decision.reason
    assert "width_mm" not in decision.reason


def test_invalid_measurement_is_review_even_beside_an_accepted_defect(bracket_standard):
    good = Defect("scratch", {"length_mm": 0.5}, zone="A")
    bad = Defect("scratch", {"length_mm": float("nan")}, zone="A")
    assert apply_standard(bracket_standard, [good, bad]).verdict is Verdict.REVIEW


def test_zero_is_a_valid_measurement(bracket_standard):
    result = apply_standard(bracket_standard, [Defect("scratch", {"length_mm": 0.0}, zone="A")])
    assert result.verdict is Verdict.PASS


@pytest.mark.parametrize("zone", ["Q", "", "a"])
def test_zone_the_standard_does_not_declare_is_review(bracket_standard, zone):
    # A 0.5 mm scratch passes in A and B; in an undeclared zone nothing can be said.
    result = apply_standard(bracket_standard, [Defect("scratch", {"length_mm": 0.5}, zone=zone)])
    (decision,) = result.decisions
    assert result.verdict is Verdict.REVIEW
    assert f"zone {zone!r} is not a zone of standard QS-BRK-200" in decision.reason


def test_unknown_zone_where_zones_disagree_is_review(bracket_standard):
    # 8 mm: scrap on the visible face (4.1.1), accepted in the edge band (<= 10 mm).
    result = apply_standard(bracket_standard, [Defect("scratch", {"length_mm": 8.0})])
    (decision,) = result.decisions
    assert result.verdict is Verdict.REVIEW
    assert decision.zone is None
    assert "zone unknown" in decision.reason and "disagree" in decision.reason
    assert "A: scrap by 4.1.1" in decision.reason and "B: accept" in decision.reason


def test_unknown_zone_where_every_zone_agrees_stands(bracket_standard):
    small = apply_standard(bracket_standard, [Defect("scratch", {"length_mm": 1.0})])
    assert small.verdict is Verdict.PASS
    assert "zone unknown" in small.reasons[0] and "every zone" in small.reasons[0]
    dent = apply_standard(bracket_standard, [Defect("dent", {"length_mm": 2.0, "depth_mm": 0.1})])
    assert (dent.action, dent.clauses) == (Action.REWORK, ("4.2.2",))


def test_unknown_zone_rejected_in_every_zone_keeps_the_strictest(bracket_standard):
    # 12 mm: scrap in A (4.1.1), rework in B (4.1.3): a reject either way, never weaker.
    result = apply_standard(bracket_standard, [Defect("scratch", {"length_mm": 12.0})])
    (decision,) = result.decisions
    assert (decision.action, decision.clause_id, decision.severity) == (
        Action.SCRAP,
        "4.1.1",
        Severity.CRITICAL,
    )
    assert "rejects" in decision.reason


ZONED_CRACKS = """
id: QS-ZONED-1
title: {en: zoned cracks, zh: 分区裂纹}
product: x
revision: A
zones:
  - {id: A, name: {en: face, zh: 面}, region: [0.2, 0.2, 0.8, 0.8]}
  - {id: B, name: {en: edge, zh: 边}, region: [0, 0, 1, 1]}
defect_classes: [{id: crack, name: {en: crack, zh: 裂纹}}]
clauses:
  - {id: c1, defect: crack, zones: [A], severity: critical, action: scrap,
     text: {en: a, zh: a}}
  - {id: c2, defect: crack, zones: [B], severity: major, action: rework,
     text: {en: b, zh: b}}
"""


def test_tap_test_crack_under_zoned_crack_clauses_stays_rejected():
    """The tap test's internal crack has no zone (pipeline.part_defects): a standard that
    rejects cracks in every zone, by zone-specific clauses, rejects it (before: PASS,
    since only clauses without zones were looked at)."""
    from inspection.standards import parse_standard

    standard = parse_standard(ZONED_CRACKS)
    result = apply_standard(standard, [Defect("crack", {}, zone=None, score=0.9)])
    assert result.verdict is Verdict.REJECT
    assert (result.action, result.clauses) == (Action.SCRAP, ("c1",))
    # Only rework everywhere: rework stands.
    rework_only = parse_standard(ZONED_CRACKS.replace("action: scrap", "action: rework"))
    assert apply_standard(rework_only, [Defect("crack", {})]).action is Action.REWORK


def test_unknown_zone_counts_with_the_defects_that_could_share_its_zone(bracket_standard):
    # Two spots known in A and one of unknown zone: if it lies in A there are three
    # (4.5.2, rework), in B it is alone (accept). The zones disagree: review.
    spots = [Defect("contamination", {"area_mm2": 0.1}, zone="A") for _ in range(2)]
    result = apply_standard(bracket_standard, [*spots, Defect("contamination", {"area_mm2": 0.1})])
    assert [d.action for d in result.decisions] == [Action.ACCEPT, Action.ACCEPT, Action.REVIEW]
    assert result.verdict is Verdict.REVIEW
    # Three spots all of unknown zone could all be in A: review too.
    unknown = [Defect("contamination", {"area_mm2": 0.1}) for _ in range(3)]
    assert apply_standard(bracket_standard, unknown).verdict is Verdict.REVIEW
    # Known zones keep their per-zone counts (two in A, one in B: no 4.5.2).
    known = [*spots, Defect("contamination", {"area_mm2": 0.1}, zone="B")]
    assert apply_standard(bracket_standard, known).verdict is Verdict.PASS


def test_decide_defect_with_unknown_zone_directly(bracket_standard):
    from inspection.standards import decide_defect

    decision = decide_defect(bracket_standard, Defect("scratch", {"length_mm": 8.0}), None)
    assert decision.action is Action.REVIEW
    counted = decide_defect(
        bracket_standard,
        Defect("contamination", {"area_mm2": 0.1}),
        None,
        zone_counts={"A": 3, "B": 3},
    )
    assert counted.action is Action.REVIEW  # A: rework (count 3), B: accept
