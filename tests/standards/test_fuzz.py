"""Property tests: malformed standards and defects files give a UserError or REVIEW, never
a traceback and never a PASS. A few hundred examples each, derandomised; the long run
is ``benchmarks/fuzz.py``."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is in the dev extra")

from conftest import STANDARDS_DIR, fuzz_settings  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from inspection.errors import UserError  # noqa: E402
from inspection.standards import (  # noqa: E402
    DefectsError,
    StandardError,
    apply_standard,
    load_standard,
    parse_defects,
    parse_standard,
)
from inspection.standards.defects import IGNORED_KEYS  # noqa: E402
from inspection.types import Defect, Verdict  # noqa: E402

FUZZ = fuzz_settings()

SHIPPED_TEXT = (STANDARDS_DIR / "bracket.yaml").read_text(encoding="utf-8")
BRACKET = load_standard(STANDARDS_DIR / "bracket.yaml")

# Defects every standard must never pass: a measurement that is no measurement.
POISONED = [
    Defect("scratch", {"length_mm": math.nan}, zone="A"),
    Defect("crack", {"depth_mm": -1.0}),
    Defect("dent", {"length_mm": math.inf}, zone="B"),
]

# Pieces a YAML standard is made of, so that mutations stay close to real mistakes.
YAML_PIECES = st.sampled_from(
    [":", " ", "\n", "- ", "[", "]", "{", "}", "&a ", "*a", "'", '"', "#", "  ", "\t", "!!",
     "<<: ", "length_mm > ", "nan", ".inf", "-1", "1e999", "zones: [A]", "id: ", "null",
     "severity: critical", "action: accept", "when: []", "\x00", "\ufeff", "9" * 30]
)  # fmt: skip


@st.composite
def mutated_standard(draw: st.DrawFn) -> str:
    """The shipped bracket standard with a few cuts, insertions and line shuffles."""
    text = SHIPPED_TEXT
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "insert", "replace", "dup_line", "swap_lines"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 40)))
        piece = draw(st.one_of(YAML_PIECES, st.text(max_size=12)))
        if kind == "cut":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + piece + text[j:]
        else:
            lines = text.split("\n")
            a, b = (draw(st.integers(0, len(lines) - 1)) for _ in range(2))
            if kind == "dup_line":
                lines.insert(b, lines[a])
            else:
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


def _parse_or_user_error(text: str):
    try:
        return parse_standard(text, source="fuzz.yaml")
    except StandardError as exc:
        assert str(exc).startswith("fuzz.yaml")  # names the source
        return None


@FUZZ
@given(mutated_standard())
@pytest.mark.slow
def test_mutated_standards_load_or_raise_standard_error(text):
    standard = _parse_or_user_error(text)
    if standard is not None:
        # Whatever the clauses became, a poisoned measurement is never passed.
        for defect in POISONED:
            assert apply_standard(standard, [defect]).verdict is not Verdict.PASS


@FUZZ
@given(st.one_of(st.text(max_size=300), st.lists(YAML_PIECES, max_size=60).map("".join)))
def test_random_text_never_escapes_as_another_exception(text):
    _parse_or_user_error(text)


# --- the --defects reader and the rule engine ---

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 20),  # sizes around the standards' limits
    st.integers(-(10**30), 10**30),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
ATTRIBUTE_NAMES = st.one_of(
    st.sampled_from(["length_mm", "width_mm", "area_mm2", "depth_mm", "delta_e", "count"]),
    st.text(max_size=6),
)


@st.composite
def defect_like(draw: st.DrawFn) -> Any:
    """An object that is usually a defect, sometimes with one field wrong."""

    def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> Any:
        return draw(good if draw(st.integers(0, 9)) else bad)

    item: dict[str, Any] = {}
    if draw(st.integers(0, 19)):
        item["defect_class"] = mostly(st.sampled_from((*BRACKET.class_ids, "burr")), JSON_SCALARS)
    if draw(st.booleans()):
        item["attributes"] = mostly(
            st.dictionaries(ATTRIBUTE_NAMES, NUMBERS, max_size=4), JSON_VALUES
        )
    if draw(st.booleans()):
        item["zone"] = mostly(st.sampled_from(["A", "B", "Q", "", None]), JSON_SCALARS)
    if not draw(st.integers(0, 19)):
        item[draw(st.sampled_from(["zon", "bbox", "score", "extra"]))] = draw(JSON_SCALARS)
    return item if draw(st.integers(0, 19)) else draw(JSON_VALUES)


def well_formed(doc: Any) -> bool:
    """The reader's contract, stated independently: what it must accept."""
    known = {"defect_class", "attributes", "zone", *IGNORED_KEYS}
    return isinstance(doc, list) and all(
        isinstance(d, dict)
        and set(d) <= known
        and isinstance(d.get("defect_class"), str)
        and d["defect_class"] != ""
        and isinstance(d.get("attributes", {}), dict)
        and all(
            isinstance(v, int | float) and not isinstance(v, bool)
            for v in d.get("attributes", {}).values()
        )
        and (d.get("zone") is None or isinstance(d.get("zone"), str))
        for d in doc
    )


def doubtful(defect: Defect) -> bool:
    """A defect the bracket standard cannot pass: unknown class, undeclared zone, or a
    value that is no measurement."""
    return (
        defect.defect_class not in BRACKET.class_ids
        or (defect.zone is not None and defect.zone not in {z.id for z in BRACKET.zones})
        or any(not math.isfinite(v) or v < 0 for v in defect.attributes.values())
    )


def _check_document(text: str, doc: Any) -> None:
    try:
        defects = parse_defects(text, source="fuzz.json")
    except DefectsError as exc:
        assert str(exc).startswith("fuzz.json")
        assert not well_formed(doc), f"refused a well-formed document: {exc}"
        return
    assert well_formed(doc), "accepted a malformed document"
    result = apply_standard(BRACKET, defects)
    if any(doubtful(d) for d in defects):
        assert result.verdict is not Verdict.PASS, result.reasons


@FUZZ
@given(
    st.one_of(st.lists(defect_like(), max_size=2), st.lists(defect_like(), max_size=5), JSON_VALUES)
)
def test_defects_documents_are_read_or_refused_and_never_pass_when_doubtful(doc):
    _check_document(json.dumps(doc), doc)


@FUZZ
@given(st.lists(defect_like(), min_size=1, max_size=3), st.data())
def test_corrupted_defects_text_raises_only_user_errors(doc, data):
    text = json.dumps(doc)
    i = data.draw(st.integers(0, len(text)))
    j = min(len(text), i + data.draw(st.integers(0, 6)))
    text = text[:i] + data.draw(st.text(max_size=4)) + text[j:]
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises(UserError):
            parse_defects(text, source="fuzz.json")
        return
    _check_document(text, parsed)
