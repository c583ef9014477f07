"""Cross-check: disagreement sends a part to review; a rules REJECT is never a PASS."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from inspection.decoder.corpus import generate_standard, random_defects
from inspection.decoder.crosscheck import cross_check, final_verdict
from inspection.decoder.schema import target_report
from inspection.standards import apply_standard
from inspection.types import Action, Defect, Severity, Verdict

PASS, REVIEW, REJECT = Verdict.PASS, Verdict.REVIEW, Verdict.REJECT
KINDS = (
    "verdict",
    "severity",
    "clause_id",
    "action",
    "defect_class",
    "defects",
    "standard version",
    "summary",
    "no report",
)


@pytest.mark.parametrize(
    ("rules", "agreed", "final"),
    [
        (PASS, True, PASS),
        (PASS, False, REVIEW),
        (REVIEW, True, REVIEW),
        (REVIEW, False, REVIEW),
        (REJECT, True, REJECT),
        (REJECT, False, REJECT),
    ],
)
def test_final_verdict_table(rules, agreed, final):
    assert final_verdict(rules, agreed) is final


def _parts(standard):
    return {
        PASS: [Defect("scratch", {"length_mm": 1.0}, zone="A")],
        REVIEW: [Defect("dent", {"length_mm": 1.0}, zone="A")],  # depth not measured
        REJECT: [Defect("scratch", {"length_mm": 6.0}, zone="A")],
    }


def _stubs(report):
    """Reports that each disagree with ``report`` in one way."""
    d = report.defects[0]

    def one(**change):
        return replace(report, defects=(replace(d, **change),))

    other_verdict = PASS if report.verdict is not PASS else REJECT
    summary_tail = "1 defect(s); worst: crack in zone A, critical, scrap (clause 4.5.1)."
    return {
        "verdict": replace(report, verdict=other_verdict),
        "severity": one(severity=Severity.MINOR if d.severity is not Severity.MINOR else None),
        "clause_id": one(clause_id="4.5.1"),
        "action": one(action=Action.SCRAP if d.action is not Action.SCRAP else Action.ACCEPT),
        "defect_class": one(defect_class="crack"),
        "defects": replace(report, defects=()),
        "standard version": replace(report, standard_version="0123456789ab"),
        # every field right, but the summary names another worst defect's clause
        "summary": replace(report, summary=f"{report.verdict.value}: {summary_tail}"),
        "no report": None,
    }


@pytest.mark.parametrize("rules", [PASS, REVIEW, REJECT])
def test_agreeing_report_keeps_the_rules_verdict(bracket_standard, rules):
    result = apply_standard(bracket_standard, _parts(bracket_standard)[rules], "p")
    assert result.verdict is rules
    check = cross_check(result, target_report(result, bracket_standard, "zh"))
    assert check.agreed and check.final_verdict is rules and check.disagreements == ()


@pytest.mark.parametrize(("rules", "kind"), list(itertools.product([PASS, REVIEW, REJECT], KINDS)))
def test_disagreeing_report(bracket_standard, rules, kind):
    result = apply_standard(bracket_standard, _parts(bracket_standard)[rules], "p")
    stub = _stubs(target_report(result, bracket_standard))[kind]
    check = cross_check(result, stub)
    assert not check.agreed
    assert check.final_verdict is (REJECT if rules is REJECT else REVIEW)
    assert check.needs_review and check.rule_result is result and check.report is stub
    assert any(kind in line for line in check.disagreements), check.disagreements


def test_a_reports_fields_give_the_rules_summary_random_parts():
    """The line composes a report's summary from its fields: where they agree with the
    rules it is the rules' own summary, word for word, in both languages, past the
    defects a report holds too (omitted ones counted)."""
    from inspection.decoder.schema import summarise, summarise_report

    rng = np.random.default_rng(3)
    for i in range(80):
        standard = generate_standard(rng)
        result = apply_standard(standard, random_defects(rng, standard, 24 if i % 10 else 3))
        for language in ("en", "zh"):
            report = target_report(result, standard, language)
            assert summarise_report(report, standard) == summarise(result, standard, language)
            assert cross_check(result, report).agreed


def test_never_pass_on_a_rules_reject_random_parts():
    rng = np.random.default_rng(0)
    for _ in range(60):
        standard = generate_standard(rng)
        result = apply_standard(standard, random_defects(rng, standard, 3))
        report = target_report(result, standard)
        liar = replace(
            report,
            verdict=PASS,
            defects=tuple(
                replace(d, action=Action.ACCEPT, severity=None, clause_id=None)
                for d in report.defects
            ),
        )
        for candidate in (report, liar, None):
            final = cross_check(result, candidate).final_verdict
            if result.verdict is REJECT:
                assert final is REJECT
            if final is PASS:
                assert result.verdict is PASS and cross_check(result, candidate).agreed


@pytest.mark.parametrize(("rules", "final"), [(PASS, REVIEW), (REJECT, REJECT)])
def test_a_report_of_the_worst_16_of_24_defects_sends_the_part_to_review(
    bracket_standard, rules, final
):
    defects = [Defect("scratch", {"length_mm": 1.0}, zone="A")] * 24
    if rules is REJECT:
        defects[20] = Defect("scratch", {"length_mm": 6.0}, zone="A")
    result = apply_standard(bracket_standard, defects, "p")
    assert result.verdict is rules
    report = target_report(result, bracket_standard)  # the decoder at its best
    check = cross_check(result, report)
    assert check.final_verdict is final and check.needs_review and not check.agreed
    assert check.disagreements == (
        "defects: 24 found, more than a report holds; it lists the worst 16 and not the other 8",
    )
    if rules is REJECT:
        assert report.defects[-1].clause_id == "4.1.1"  # the scrap is among those listed
    wrong = cross_check(result, replace(report, omitted_defects=0))
    assert "omitted defects: report 0, rules 8" in wrong.disagreements


# -- answers (inspection ask) -------------------------------------------------------


def _answer_check(standard, rules, answer):
    from inspection.decoder.crosscheck import check_answer

    result = apply_standard(standard, _parts(standard)[rules], "p")
    return check_answer(answer, result, standard.clause_ids)


@pytest.mark.parametrize(
    ("rules", "answer", "expected"),
    [
        (REJECT, "PASS: no defects found.", "verdict: answer PASS, rules REJECT"),
        (REJECT, "合格：未发现缺陷。", "verdict: answer PASS, rules REJECT"),
        (PASS, "不合格：1 处缺陷。", "verdict: answer REJECT, rules PASS"),
        (REVIEW, "PASS: 1 defect(s), all within tolerance.", "verdict: answer PASS, rules REVIEW"),
        (REJECT, "3 defect(s).", "defects: answer 3, rules 1"),
        (REJECT, "Defect 1 (scratch, zone A): no clause applies; accept.", "defect 1 clause_id"),
        (REJECT, "Defect 1 (scratch, zone A): clause 4.1.2, major, rework.", "clause 4.1.2"),
        (PASS, "缺陷 1（划痕，区域 A）：条款 4.1.1，严重，报废。", "clause 4.1.1"),
        (REJECT, "Defect 2 (scratch, zone A): clause 4.1.1.", "defect 2: the rules list 1"),
    ],
)
def test_an_answer_that_contradicts_the_rules_is_caught(bracket_standard, rules, answer, expected):
    found = _answer_check(bracket_standard, rules, answer)
    assert any(expected in line for line in found), found


@pytest.mark.parametrize(
    ("rules", "answer"),
    [
        (REJECT, "REJECT: 1 defect(s); worst: scratch in zone A, critical, scrap (clause 4.1.1)."),
        (REJECT, "不合格：1 处缺陷；最严重：区域 A 的划痕，严重，报废（条款 4.1.1）。"),
        (REJECT, "Defect 1 (scratch, zone A): clause 4.1.1, critical, scrap."),
        (PASS, "Defect 1 (scratch, zone A): no clause applies; accept."),
        (PASS, "Defect 1: scratch, 1.00 mm."),  # states nothing the rules decide
        (REVIEW, "待复检：1 处缺陷；最严重：区域 A 的凹点，严重，复检（条款 4.2.1）。"),
        (PASS, "The scratch is short."),
    ],
)
def test_an_answer_that_agrees_or_states_no_verdict_passes(bracket_standard, rules, answer):
    assert _answer_check(bracket_standard, rules, answer) == ()


def test_a_clause_id_is_matched_whole(bracket_standard):
    from inspection.decoder.crosscheck import _clauses_in

    ids = ("4.1", "4.1.1", "T1")
    assert _clauses_in("clause 4.1.1.", ids) == ["4.1.1"]
    assert _clauses_in("clause 4.1, then T10", ids) == ["4.1"]


def test_the_rules_verdict_is_what_a_disagreeing_answer_says(bracket_standard):
    from inspection.decoder.crosscheck import rules_say

    result = apply_standard(bracket_standard, _parts(bracket_standard)[REJECT], "p")
    said = rules_say(result, "PASS: no defects found.", "en")
    assert said == (
        "the rules say REJECT (clause 4.1.1); the decoder's answer disagreed: "
        "PASS: no defects found."
    )
    assert rules_say(result, "合格。", "zh").startswith("规则判定为不合格（条款 4.1.1）")


def test_a_disagreeing_answer_about_one_defect_says_what_the_rules_say_of_it(bracket_standard):
    """Asked which clause applies to a dent, the decoder named the part's deciding one:
    the corrected answer gave the verdict's clause alone, as if it were the dent's."""
    from inspection.decoder.crosscheck import check_answer, rules_say
    from inspection.decoder.prompt import listed_indices

    defects = [
        Defect("scratch", {"length_mm": 6.0}, zone="A"),  # 4.1.1, scrap: the verdict's
        Defect("dent", {"length_mm": 2.0, "depth_mm": 0.1}, zone="A"),  # 4.2.2, rework
        Defect("scratch", {"length_mm": 1.0}, zone="A"),  # no clause
    ]
    result = apply_standard(bracket_standard, defects, "p")
    listed = [result.decisions[k] for k in listed_indices(result.decisions)]
    dent = 1 + next(i for i, d in enumerate(listed) if d.defect.defect_class == "dent")
    short = 1 + next(i for i, d in enumerate(listed) if d.clause_id is None)
    answer = f"Defect {dent} (dent, zone A): clause 4.1.1, critical, scrap."
    assert check_answer(answer, result, bracket_standard.clause_ids)  # caught
    said = rules_say(result, answer, "en")
    assert said.startswith(f"the rules say REJECT (clause 4.1.1); defect {dent}: clause 4.2.2;")
    both = f"Defect {dent}: clause 4.1.1. Defect {short}: clause 4.1.2. Defect 9: clause 4.1.1."
    said = rules_say(result, both, "en")
    assert f"defect {dent}: clause 4.2.2; defect {short}: no clause applies;" in said
    assert "defect 9" not in said.split("disagreed")[0]  # one the rules do not list
    zh = rules_say(result, f"缺陷 {dent}：条款 4.1.1。", "zh")
    assert zh.startswith(f"规则判定为不合格（条款 4.1.1）；缺陷 {dent}：条款 4.2.2；")
