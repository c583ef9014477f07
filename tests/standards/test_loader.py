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


# --- bounds: size, nesting, aliases (issue 19) ---


def test_standard_over_the_size_cap_is_refused_before_parsing(tmp_path, monkeypatch):
    import inspection.standards.loader as loader

    path = tmp_path / "big.yaml"
    path.write_text(VALID + "# padding\n" * 200, encoding="utf-8")
    size = path.stat().st_size
    monkeypatch.setattr(loader, "MAX_STANDARD_BYTES", size - 1)
    parsed = []
    monkeypatch.setattr(loader, "_read_yaml", lambda *a: parsed.append(a))  # must not run
    with pytest.raises(StandardError) as info:
        load_standard(path)
    message = str(info.value)
    assert (
        "big.yaml" in message
        and f"{size:,} bytes" in message
        and f"{size - 1:,} bytes a standard" in message
    )
    with pytest.raises(StandardError, match="larger than"):
        parse_standard(path.read_text(encoding="utf-8"))
    assert parsed == []


def test_the_real_cap_is_256_kib_and_shipped_standards_are_far_below():
    from inspection.standards import MAX_STANDARD_BYTES

    assert MAX_STANDARD_BYTES == 256 * 1024
    assert all(p.stat().st_size < MAX_STANDARD_BYTES // 16 for p in SHIPPED)
    with pytest.raises(StandardError, match="256 KiB"):
        parse_standard(VALID + "#" * MAX_STANDARD_BYTES)


def _laughs(levels: int, width: int = 9) -> str:
    lines = ["a0: &a0 lol"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("field", ["attributes", "zones", "title"])
def test_billion_laughs_is_refused_without_expanding(field):
    # 9**30 nodes if expanded; the check measures each node once.
    text = _laughs(30) + VALID.replace(f"{field}:", f"{field}: *a30\nunused_{field}:", 1)
    with pytest.raises(StandardError, match="expands to more than 100,000 YAML nodes"):
        parse_standard(text)


def test_aliases_within_bounds_still_work():
    text = VALID.replace("text: {en: too long, zh: 太长}", "text: &t {en: too long, zh: 太长}")
    text += text[text.index('  - id: "1.1"') :].replace('"1.1"', '"1.2"').replace("&t {", "*t #")
    standard = parse_standard(text)
    assert [c.text.en for c in standard.clauses] == ["too long", "too long"]


@pytest.mark.parametrize(
    "extra",
    [
        "attributes: &r [*r]",
        "attributes: &r [x, [y, *r]]",
        "colour: &r {k: *r}",
    ],
)
def test_recursive_alias_is_refused(extra):
    with pytest.raises(StandardError, match="an alias refers to a node that contains it"):
        parse_standard(VALID + extra + "\n")


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 5000 + "]" * 5000,  # before: RecursionError
        "[" * 40 + "]" * 40,
        "".join(f"\n{'  ' * i}- " for i in range(40)) + "x",  # block style
    ],
)
def test_deep_nesting_is_refused(nested):
    with pytest.raises(StandardError, match="nested deeper than 32 levels"):
        parse_standard(VALID + "attributes: " + nested + "\n")


def test_deep_nesting_through_aliases_is_refused():
    # Each alias adds a level without adding text nesting.
    lines = ["b0: &b0 [x]"] + [f"b{i}: &b{i} [*b{i - 1}]" for i in range(1, 40)]
    with pytest.raises(StandardError, match="nested deeper than 32 levels"):
        parse_standard("\n".join(lines) + "\n" + VALID)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("revision: A", "revision: " + "9" * 5000), "invalid value"),  # before: ValueError
        (("revision: A", "revision: A\neffective: 2026-13-45"), "invalid value"),
    ],
)
def test_values_python_cannot_hold_are_standard_errors(edit, message):
    with pytest.raises(StandardError, match=message):
        parse_standard(VALID.replace(*edit))


def test_problems_are_capped_and_counted():
    from inspection.standards.loader import MAX_PROBLEMS

    many = "attributes: [" + ", ".join(["[x]"] * 5000) + "]\n"
    with pytest.raises(StandardError) as info:
        parse_standard(VALID + many)
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].message == f"... and {5000 - MAX_PROBLEMS} more"
