"""The rule engine: a standard applied to measured defects gives the verdict.

Deterministic and auditable: every defect gets the clause that governs it and a reason
in words. Among the clauses that apply to a defect the one with the most severe action
governs (then the higher severity, then file order). A defect no clause covers is within
tolerance and accepted. Anything the standard cannot decide goes to REVIEW, never PASS:
a class it does not list, a condition on an attribute that was not measured (unless a
clause that holds already rejects: then it governs, and the reason names the stricter
clause left open), a measurement that is NaN, infinite or negative, a zone it does not
declare. A defect whose zone is unknown is decided in every zone: the decision stands
when every zone gives the same action (or every zone rejects: then the strictest), else
REVIEW. Given a guard band (:mod:`inspection.standards.guard`), a stricter clause that
holds for some true value within the measurement's uncertainty of the reading leaves the
decision as open as an unmeasured attribute does: REVIEW, never PASS. A band that proves
rejection too (``prove_rejection``, of every class or of those it names) sends a defect
the reading rejects to REVIEW unless a rejecting clause holds for every true value
within it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

from inspection.standards.guard import GuardBand
from inspection.standards.schema import Clause, Standard, true_range
from inspection.types import (
    Action,
    Defect,
    DefectDecision,
    InspectionResult,
    Verdict,
)


def assign_zone(
    standard: Standard, defect: Defect, image_size: tuple[int, int] | None
) -> str | None:
    """The defect's zone: as given, else the standard's zone at its centroid.

    ``image_size`` is ``(width, height)`` in pixels of the frame the defect was found in.
    """
    if defect.zone is not None:
        return defect.zone
    centre = defect.centroid
    if centre is None or image_size is None:
        return None
    width, height = image_size
    return standard.zone_at(centre[0] / width, centre[1] / height)


def apply_standard(
    standard: Standard,
    defects: Sequence[Defect],
    part_id: str = "",
    image_size: tuple[int, int] | None = None,
    guard: GuardBand | None = None,
) -> InspectionResult:
    """Decide one part from its measured defects.

    Parameters
    ----------
    standard
        The product's validated standard.
    defects
        Every defect found on the part, with measured attributes in physical units.
    part_id
        Carried into the result.
    image_size
        ``(width, height)`` of the frame, to place defects without a zone into zones.
    guard
        The measurement's uncertainty per class and attribute: a clause that would hold
        within it sends the defect to REVIEW where the reading alone would accept it.
        ``None``: the readings are taken as exact.

    Returns
    -------
    InspectionResult
        Verdict, worst severity and action, one decision per defect, and the standard's
        id and content version.
    """
    zones = [assign_zone(standard, d, image_size) for d in defects]
    counts = class_counts(defects, zones)
    per_zone = Counter((d.defect_class, z) for d, z in zip(defects, zones, strict=True))
    decisions = tuple(
        decide_defect(
            standard,
            d,
            z,
            count,
            total,
            zone_counts=_unplaced_counts(standard, d.defect_class, per_zone) if z is None else None,
            guard=guard,
        )
        for d, z, (count, total) in zip(defects, zones, counts, strict=True)
    )
    return summarise(standard, decisions, part_id)


def _unplaced_counts(
    standard: Standard, defect_class: str, per_zone: Counter[tuple[str, str | None]]
) -> dict[str, int]:
    # A defect of unknown zone, if it were in zone Z, counts with the class's defects
    # known to be in Z and every defect of the class whose zone is unknown (itself
    # included): they could all be there, and the standards' count limits are minimums.
    unplaced = per_zone[(defect_class, None)]
    return {z.id: per_zone[(defect_class, z.id)] + unplaced for z in standard.zones}


def class_counts(defects: Sequence[Defect], zones: Sequence[str | None]) -> list[tuple[int, int]]:
    """Per defect, ``(count, total_count)``: defects of its class in its zone, on the part."""
    per_zone = Counter((d.defect_class, z) for d, z in zip(defects, zones, strict=True))
    per_part = Counter(d.defect_class for d in defects)
    return [
        (per_zone[(d.defect_class, z)], per_part[d.defect_class])
        for d, z in zip(defects, zones, strict=True)
    ]


def summarise(
    standard: Standard, decisions: tuple[DefectDecision, ...], part_id: str
) -> InspectionResult:
    """The part's verdict from its per-defect decisions: the worst action governs."""
    action = max((d.action for d in decisions), key=lambda a: a.rank, default=Action.ACCEPT)
    severities = [d.severity for d in decisions if d.severity is not None]
    severity = max(severities, key=lambda s: s.rank, default=None)
    reasons = tuple(d.reason for d in decisions) or ("no defects found",)
    return InspectionResult(
        part_id=part_id,
        verdict=action.verdict,
        severity=severity,
        action=action,
        decisions=decisions,
        reasons=reasons,
        standard_id=standard.id,
        standard_version=standard.version,
    )


def decide_defect(
    standard: Standard,
    defect: Defect,
    zone: str | None,
    count: int = 1,
    total: int = 1,
    zone_counts: Mapping[str, int] | None = None,
    guard: GuardBand | None = None,
) -> DefectDecision:
    """Apply the standard's clauses to one defect.

    Parameters
    ----------
    standard
        The product's validated standard.
    defect
        The defect; every attribute must be a finite number >= 0, else REVIEW.
    zone
        Its zone. A zone the standard does not declare gives REVIEW. ``None`` (unknown)
        decides the defect in every declared zone: the decision stands when every zone
        gives the same action, the strictest stands when every zone rejects (rework or
        scrap), and the zones' disagreement is REVIEW otherwise.
    count, total
        Defects of its class in its zone, and on the part (the ``count`` and
        ``total_count`` attributes of conditions).
    zone_counts
        For a defect of unknown zone: its ``count`` if it were in each zone (a zone not
        listed, or no mapping, uses ``count``).
    guard
        The measurement's uncertainty (see :func:`apply_standard`).
    """
    if defect.defect_class not in standard.class_ids:
        return _review(
            defect,
            zone,
            f"{defect.defect_class}: class not covered by standard {standard.id}; needs review",
        )
    invalid = _invalid_attributes(defect.attributes)
    if invalid:
        listed = ", ".join(f"{name}={_value_text(value)}" for name, value in invalid)
        return _review(
            defect,
            zone,
            f"{defect.defect_class}: {listed}: not a valid measurement (must be a finite "
            "number >= 0); needs review",
        )
    if zone is None and standard.zones:
        return _decide_unplaced(standard, defect, count, total, zone_counts or {}, guard)
    if zone is None:  # a standard built in code without zones: its clauses cover the part
        return _decide_in_zone(standard, defect, zone, count, total, guard)
    if zone not in _zone_ids(standard):
        return _review(
            defect,
            zone,
            f"{defect.defect_class}: zone {zone!r} is not a zone of standard {standard.id} "
            f"(zones: {', '.join(_zone_ids(standard))}); needs review",
        )
    return _decide_in_zone(standard, defect, zone, count, total, guard)


def _decide_in_zone(
    standard: Standard,
    defect: Defect,
    zone: str | None,
    count: int,
    total: int,
    guard: GuardBand | None = None,
) -> DefectDecision:
    """The clauses of ``zone`` applied to a defect whose attributes are all valid."""
    measured = {**defect.attributes, "count": float(count), "total_count": float(total)}
    applicable: list[Clause] = []
    measurable: list[Clause] = []  # every attribute it names measured
    undecidable: list[tuple[Clause, list[str]]] = []
    banded: list[Clause] = []  # hold for a true value within the guard band, not the reading
    for clause in ranked_clauses(standard, defect.defect_class, zone):  # strictest first
        missing = [c.attribute for c in clause.when if c.attribute not in measured]
        if missing:
            undecidable.append((clause, missing))
            continue
        measurable.append(clause)
        if all(c.holds(float(measured[c.attribute])) for c in clause.when):
            applicable.append(clause)
        elif guard is not None and _holds_within(clause, measured, guard):
            banded.append(clause)
    best = max((c.action.rank for c in applicable), default=Action.ACCEPT.rank)
    # A clause we cannot evaluate only matters if it could make the outcome stricter.
    stricter = [(c, m) for c, m in undecidable if c.action.rank > best]
    rejected = bool(applicable) and applicable[0].action.verdict is Verdict.REJECT
    if stricter and not rejected:
        # Nothing that holds rejects, so the unmeasured value may decide PASS or REJECT.
        clause, missing = stricter[0]  # the strictest of them
        why = f"clause {clause.id} needs {', '.join(missing)}, which was not measured"
        return _left_to_review(defect, zone, clause, why)
    within = [c for c in banded if c.action.rank > best]
    if within and not rejected and guard is not None:
        clause = within[0]  # the strictest the reading cannot rule out
        why = _unproven(clause, measured, guard, "conformance")
        return _left_to_review(defect, zone, clause, why)
    proving = rejected and guard is not None and guard.proves_rejection(defect.defect_class)
    if proving and not _rejected_throughout(measurable, measured, guard):  # it may pass
        clause = applicable[0]
        why = _unproven(clause, measured, guard, "nonconformance")
        return _left_to_review(defect, zone, clause, why)
    if not applicable:
        return DefectDecision(
            defect,
            zone,
            None,
            Action.ACCEPT,
            None,
            f"{defect.defect_class} in zone {zone}: within tolerance ({_describe(measured)})",
        )
    governing = applicable[0]
    conditions = " and ".join(str(c) for c in governing.when) or "any size"
    return DefectDecision(
        defect,
        zone,
        governing.severity,
        governing.action,
        governing.id,
        f"{defect.defect_class} in zone {zone}: {conditions} ({_describe(measured)}) "
        f"-> clause {governing.id}: {governing.severity}, {governing.action}"
        + _left_open(stricter),
    )


def _left_to_review(defect: Defect, zone: str | None, clause: Clause, why: str) -> DefectDecision:
    """REVIEW for a defect a stricter ``clause`` may govern, for the reason ``why``."""
    return DefectDecision(
        defect,
        zone,
        clause.severity,
        Action.REVIEW,
        clause.id,
        f"{defect.defect_class} in zone {zone}: {why}; needs review",
    )


def _unproven(clause: Clause, measured: Mapping[str, float], guard: GuardBand, what: str) -> str:
    """Why a reading within its uncertainty of ``clause``'s limit proves nothing: ``what``
    is ``conformance`` or ``nonconformance``."""
    return (
        f"{_band_text(clause, measured, guard)} lies within the measurement's uncertainty of "
        f"clause {clause.id}'s limit ({' and '.join(str(c) for c in clause.when)}): "
        f"{what} not proven"
    )


def _holds_within(clause: Clause, measured: Mapping[str, float], guard: GuardBand) -> bool:
    """Whether every condition of ``clause`` holds for some true value within the guard
    band of its reading."""
    readings = [(c, float(measured[c.attribute])) for c in clause.when]
    return all(
        c.holds_within(reading, *_margins(guard, clause.defect, c.attribute, reading))
        for c, reading in readings
    )


def _rejected_throughout(
    clauses: Sequence[Clause], measured: Mapping[str, float], guard: GuardBand
) -> bool:
    """Whether some rejecting clause of ``clauses`` (all of one class, every attribute
    they name measured) holds for every true value within the guard band of the readings:
    nonconformance proven, by one clause or by several whose ranges join (a scratch read
    5.2 mm ±0.5 is reworked or scrapped, whichever it is).

    Conditions are thresholds, so which clauses hold changes only at their limits: the
    band's ends and each limit inside it, with the values just either side of it, test
    every true value the band holds.
    """
    rejecting = [c for c in clauses if c.action.verdict is Verdict.REJECT]
    names = sorted({c.attribute for clause in rejecting for c in clause.when})
    axes = [_values_to_test(name, rejecting, measured, guard) for name in names]
    return all(
        any(all(c.holds(true[c.attribute]) for c in clause.when) for clause in rejecting)
        for true in (dict(zip(names, values, strict=True)) for values in product(*axes))
    )


def _values_to_test(
    name: str, clauses: Sequence[Clause], measured: Mapping[str, float], guard: GuardBand
) -> list[float]:
    """The true values of attribute ``name`` within its band at which the ``clauses``
    that name it can change: the band's ends, and each limit inside it and either side."""
    reading = float(measured[name])
    low, high = true_range(reading, *_margins(guard, clauses[0].defect, name, reading))
    limits = (c.value for clause in clauses for c in clause.when if c.attribute == name)
    near = (
        v
        for limit in limits
        for v in (math.nextafter(limit, -math.inf), limit, math.nextafter(limit, math.inf))
    )
    return sorted({low, high, *(v for v in near if low <= v <= high)})


def _margins(guard: GuardBand, defect: str, attribute: str, reading: float) -> tuple[float, float]:
    """How far the truth may lie above and under a reading."""
    return guard.margin(defect, attribute, reading), guard.margin_below(defect, attribute, reading)


def _band_text(clause: Clause, measured: Mapping[str, float], guard: GuardBand) -> str:
    """The readings a clause names, each with its band (``width_mm=0.466 ±0.058``, or
    ``area_mm2=4.5 +0.6/−2.1`` where the two sides differ)."""
    names = dict.fromkeys(c.attribute for c in clause.when)  # once each, in order
    return ", ".join(
        f"{name}={value:.3g}" + _uncertainty_text(*_margins(guard, clause.defect, name, value))
        for name, value in ((name, float(measured[name])) for name in names)
    )


def _uncertainty_text(above: float, below: float) -> str:
    above_text, below_text = f"{above:.2g}", f"{below:.2g}"
    if above_text == below_text:
        return f" ±{above_text}" if above > 0 else ""
    return f" +{above_text}/−{below_text}"


def _left_open(stricter: list[tuple[Clause, list[str]]]) -> str:
    """A rejecting clause holds, so the part is rejected whatever the unmeasured values:
    the stricter clause they leave open only changes the disposition, said in the reason."""
    if not stricter:
        return ""
    clause, missing = stricter[0]
    return (
        f"; clause {clause.id} ({clause.severity}, {clause.action}) needs "
        f"{', '.join(missing)}, which was not measured: {clause.action} if it holds"
    )


def _decide_unplaced(
    standard: Standard,
    defect: Defect,
    count: int,
    total: int,
    zone_counts: Mapping[str, int],
    guard: GuardBand | None = None,
) -> DefectDecision:
    """A defect of unknown zone, decided in every zone of the standard."""
    outcomes = [
        _decide_in_zone(standard, defect, z, zone_counts.get(z, count), total, guard)
        for z in _zone_ids(standard)
    ]
    # The strictest outcome: by action, then severity; the first zone on a tie.
    strictest = max(outcomes, key=lambda d: (d.action.rank, _severity_rank(d)))
    actions = {d.action for d in outcomes}
    per_zone = ", ".join(
        f"{d.zone}: {d.action}" + (f" by {d.clause_id}" if d.clause_id else "") for d in outcomes
    )
    if len(actions) == 1:
        reason = (
            f"{defect.defect_class}, zone unknown: every zone of standard {standard.id} "
            f"gives {strictest.action} ({per_zone}); {strictest.reason}"
        )
    elif all(a.verdict is Verdict.REJECT for a in actions):
        reason = (
            f"{defect.defect_class}, zone unknown: every zone of standard {standard.id} "
            f"rejects ({per_zone}), the strictest stands; {strictest.reason}"
        )
    else:
        return DefectDecision(
            defect,
            None,
            strictest.severity,
            Action.REVIEW,
            strictest.clause_id,
            f"{defect.defect_class}, zone unknown: the zones of standard {standard.id} "
            f"disagree ({per_zone}); needs review",
        )
    return DefectDecision(
        defect, None, strictest.severity, strictest.action, strictest.clause_id, reason
    )


def _review(defect: Defect, zone: str | None, reason: str) -> DefectDecision:
    return DefectDecision(defect, zone, None, Action.REVIEW, None, reason)


def _invalid_attributes(attributes: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The attributes that are not a measurement: not a number, NaN, infinite or < 0."""
    return [(name, value) for name, value in attributes.items() if not _is_measurement(value)]


def _is_measurement(value: Any) -> bool:
    if isinstance(value, str | bytes):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number >= 0


def _value_text(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{float(value):g}"  # nan, inf, -1 as typed (numpy's repr adds its type)
    return repr(value)


def _zone_ids(standard: Standard) -> tuple[str, ...]:
    return tuple(z.id for z in standard.zones)


def _severity_rank(decision: DefectDecision) -> int:
    return decision.severity.rank if decision.severity is not None else -1


def candidate_clauses(standard: Standard, defect_class: str, zone: str | None) -> list[Clause]:
    """The clauses that cover ``defect_class`` in ``zone``, in the standard's order."""
    return [
        c
        for c in standard.clauses
        if c.defect == defect_class and (c.zones is None or zone in c.zones)
    ]


def ranked_clauses(standard: Standard, defect_class: str, zone: str | None) -> list[Clause]:
    """The clauses that cover ``defect_class`` in ``zone``, strictest first: by action,
    then severity, then the standard's order. The first that applies governs."""
    clauses = candidate_clauses(standard, defect_class, zone)
    order = {id(c): i for i, c in enumerate(clauses)}
    return sorted(clauses, key=lambda c: (-c.action.rank, -c.severity.rank, order[id(c)]))


def _describe(measured: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in measured.items() if k not in ("total_count",))
