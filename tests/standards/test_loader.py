"""Loading standards: the shipped examples, versions, and malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import STANDARDS_DIR

from inspection.standards import StandardError, load_standard, parse_standard

SHIPPED = sorted(STANDARDS_DIR.glob("*.yaml"))

VALID = """\
id: T-1
title: {en: Test, zh: 测试}
product: widget
revision: A
zones:
  - id: A
    name: {en: face, zh: 面}
    region: [0.1, 0.1, 0.9, 0.9]
defect_classes:
  - {id: scratch, name: {en: scratch, zh: 划痕}}
clauses:
  - id: "1.1"
    defect: scratch
    zones: [A]
    when: ["length_mm > 5"]
    severity: major
    action: rework
    text: {en: too long, zh: 太长}
"""


def test_at_least_three_shipped_standards_for_different_products():
    standards = [load_standard(p) for p in SHIPPED]
    assert len(standards) >= 3
    assert len({s.product for s in standards}) == len(standards)
    assert len({s.version for s in standards}) == len(standards)
    # Different limits: the scratch thresholds differ between products.
    limits = {
        s.product: sorted(c.value for cl in s.clauses if cl.defect == "scratch" for c in cl.when)
        for s in standards
    }
    assert len({tuple(v) for v in limits.values()}) == len(limits)


def test_version_is_content_hash_ignoring_comments_and_layout():
    base = parse_standard(VALID)
    commented = parse_standard("# a comment\n" + VALID.replace("zh: 面}", "zh: 面}   # face"))
    changed = parse_standard(VALID.replace("length_mm > 5", "length_mm > 6"))
    assert base.version == commented.version
    assert base.version != changed.version
    assert len(base.version) == 12


def _problem(text: str, tmp_path: Path) -> StandardError:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StandardError) as info:
        load_standard(path)
    return info.value


# (edit to VALID, expected line, expected field fragment, expected message fragment)
MALFORMED = [
    (("length_mm > 5", "lenght_mm > 5"), 15, "clauses[0].when[0]", "unknown attribute 'lenght_mm'"),
    (("length_mm > 5", "length_mm >> 5"), 15, "clauses[0].when[0]", "cannot parse condition"),
    (("severity: major", "severity: huge"), 16, "clauses[0].severity", "minor"),
    (("action: rework", "action: bin"), 17, "clauses[0].action", "accept"),
    (("zones: [A]", "zones: [Z]"), 14, "clauses[0].zones[0]", "unknown zone 'Z'"),
    (("defect: scratch", "defect: scuff"), 13, "clauses[0].defect", "unknown defect class"),
    (("[0.1, 0.1, 0.9, 0.9]", "[0.9, 0.1, 0.1, 0.9]"), 8, "zones[0].region", "x0 < x1"),
    (("    severity: major\n", ""), 12, "clauses[0].severity", "required field is missing"),
    (("revision: A", "revision: A\ncolour: red"), 5, "colour", "unknown field"),
]


@pytest.mark.parametrize(("edit", "line", "field", "message"), MALFORMED)
def test_malformed_standard_names_file_line_and_field(tmp_path, edit, line, field, message):
    error = _problem(VALID.replace(*edit), tmp_path)
    (problem,) = error.problems
    assert problem.source.endswith("broken.yaml")
    assert problem.line == line
    assert field in problem.field
    assert message in problem.message
    assert f"broken.yaml:{line}: " in str(error)


def test_invalid_yaml_syntax_names_line(tmp_path):
    error = _problem(VALID.replace("product: widget", "product: [widget"), tmp_path)
    assert error.problems[0].line is not None and error.problems[0].line >= 4
    assert "invalid YAML" in str(error)


def test_duplicate_clause_id_is_reported(tmp_path):
    clause = VALID[VALID.index('  - id: "1.1"') :]
    error = _problem(VALID + clause, tmp_path)
    assert any("duplicate id '1.1'" in p.message and p.line == 19 for p in error.problems)


def test_every_problem_is_reported_at_once(tmp_path):
    text = VALID.replace("lenght_mm", "x").replace("severity: major", "severity: huge")
    text = text.replace("zones: [A]", "zones: [Q]")
    error = _problem(text, tmp_path)
    assert len(error.problems) >= 1
    assert all(p.line for p in error.problems)


def test_not_a_mapping_and_missing_file(tmp_path):
    assert "mapping" in str(_problem("- just\n- a list\n", tmp_path))
    with pytest.raises(StandardError, match="cannot read"):
        load_standard(tmp_path / "absent.yaml")


def test_custom_attribute_must_be_declared():
    with pytest.raises(StandardError, match="unknown attribute 'gloss'"):
        parse_standard(VALID.replace("length_mm > 5", "gloss < 80"))
    declared = VALID.replace("revision: A", "revision: A\nattributes: [gloss]")
    standard = parse_standard(declared.replace("length_mm > 5", "gloss < 80"))
    assert standard.clauses[0].when[0].attribute == "gloss"


def test_empty_clause_list_is_an_error(tmp_path):
    text = VALID[: VALID.index('  - id: "1.1"')].replace("clauses:", "clauses: []")
    error = _problem(text, tmp_path)
    assert error.problems[0].field == "clauses"
    assert "at least one" in error.problems[0].message
