"""The rule engine: a standard applied to measured defects gives the verdict.

Deterministic and auditable: every defect gets the clause that governs it and a reason
in words. Among the clauses that apply to a defect the one with the most severe action
governs (then the higher severity, then file order). A defect no clause covers is within
tolerance and accepted. Anything the standard cannot decide (a class it does not list,
a condition on an attribute that was not measured) goes to REVIEW, never PASS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from inspection.standards.schema import Clause, Standard
from inspection.types import (
    Action,
    Defect,
    DefectDecision,
    InspectionResult,
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

    Returns
    -------
    InspectionResult
        Verdict, worst severity and action, one decision per defect, and the standard's
        id and content version.
    """
    zones = [assign_zone(standard, d, image_size) for d in defects]
    counts = class_counts(defects, zones)
    decisions = tuple(
        decide_defect(standard, d, z, count, total)
        for d, z, (count, total) in zip(defects, zones, counts, strict=True)
    )
    return summarise(standard, decisions, part_id)


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
    standard: Standard, defect: Defect, zone: str | None, count: int = 1, total: int = 1
) -> DefectDecision:
    """Apply the standard's clauses to one defect."""
    if defect.defect_class not in standard.class_ids:
        return DefectDecision(
            defect,
            zone,
            None,
            Action.REVIEW,
            None,
            f"{defect.defect_class}: class not covered by standard {standard.id}; needs review",
        )
    measured = {**defect.attributes, "count": float(count), "total_count": float(total)}
    applicable: list[Clause] = []
    undecidable: list[tuple[Clause, list[str]]] = []
    for clause in ranked_clauses(standard, defect.defect_class, zone):  # strictest first
        missing = [c.attribute for c in clause.when if c.attribute not in measured]
        if missing:
            undecidable.append((clause, missing))
        elif all(c.holds(float(measured[c.attribute])) for c in clause.when):
            applicable.append(clause)
    best = max((c.action.rank for c in applicable), default=Action.ACCEPT.rank)
    # A clause we cannot evaluate only matters if it could make the outcome stricter.
    stricter = [(c, m) for c, m in undecidable if c.action.rank > best]
    if stricter:
        clause, missing = stricter[0]  # the strictest of them
        return DefectDecision(
            defect,
            zone,
            clause.severity,
            Action.REVIEW,
            clause.id,
            f"{defect.defect_class} in zone {zone}: clause {clause.id} needs "
            f"{', '.join(missing)}, which was not measured; needs review",
        )
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
        f"-> clause {governing.id}: {governing.severity}, {governing.action}",
    )


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
