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
down or cut short) counts as a disagreement, and so does a report that could not hold
every defect (more than ``MAX_DEFECTS``: it lists the worst and counts the rest), since
nobody has read a report of the others.

Answers to questions (``inspection ask``) are held to the rules the same way
(:func:`check_answer`): an answer that states a verdict, a number of defects or a clause
is compared with the rule engine's result, and on any difference the rules' verdict is
what the answer says, with the decoder's words beside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

from inspection.decoder.prompt import listed_indices
from inspection.decoder.schema import VERDICTS_ZH
from inspection.types import DefectDecision, InspectionResult, Report, ReportDefect, Verdict


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
    the prompt gave them, which is the order of ``result.decisions`` (past
    ``MAX_DEFECTS``, of the worst of them; see :func:`~inspection.decoder.prompt.listed_indices`).
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
    keep = listed_indices(result.decisions)
    omitted = len(result.decisions) - len(keep)
    if len(report.defects) != len(keep):
        out.append(f"defects: report {len(report.defects)}, rules {len(keep)}")
    if report.omitted_defects != omitted:
        out.append(f"omitted defects: report {report.omitted_defects}, rules {omitted}")
    if omitted:
        out.append(
            f"defects: {len(result.decisions)} found, more than a report holds; it lists the "
            f"worst {len(keep)} and not the other {omitted}"
        )
    # The summary says the verdict, the count and the worst defect's clause in words: a
    # report whose fields agree and whose summary cites another clause is a wrong report.
    summary = report.summary
    out += [f"summary {d}" for d in check_answer(summary, result, _CLAUSE_IN.findall(summary))]
    pairs = zip_longest(report.defects, [result.decisions[k] for k in keep])
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


# -- answers ------------------------------------------------------------------------

_VERDICT_EN = re.compile(r"\b(PASS|REJECT|REVIEW)\b")
# 不合格 (REJECT) holds 合格 (PASS): the longer word is matched first and taken out.
_VERDICT_ZH = re.compile("|".join(sorted(VERDICTS_ZH.values(), key=len, reverse=True)))
_VERDICT_OF_ZH = {word: verdict for verdict, word in VERDICTS_ZH.items()}
_COUNT = re.compile(r"(\d+)\s*(?:defect\(s\)|defects?\b|处缺陷)")
_DEFECT = re.compile(r"(?:\b[Dd]efect|缺陷)\s*(\d+)")
_NO_CLAUSE = {"en": "no clause applies", "zh": "无适用条款"}
_RULES_SAY = {
    "en": "the rules say {verdict}{clauses}; the decoder's answer disagreed: {answer}",
    "zh": "规则判定为{verdict}{clauses}；解码器的回答与之不符：{answer}",
}
_CLAUSES = {"en": " (clause {ids})", "zh": "（条款 {ids}）"}
_CLAUSE_IN = re.compile(r"(?:\bclause|条款)\s*([\w.-]*\w)")  # a clause a text cites
_DEFECT_SAYS = {"en": "; defect {i}: {what}", "zh": "；缺陷 {i}：{what}"}
_DEFECT_CLAUSE = {"en": "clause {id}", "zh": "条款 {id}"}


def check_answer(
    answer: str, result: InspectionResult, clause_ids: Sequence[str]
) -> tuple[str, ...]:
    """Every way ``answer`` contradicts the rule engine's ``result``, as text.

    Checked, where the answer states them as answers and reports write them: a verdict
    (``PASS``/``REJECT``/``REVIEW``, ``合格``/``不合格``/``待复检``), a number of defects
    (``3 defect(s)``, ``3 处缺陷``), a clause (any of ``clause_ids``, the standard's:
    one the rules cite for no defect of this part), and what it says of one defect
    (``Defect 2 ...: clause 4.1.2`` or ``no clause applies``; numbered as the prompt
    lists them). An answer that states none of these has nothing to contradict.
    """
    out = []
    rules = result.verdict.value
    stated = _VERDICT_EN.findall(answer) + [_VERDICT_OF_ZH[w] for w in _VERDICT_ZH.findall(answer)]
    out += [f"verdict: answer {v}, rules {rules}" for v in dict.fromkeys(stated) if v != rules]
    n = len(result.decisions)
    out += [
        f"defects: answer {c}, rules {n}"
        for c in dict.fromkeys(int(m) for m in _COUNT.findall(answer))
        if c != n
    ]
    cited = set(result.clauses)
    out += [
        f"clause {c}: answer cites it, the rules cite it for no defect of this part"
        for c in _clauses_in(answer, clause_ids)
        if c not in cited
    ]
    listed = [result.decisions[k] for k in listed_indices(result.decisions)]
    out += _per_defect(answer, listed, clause_ids)
    return tuple(out)


def _clauses_in(text: str, clause_ids: Sequence[str]) -> list[str]:
    # Whole ids only: "4.1" is not cited by "4.1.2", and a full stop may end a sentence.
    return [c for c in clause_ids if re.search(rf"(?<![\w.-]){re.escape(c)}(?![\w-]|\.\w)", text)]


def _per_defect(
    answer: str, listed: Sequence[DefectDecision], clause_ids: Sequence[str]
) -> list[str]:
    marks = list(_DEFECT.finditer(answer))
    out = []
    for m, after in zip_longest(marks, marks[1:]):
        i = int(m.group(1))
        said = answer[m.end() : after.start() if after else len(answer)]
        clauses = _clauses_in(said, clause_ids)
        no_clause = any(p in said for p in _NO_CLAUSE.values())
        if not (clauses or no_clause):
            continue  # says nothing the rules decide (its size, its zone ...)
        if not 1 <= i <= len(listed):
            out.append(f"defect {i}: the rules list {len(listed)} defect(s)")
            continue
        rule = listed[i - 1].clause_id
        answered = clauses[0] if len(clauses) == 1 else (None if no_clause else "/".join(clauses))
        if answered != rule:
            out.append(f"defect {i} clause_id: answer {answered}, rules {rule}")
    return out


def rules_say(result: InspectionResult, answer: str, language: str) -> str:
    """What an answer that contradicts the rules becomes: the rules' verdict and the
    clauses behind it, what they say of each defect the answer speaks of (numbered as the
    prompt lists them), then the decoder's answer, in ``language``."""
    deciding = [d for d in result.decisions if d.action is result.action and d.clause_id]
    ids = list(dict.fromkeys(d.clause_id for d in deciding))
    clauses = _CLAUSES[language].format(ids=", ".join(ids)) if ids else ""
    listed = [result.decisions[k] for k in listed_indices(result.decisions)]
    for i in dict.fromkeys(int(m.group(1)) for m in _DEFECT.finditer(answer)):
        if 1 <= i <= len(listed):  # one the rules do not list: the verdict says enough
            rule = listed[i - 1].clause_id
            what = _DEFECT_CLAUSE[language].format(id=rule) if rule else _NO_CLAUSE[language]
            clauses += _DEFECT_SAYS[language].format(i=i, what=what)
    verdict = result.verdict.value
    return _RULES_SAY[language].format(
        verdict=VERDICTS_ZH[verdict] if language == "zh" else verdict,
        clauses=clauses,
        answer=answer,
    )
