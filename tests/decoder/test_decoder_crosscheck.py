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
    return {
        "verdict": replace(report, verdict=other_verdict),
        "severity": one(severity=Severity.MINOR if d.severity is not Severity.MINOR else None),
        "clause_id": one(clause_id="4.5.1"),
        "action": one(action=Action.SCRAP if d.action is not Action.SCRAP else Action.ACCEPT),
        "defect_class": one(defect_class="crack"),
        "defects": replace(report, defects=()),
        "standard version": replace(report, standard_version="0123456789ab"),
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
