"""The decoder's text prompt: the standard, the measured defects, the instruction.

The fused tokens come first (as embeddings); this text follows them. It carries the
measurements but never the rule engine's decisions, so that the report is the
decoder's own reading of the standard and the cross-check means something.

The standard is retrieved, not pasted whole: under each measured defect come the
standard's clauses for that defect's class and zone, strictest first (by action, then
severity, then the standard's order: the precedence the standard itself states), each
condition rendered with its limit beside the part's measured value and whether it holds
(``✓``, ``✗``, or ``?`` where the attribute was not measured):

    2. stain (stain), zone A: area_mm2=3.79, delta_e=4.44, length_mm=5.44, width_mm=1.65
    - [C-4.1] depth_mm ? > 0.10 ? -> critical, scrap
    - [C-4.3] width_mm 1.65 > 2.00 ✗ -> critical, scrap

Each condition's truth is a measurement fact, as a calculator's result would be; which
clause governs (the strictest action among those that hold, then severity, then order),
whether an unmeasured clause could be stricter and so calls for review, the verdict, and
the wording are the decoder's. (Measured: the small LM trained for 20 minutes on a CPU
did not learn decimal comparison from the bare numbers: clause accuracy stayed at 0.59
and it never wrote "no clause applies".) Listing the clauses in the standard's order
instead left the decoder to rank actions and severities across the list, and most of its
remaining errors were that ranking (measured on unseen generated standards; see
benchmarks/README.md). Retrieval keeps the prompt a few hundred tokens whatever the
standard's size.

A part with more than :data:`MAX_DEFECTS` defects (a report's bound) lists the worst
``MAX_DEFECTS`` by the rules' ranking (:func:`listed_defects`) and says how many more
there are; the conditions are still evaluated on every defect (counts included).
"""

from __future__ import annotations

from collections.abc import Sequence

from inspection.standards import (
    Clause,
    Condition,
    Standard,
    apply_standard,
    class_counts,
    ranked_clauses,
    term,
)
from inspection.standards.render import render_header
from inspection.types import Defect, DefectDecision

MAX_DEFECTS = 16
"""Most defects a report lists (and a prompt shows); a part with more gets the worst."""

_WORDS = {
    "en": {
        "rule": (
            "Rules: clauses are listed strictest first (action, then severity). The first "
            "that holds (✓) governs if its action is rework or scrap. Otherwise a clause "
            "above it that needs an unmeasured value (?) and has a stricter action means "
            "review under the first such clause; if none holds, a ? clause stricter than "
            "accept means review, otherwise accept."
        ),
        "measured": "Measured defects and the clauses that cover them:",
        "none": "none",
        "zone": "zone",
        "no_zone": "zone unknown",
        "no_clause": "- no clause covers it",
        "more": "{n} more defect(s) not listed: {total} found, the {shown} strictest listed.",
        "instruction": "Write the inspection report as JSON in English.",
        "question": "Question: ",
        "answer": "Answer as JSON in English.",
    },
    "zh": {
        "rule": (
            "规则：条款按处置从严到宽排列（其次严重度）。第一条成立（✓）的条款为返工或报废时"
            "以其为准；否则，排在其前、缺少实测值（?）且处置更严的条款需复检，引用第一条此类"
            "条款；无成立条款时，处置严于接收的 ? 条款需复检，否则接收。"
        ),
        "measured": "实测缺陷及其适用条款：",
        "none": "无",
        "zone": "区域",
        "no_zone": "区域未知",
        "no_clause": "- 无条款覆盖",
        "more": "另有 {n} 处缺陷未列出：共 {total} 处，列出处置最严的 {shown} 处。",
        "instruction": "请用中文以 JSON 格式写出检验报告。",
        "question": "问题：",
        "answer": "请用中文以 JSON 格式回答。",
    },
}


def build_prompt(
    standard: Standard,
    defects: Sequence[Defect],
    language: str = "en",
    question: str | None = None,
) -> str:
    """The prompt text for one part.

    Parameters
    ----------
    standard
        The product's standard; its header and the clauses covering each defect are
        rendered in ``language``.
    defects
        The measured defects, in the order the report must list them, each with its zone
        set (see :func:`inspection.decoder.schema.defects_of`). Past ``MAX_DEFECTS`` only
        the worst are listed (:func:`listed_defects`), with a line counting the rest.
    language
        ``"en"`` or ``"zh"``: of the prompt's text and of the report (or answer).
    question
        Ask this about the part instead of asking for the report.
    """
    w = _WORDS[language]
    lines = [render_header(standard, language), w["rule"], w["measured"]]
    listed, values, omitted = listed_defects(standard, defects)
    for i, (defect, measured) in enumerate(zip(listed, values, strict=True), 1):
        lines.append(f"{i}. {describe_defect(defect, language, standard)}")
        clauses = ranked_clauses(standard, defect.defect_class, defect.zone)
        lines += [render_check(c, measured, language) for c in clauses] or [w["no_clause"]]
    if not defects:
        lines.append(w["none"])
    if omitted:
        lines.append(w["more"].format(n=omitted, total=len(defects), shown=len(listed)))
    if question is None:
        lines.append(w["instruction"])
    else:
        lines += [w["question"] + " ".join(question.split()), w["answer"]]
    return "\n".join(lines) + "\n"


def describe_defect(defect: Defect, language: str = "en", standard: Standard | None = None) -> str:
    """``scratch (scratch), zone A: length_mm=6.20, width_mm=0.30`` (sorted attributes;
    the class's name in ``language`` when the standard is given)."""
    w = _WORDS[language]
    names = {c.id: c.name.get(language) for c in standard.defect_classes} if standard else {}
    name = f" ({names[defect.defect_class]})" if defect.defect_class in names else ""
    where = f"{w['zone']} {defect.zone}" if defect.zone else w["no_zone"]
    values = ", ".join(f"{k}={float(v):.2f}" for k, v in sorted(defect.attributes.items()))
    return f"{defect.defect_class}{name}, {where}: {values or '-'}"


def measured_values(defects: Sequence[Defect]) -> list[dict[str, float]]:
    """Per defect, its measured attributes with ``count`` and ``total_count`` added (the
    values a standard's conditions are evaluated on)."""
    counts = class_counts(defects, [d.zone for d in defects])
    return [
        {**d.attributes, "count": count, "total_count": total}
        for d, (count, total) in zip(defects, counts, strict=True)
    ]


def listed_indices(
    decisions: Sequence[DefectDecision], limit: int = MAX_DEFECTS
) -> tuple[int, ...]:
    """Which of a part's decisions its report lists: all when they fit, else the worst
    ``limit`` by the rules' ranking (action, then severity, then order on the part),
    kept in their order on the part."""
    if len(decisions) <= limit:
        return tuple(range(len(decisions)))

    def rank(i: int) -> tuple[int, int, int]:
        severity = decisions[i].severity
        return (-decisions[i].action.rank, -(severity.rank if severity else -1), i)

    return tuple(sorted(sorted(range(len(decisions)), key=rank)[:limit]))


def listed_defects(
    standard: Standard, defects: Sequence[Defect]
) -> tuple[tuple[Defect, ...], list[dict[str, float]], int]:
    """The defects a prompt and its report list, their measured values, and how many
    are left out (see :func:`listed_indices`).

    The measured values, ``count`` and ``total_count`` included, are those of the whole
    part: leaving a defect out of the list does not change what holds for the others.
    """
    measured = measured_values(defects)
    if len(defects) <= MAX_DEFECTS:
        return tuple(defects), measured, 0
    keep = listed_indices(apply_standard(standard, defects).decisions)
    return tuple(defects[i] for i in keep), [measured[i] for i in keep], len(defects) - len(keep)


def condition_mark(condition: Condition, measured: dict[str, float]) -> str:
    """``✓`` the condition holds, ``✗`` it does not, ``?`` its attribute was not measured."""
    if condition.attribute not in measured:
        return "?"
    return "✓" if condition.holds(float(measured[condition.attribute])) else "✗"


def clause_mark(clause: Clause, measured: dict[str, float]) -> str:
    """A clause's mark: ``?`` if any condition cannot be told, else ``✓`` if all hold."""
    marks = [condition_mark(c, measured) for c in clause.when]
    return "?" if "?" in marks else ("✗" if "✗" in marks else "✓")


def evidence(standard: Standard, defect: Defect, measured: dict[str, float]) -> str:
    """The clauses covering a defect and their marks, strictest first as in the prompt, as
    a report's evidence field: ``4.1.1 ✓ critical scrap; 4.1.2 ✗ major rework`` (``-`` when
    no clause covers it)."""
    return (
        "; ".join(
            f"{c.id} {clause_mark(c, measured)} {c.severity.value} {c.action.value}"
            for c in ranked_clauses(standard, defect.defect_class, defect.zone)
        )
        or "-"
    )


def render_check(clause: Clause, measured: dict[str, float], language: str = "en") -> str:
    """``- [4.1.2] length_mm 6.20 > 5.00 ✓ and width_mm ? > 0.50 ? -> major, rework``.

    Each condition carries its truth on this part: ``✓`` holds, ``✗`` does not, ``?``
    cannot be told (the attribute was not measured).
    """

    def check(c: Condition) -> str:
        value = f"{float(measured[c.attribute]):.2f}" if c.attribute in measured else "?"
        return f"{c.attribute} {value} {c.op} {c.value:.2f} {condition_mark(c, measured)}"

    checks = term("and", language).join(check(c) for c in clause.when)
    outcome = term(clause.severity.value, language) + term("sep", language)
    return f"- [{clause.id}] {checks or term('always', language)} -> {outcome}" + term(
        clause.action.value, language
    )
