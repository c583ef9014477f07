"""Cross-check: the decoder's report against the rule engine on the same measurements.

The rule engine decides; the report explains. Where they disagree on any defect's
class, zone, severity, clause or action, on the number of defects, on the verdict or on
the standard's version, the part goes to a person, with both recorded.

Final verdict (the decoder can never loosen the rules):

=============  ==========  ==============
rules verdict  agreement   final verdict
=============  ==========  ==============
PASS           agreed      PASS
PASS           disagreed   REVIEW
REVIEW         either      REVIEW
REJECT         agreed      REJECT
REJECT         disagreed   REJECT (flagged for review in the record)
=============  ==========  ==============

A rules REJECT stays REJECT: the part is already off the line, and releasing it on a
language model's word would be the one unsafe outcome. The disagreement is still
recorded (``agreed=False``), so the review queue sees it. A missing report (decoder
down or cut short) counts as a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import zip_longest

from inspection.types import InspectionResult, Report, ReportDefect, Verdict


@dataclass(frozen=True)
class CrossCheck:
    """The outcome of comparing a report with the rule engine.

    Attributes
    ----------
    final_verdict : Verdict
        The part's verdict after the cross-check (see the module's table).
    agreed : bool
        The report matches the rule engine on every compared field.
    disagreements : tuple[str, ...]
        One line per difference, naming the field and both values.
    rule_result : InspectionResult
        The rule engine's decision (kept whole for the record).
    report : Report | None
        The decoder's report, or ``None`` when there was none.
    """

    final_verdict: Verdict
    agreed: bool
    disagreements: tuple[str, ...]
    rule_result: InspectionResult
    report: Report | None

    @property
    def needs_review(self) -> bool:
        """A person should look at this part (its final verdict may still be REJECT)."""
        return not self.agreed or self.final_verdict is Verdict.REVIEW

    def to_json(self) -> dict:
        return {
            "final_verdict": self.final_verdict.value,
            "agreed": self.agreed,
            "disagreements": list(self.disagreements),
            "rule_verdict": self.rule_result.verdict.value,
            "report_verdict": self.report.verdict.value if self.report else None,
        }


def cross_check(result: InspectionResult, report: Report | None) -> CrossCheck:
    """Compare ``report`` with the rule engine's ``result`` for the same part.

    Defects are matched by position: the report lists the measured defects in the order
    the prompt gave them, which is the order of ``result.decisions``.
    """
    disagreements = tuple(compare(result, report))
    agreed = not disagreements
    return CrossCheck(final_verdict(result.verdict, agreed), agreed, disagreements, result, report)


def final_verdict(rule_verdict: Verdict, agreed: bool) -> Verdict:
    """The part's verdict from the rules' verdict and whether the report agreed."""
    if agreed or rule_verdict is Verdict.REJECT:
        return rule_verdict  # a rules REJECT is never loosened
    return Verdict.REVIEW


def compare(result: InspectionResult, report: Report | None) -> list[str]:
    """Every difference between the report and the rule engine, as text."""
    if report is None:
        return ["no report from the decoder"]
    out = []
    if report.verdict is not result.verdict:
        out.append(f"verdict: report {report.verdict.value}, rules {result.verdict.value}")
    if report.standard_version and report.standard_version != result.standard_version:
        out.append(
            f"standard version: report {report.standard_version}, rules {result.standard_version}"
        )
    if len(report.defects) != len(result.decisions):
        out.append(f"defects: report {len(report.defects)}, rules {len(result.decisions)}")
    pairs = zip_longest(report.defects, result.decisions)
    for i, (ours, rule) in enumerate(pairs, 1):
        if ours is None or rule is None:
            continue  # counted above
        rule_fields = {
            "defect_class": rule.defect.defect_class,
            "zone": rule.zone,
            "severity": rule.severity.value if rule.severity else None,
            "clause_id": rule.clause_id,
            "action": rule.action.value,
        }
        for name, expected in rule_fields.items():
            got = field_value(ours, name)
            if got != expected:
                out.append(f"defect {i} {name}: report {got}, rules {expected}")
    return out


def field_value(defect: ReportDefect, name: str) -> str | None:
    """A report defect's field as plain text (enums by their value)."""
    value = getattr(defect, name)
    return getattr(value, "value", value)
