"""Defect standards: versioned YAML clauses, validation, the rule engine, prompt text."""

from inspection.standards.defects import DefectsError, parse_defects, read_defects
from inspection.standards.guard import (
    GuardBand,
    GuardBandError,
    load_guard_band,
    measure_guard_band,
)
from inspection.standards.loader import (
    MAX_STANDARD_BYTES,
    Problem,
    StandardError,
    load_standard,
    parse_standard,
)
from inspection.standards.render import render_clause, render_header, render_standard, term
from inspection.standards.rules import (
    apply_standard,
    assign_zone,
    candidate_clauses,
    class_counts,
    decide_defect,
    ranked_clauses,
)
from inspection.standards.schema import (
    MEASURED_ATTRIBUTES,
    Clause,
    Condition,
    DefectClass,
    Standard,
    Text,
    Zone,
)

__all__ = [
    "MAX_STANDARD_BYTES",
    "MEASURED_ATTRIBUTES",
    "Clause",
    "Condition",
    "DefectClass",
    "DefectsError",
    "GuardBand",
    "GuardBandError",
    "Problem",
    "Standard",
    "StandardError",
    "Text",
    "Zone",
    "apply_standard",
    "assign_zone",
    "candidate_clauses",
    "class_counts",
    "decide_defect",
    "load_guard_band",
    "load_standard",
    "measure_guard_band",
    "parse_defects",
    "parse_standard",
    "ranked_clauses",
    "read_defects",
    "render_clause",
    "render_header",
    "render_standard",
    "term",
]
