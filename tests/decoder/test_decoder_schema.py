"""Report schema per standard, target reports from the rule engine, generated standards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from inspection.decoder.corpus import generate_examples, generate_standard, make_example
from inspection.decoder.schema import (
    MAX_DEFECTS,
    SUMMARY_MAX_CHARS,
    max_report_bytes,
    parse_report,
    report_json_schema,
    report_model,
    report_text,
    summarise,
    target_report,
)
from inspection.standards import apply_standard, render_standard
from inspection.types import Defect, Verdict


def _enum(schema: dict, field: str) -> list[str]:
    prop = schema["$defs"]["ReportDefect"]["properties"][field]
    options = prop.get("anyOf", [prop])
    return next(o["enum"] for o in options if "enum" in o)


def test_schema_allows_only_the_standards_ids(bracket_standard, panel_standard):
    schema = report_json_schema(bracket_standard, "zh", 2)
    assert _enum(schema, "defect_class") == list(bracket_standard.class_ids)
    assert _enum(schema, "clause_id") == list(bracket_standard.clause_ids)
    assert _enum(schema, "zone") == [z.id for z in bracket_standard.zones]
    assert schema["properties"]["language"]["const"] == "zh"
    assert schema["properties"]["defects"]["minItems"] == 2
    assert set(_enum(report_json_schema(panel_standard), "clause_id")).isdisjoint(
        bracket_standard.clause_ids
    )


@pytest.mark.parametrize("language", ["en", "zh"])
def test_target_report_round_trips(bracket_standard, language):
    defects = [
        Defect("scratch", {"length_mm": 6.2, "width_mm": 0.3}, zone="A"),
        Defect("contamination", {"area_mm2": 0.5}, zone="B"),
        Defect("dent", {"length_mm": 1.0}, zone="A"),  # depth not measured: review
    ]
    result = apply_standard(bracket_standard, defects, "p1")
    report = target_report(result, bracket_standard, language)
    text = report_text(report)
    assert json.loads(text)["language"] == language
    parsed = parse_report(text, bracket_standard, "p1", language, n_defects=3)
    assert parsed == report
    assert report.verdict is Verdict.REJECT
    assert [d.clause_id for d in report.defects] == ["4.1.1", None, "4.2.1"]
    assert report.defects[0].size_mm == 6.2
    assert len(text.encode()) <= max_report_bytes(bracket_standard, 3)


def test_parse_refuses_what_the_standard_does_not_define(bracket_standard, panel_standard):
    result = apply_standard(panel_standard, [Defect("scratch", {"length_mm": 5}, zone="A")])
    text = report_text(target_report(result, panel_standard))
    with pytest.raises(ValidationError):  # clause P-3.1 is not in the bracket standard
        parse_report(text, bracket_standard)
    with pytest.raises(ValidationError):
        parse_report(text, panel_standard, n_defects=2)
    with pytest.raises(ValidationError):
        parse_report(text[:-1], panel_standard)


def test_target_report_refuses_unknown_classes(bracket_standard):
    result = apply_standard(bracket_standard, [Defect("burr", {}, zone="A")])
    assert result.verdict is Verdict.REVIEW
    with pytest.raises(ValueError, match="burr"):
        target_report(result, bracket_standard)


def test_summaries_are_short_clean_and_bilingual(bracket_standard):
    empty = apply_standard(bracket_standard, [])
    assert summarise(empty, bracket_standard, "en") == "PASS: no defects found."
    assert summarise(empty, bracket_standard, "zh") == "合格：未发现缺陷。"
    crack = apply_standard(bracket_standard, [Defect("crack", {}, zone="B")])
    zh = summarise(crack, bracket_standard, "zh")
    assert "裂纹" in zh and "4.4.1" in zh and "报废" in zh
    for example in generate_examples(np.random.default_rng(3), 40):
        summary = json.loads(example.target)["summary"]
        assert len(summary) <= SUMMARY_MAX_CHARS and '"' not in summary


def test_generated_standards_are_valid_and_varied():
    rng = np.random.default_rng(0)
    standards = [generate_standard(rng) for _ in range(20)]
    clause_ids = {c for s in standards for c in s.clause_ids}
    assert len(clause_ids) > 40 and len({s.zones[0].id for s in standards}) > 1
    for standard in standards[:5]:
        for language in ("en", "zh"):
            assert standard.id in render_standard(standard, language)
        example = make_example(standard, [Defect(standard.class_ids[0], {"length_mm": 3})])
        assert parse_report(example.target, standard, n_defects=1).verdict is (
            example.result.verdict
        )


def _crowded_part() -> list[Defect]:
    """24 defects on a bracket, more than a report holds (``MAX_DEFECTS`` = 16): 2 scrap,
    15 rework (12 scratches, 3 contaminations: clause 4.5.2, ``count >= 3``), 7 accepted."""
    accept = Defect("scratch", {"length_mm": 1.0}, zone="A")
    rework = Defect("scratch", {"length_mm": 3.0}, zone="A")  # 4.1.2
    scrap = Defect("scratch", {"length_mm": 6.0}, zone="A")  # 4.1.1
    dirt = Defect("contamination", {"area_mm2": 0.1}, zone="A")  # 4.5.2 on the count
    return (
        [accept] * 4
        + [scrap]
        + [rework] * 6
        + [dirt]
        + [accept] * 3
        + [rework] * 6
        + [scrap]
        + [dirt] * 2
    )


def test_a_part_with_more_defects_than_a_report_holds_gets_the_worst(bracket_standard):
    result = apply_standard(bracket_standard, _crowded_part(), "p24")
    assert len(result.decisions) == 24 > MAX_DEFECTS
    report = target_report(result, bracket_standard)  # used to raise: n_defects in 0..16
    listed = [4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 17, 18, 19, 20, 21, 22]  # by the rules' rank
    assert len(report.defects) == MAX_DEFECTS and report.omitted_defects == 8
    assert [d.clause_id for d in report.defects] == [result.decisions[i].clause_id for i in listed]
    assert all(d.action.value != "accept" for d in report.defects)  # every accept left out
    # The count behind 4.5.2 is the whole part's (3), not the listed defects' (2).
    assert report.defects[7].clause_id == "4.5.2" and "4.5.2 ✓" in report.defects[7].evidence
    assert report.verdict is Verdict.REJECT and "24 defect(s)" in report.summary
    text = report_text(report)
    assert json.loads(text)["omitted_defects"] == 8
    assert len(text.encode()) <= max_report_bytes(bracket_standard, 24)
    assert parse_report(text, bracket_standard, "p24", "en", n_defects=24) == report
    schema = report_model(bracket_standard, "en", 24).model_json_schema()
    assert schema["properties"]["omitted_defects"]["const"] == 8
    assert list(schema["properties"])[-1] == "omitted_defects"  # after all the decoder writes
    wrong = text.replace('"omitted_defects": 8', '"omitted_defects": 0')
    with pytest.raises(ValidationError):  # the count of the rest is pinned
        parse_report(wrong, bracket_standard, "p24", "en", n_defects=24)


def test_a_report_that_fits_has_no_omitted_field(bracket_standard):
    result = apply_standard(bracket_standard, _crowded_part()[:MAX_DEFECTS], "p16")
    text = report_text(target_report(result, bracket_standard))
    assert "omitted_defects" not in text  # what the shipped decoder was trained on
    assert "omitted_defects" not in report_model(bracket_standard, "en", 16).model_fields
    with pytest.raises(ValidationError):
        parse_report(text[:-1] + ', "omitted_defects": 0}', bracket_standard, n_defects=16)
