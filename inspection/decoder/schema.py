"""The structured report the decoder writes, and its JSON schema for one standard.

A report is JSON: ``defects`` (one entry per measured defect, in the prompt's order),
then ``verdict``, ``summary`` and ``language``. Defects come before the verdict so that a
left-to-right decoder writes the evidence before the conclusion.

A report holds at most :data:`MAX_DEFECTS` defects. A part with more gets the worst
``MAX_DEFECTS`` by the rules' ranking (action, then severity, then order; see
:func:`~inspection.decoder.prompt.listed_indices`) and a last field, ``omitted_defects``,
the count of the rest, pinned by the schema: the shipped decoder was trained without
it, so it comes after everything the decoder writes itself and the grammar fills it in.
Reports of parts that fit carry no such field. The cross-check sends such a part to
review (a rules REJECT stays REJECT).

The schema for one standard restricts ``defect_class``, ``zone`` and ``clause_id`` to the
ids that standard defines: a constrained decoder then cannot cite a clause the prompt
does not contain. The rule engine writes the training target (:func:`target_report`);
the summary is a deterministic zh/en template of the rule engine's outcome, and a decoded
report's is composed from its own fields by the same template (:func:`summarise_report`).

Every string here is bounded and every number has a range, so a report has a
worst-case length (:func:`max_report_bytes`): decoding with at least that many new
tokens always finishes, even from a randomly initialised model.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from inspection.decoder.prompt import (
    MAX_DEFECTS,
    clause_mark,
    evidence,
    listed_defects,
    listed_indices,
    measured_values,
)
from inspection.errors import UserError
from inspection.standards import Standard, candidate_clauses
from inspection.standards.render import TERMS_ZH
from inspection.standards.schema import LANGUAGES, check_language
from inspection.types import (
    Action,
    Defect,
    DefectDecision,
    InspectionResult,
    Report,
    ReportDefect,
    Severity,
    Verdict,
)

SUMMARY_MAX_CHARS = 160
EVIDENCE_MAX_CHARS = 240
MAX_SIZE_MM = 10_000.0
_MAX_NUMBER_CHARS = 12  # xgrammar writes a number in [0, 1e4] with at most 6 decimals

Size = Annotated[float, Field(ge=0.0, le=MAX_SIZE_MM)]


class ReportDefectModel(BaseModel):
    """One defect of the report, as JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defect_class: str
    zone: str | None
    size_mm: Size | None
    evidence: str = Field(max_length=EVIDENCE_MAX_CHARS)
    severity: Literal["minor", "major", "critical"] | None
    clause_id: str | None
    action: Literal["accept", "review", "rework", "scrap"]


class ReportModel(BaseModel):
    """The report as JSON, for any standard (the per-standard model narrows it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defects: list[ReportDefectModel] = Field(max_length=MAX_DEFECTS)
    verdict: Literal["PASS", "REJECT", "REVIEW"]
    summary: str = Field(max_length=SUMMARY_MAX_CHARS)
    language: Literal["en", "zh"]


@functools.lru_cache(maxsize=64)
def report_model(
    standard: Standard, language: str | None = None, n_defects: int | None = None
) -> type[ReportModel]:
    """The pydantic model of a report under ``standard``.

    Parameters
    ----------
    standard
        Its class, zone and clause ids become the only values those fields accept.
    language
        Pin ``language`` to one value; ``None`` accepts ``en`` and ``zh``.
    n_defects
        The number of measured defects: the report lists exactly that many, or past
        ``MAX_DEFECTS`` the worst ``MAX_DEFECTS`` and ``omitted_defects``, the count of
        the rest. ``None``: 0 to ``MAX_DEFECTS`` defects, none left out.
    """
    if language is not None:
        check_language(language)
    if n_defects is not None and n_defects < 0:
        raise ValueError(f"n_defects must be 0 or more, not {n_defects}")
    defect = create_model(
        "ReportDefect",
        __base__=ReportDefectModel,
        defect_class=(Literal[standard.class_ids], ...),
        zone=(Literal[tuple(z.id for z in standard.zones)] | None, ...),
        clause_id=(Literal[standard.clause_ids] | None, ...),
    )
    listed = MAX_DEFECTS if n_defects is None else min(n_defects, MAX_DEFECTS)
    count = (
        {"max_length": listed}
        if n_defects is None
        else {"min_length": listed, "max_length": listed}
    )
    omitted = 0 if n_defects is None else n_defects - listed
    # Last, so that everything the decoder writes comes as it was trained (see above).
    more = {"omitted_defects": (Literal[omitted], ...)} if omitted else {}
    languages = LANGUAGES if language is None else (language,)
    return create_model(
        "Report",
        __base__=ReportModel,
        defects=(list[defect], Field(**count)),
        language=(Literal[languages], ...),
        **more,
    )


def report_json_schema(
    standard: Standard,
    language: str | None = None,
    n_defects: int | None = None,
    defects: Sequence[Defect] | None = None,
) -> dict[str, Any]:
    """JSON schema of a report under ``standard`` (see :func:`report_model`).

    With ``defects`` (the measured ones, zones set) the schema is pinned to that part:
    entry ``i`` of the report is listed defect ``i`` (all of them, or past
    ``MAX_DEFECTS`` the worst; see :func:`~inspection.decoder.prompt.listed_defects`)
    with its class, zone and size as measured,
    and either one of the clauses covering that class and zone whose conditions all hold,
    with the severity and action it prescribes, or one that needs a value that was not
    measured, with ``review``, or no clause and ``accept``. Which of these governs is the
    decoder's to judge; a report it writes can then never misquote a clause, cite one the
    part does not meet, or re-measure a part.
    """
    if defects is None:
        return report_model(standard, language, n_defects).model_json_schema()
    schema = report_model(standard, language, len(defects)).model_json_schema()
    listed, measured, _ = listed_defects(standard, defects)
    schema["properties"]["defects"] = {
        "type": "array",
        "prefixItems": [
            _pinned_defect(standard, d, m) for d, m in zip(listed, measured, strict=True)
        ],
        "items": False,
        "minItems": len(listed),
        "maxItems": len(listed),
    }
    schema.pop("$defs", None)
    return schema


def _pinned_defect(
    standard: Standard, defect: Defect, measured: dict[str, float]
) -> dict[str, Any]:
    # What the measurements leave possible: a clause whose conditions all hold, with the
    # action it prescribes; one that needs an unmeasured value, as review; no clause.
    # A clause the part fails (a ✗ condition) can never be cited.
    outcomes: list[tuple[str | None, str | None, str]] = []
    for clause in candidate_clauses(standard, defect.defect_class, defect.zone):
        mark = clause_mark(clause, measured)
        if mark == "✓":
            outcomes.append((clause.severity.value, clause.id, clause.action.value))
        elif mark == "?":
            outcomes.append((clause.severity.value, clause.id, Action.REVIEW.value))
    outcomes.append((None, None, Action.ACCEPT.value))
    fixed = _fixed_fields(standard, defect, measured)
    return {
        "anyOf": [
            _pinned_object(fixed, {"severity": sev, "clause_id": cid, "action": act})
            for sev, cid, act in dict.fromkeys(outcomes)
        ]
    }


def _const(value: str | None) -> dict[str, Any]:
    return {"type": "null"} if value is None else {"const": value}


def _fixed_fields(
    standard: Standard, defect: Defect, measured: dict[str, float]
) -> dict[str, dict[str, Any]]:
    size = size_mm(defect.attributes)
    # A number is pinned as a range of one value: xgrammar spells a float const with 17
    # digits (16.809999999999999), but minimum = maximum gives exactly "16.81".
    pinned_size = (
        {"type": "null"} if size is None else {"type": "number", "minimum": size, "maximum": size}
    )
    return {
        "defect_class": _const(defect.defect_class),
        "zone": _const(defect.zone),
        "size_mm": pinned_size,
        "evidence": _const(evidence_field(standard, defect, measured)),
    }


def _pinned_object(
    fixed: dict[str, dict[str, Any]], outcome: Mapping[str, str | None]
) -> dict[str, Any]:
    properties = {**fixed, **{k: _const(v) for k, v in outcome.items()}}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def max_report_bytes(standard: Standard, n_defects: int | None = None) -> int:
    """Worst-case UTF-8 length of a compact report JSON valid under the schema.

    A byte-level tokenizer spends at least one byte per token, so this bounds the
    tokens of any schema-valid report (plus one for end-of-text).
    """

    def longest(values: list[str | None]) -> str | None:
        return max(values, key=lambda v: len(json.dumps(v, ensure_ascii=False).encode()))

    worst_defect = {
        "defect_class": longest(list(standard.class_ids)),
        "zone": longest([z.id for z in standard.zones] + [None]),
        "size_mm": 0,
        "evidence": "",
        "severity": "critical",
        "clause_id": longest([*standard.clause_ids, None]),
        "action": "accept",
    }
    defect_bytes = (
        len(_dumps(worst_defect).encode()) - 1 + _MAX_NUMBER_CHARS + len(", ")
    ) + 4 * EVIDENCE_MAX_CHARS
    frame = {"defects": [], "verdict": "REJECT", "summary": "", "language": "en"}
    summary_bytes = 4 * SUMMARY_MAX_CHARS  # up to 4 UTF-8 bytes a character
    n = MAX_DEFECTS if n_defects is None else min(n_defects, MAX_DEFECTS)
    omitted = 0 if n_defects is None else n_defects - n
    # ', "omitted_defects": N': the braces' two bytes stand for the ", " before it.
    more = len(_dumps({"omitted_defects": omitted}).encode()) if omitted else 0
    return len(_dumps(frame).encode()) + summary_bytes + n * defect_bytes + more


def report_text(report: Report) -> str:
    """The report as the compact JSON the decoder is trained to write (and the grammar
    accepts): keys in schema order, ``", "`` and ``": "`` separators, UTF-8 text."""
    return _dumps(to_json(report))


def to_json(report: Report) -> dict[str, Any]:
    """The JSON fields of a report (its part id and standard are known from context);
    ``omitted_defects`` only when the part had more defects than a report holds."""
    fields = {
        "defects": [
            {
                "defect_class": d.defect_class,
                "zone": d.zone,
                "size_mm": d.size_mm,
                "evidence": d.evidence,
                "severity": d.severity.value if d.severity else None,
                "clause_id": d.clause_id,
                "action": d.action.value,
            }
            for d in report.defects
        ],
        "verdict": report.verdict.value,
        "summary": report.summary,
        "language": report.language,
    }
    if report.omitted_defects:
        fields["omitted_defects"] = report.omitted_defects
    return fields


def parse_report(
    text: str,
    standard: Standard,
    part_id: str = "",
    language: str | None = None,
    n_defects: int | None = None,
) -> Report:
    """Validate decoder output against the standard's schema and build a :class:`Report`.

    ``n_defects`` is the number of measured defects (see :func:`report_model`).

    Raises
    ------
    pydantic.ValidationError
        If the text is not JSON or breaks the schema (unknown clause, wrong count ...).
    """
    model = report_model(standard, language, n_defects).model_validate_json(text)
    return from_model(model, part_id, standard)


def from_model(model: ReportModel, part_id: str, standard: Standard | None = None) -> Report:
    """A validated JSON report as the project's :class:`~inspection.types.Report`."""
    return Report(
        part_id=part_id,
        verdict=Verdict(model.verdict),
        defects=tuple(
            ReportDefect(
                defect_class=d.defect_class,
                zone=d.zone,
                size_mm=d.size_mm,
                severity=Severity(d.severity) if d.severity else None,
                clause_id=d.clause_id,
                action=Action(d.action),
                evidence=d.evidence,
            )
            for d in model.defects
        ),
        summary=model.summary,
        language=model.language,
        standard_id=standard.id if standard else None,
        standard_version=standard.version if standard else None,
        omitted_defects=getattr(model, "omitted_defects", 0),
    )


def size_mm(attributes: Mapping[str, float]) -> float | None:
    """One size for a defect: its length, else the diameter of a disc of its area."""
    if "length_mm" in attributes:
        value = float(attributes["length_mm"])
    elif "area_mm2" in attributes:
        value = 2.0 * math.sqrt(max(float(attributes["area_mm2"]), 0.0) / math.pi)
    else:
        return None
    if not math.isfinite(value):
        return None
    return round(min(max(value, 0.0), MAX_SIZE_MM), 2)


def target_report(result: InspectionResult, standard: Standard, language: str = "en") -> Report:
    """The report the decoder should write for a part: the rule engine's decisions (past
    ``MAX_DEFECTS``, the worst of them and the count of the rest).

    Raises
    ------
    ValueError
        If a decision names a class or zone the standard does not define: such a part
        has no schema-valid report (the rule engine sends it to REVIEW anyway).
    """
    check_language(language)
    zones = {z.id for z in standard.zones}
    for d in result.decisions:
        if d.defect.defect_class not in standard.class_ids or (d.zone and d.zone not in zones):
            raise ValueError(
                f"{d.defect.defect_class} in zone {d.zone}: not in standard {standard.id}"
            )
    measured = measured_values(defects_of(result))
    keep = listed_indices(result.decisions)
    return Report(
        part_id=result.part_id,
        verdict=result.verdict,
        defects=tuple(_report_defect(result.decisions[i], standard, measured[i]) for i in keep),
        summary=summarise(result, standard, language),
        language=language,
        standard_id=standard.id,
        standard_version=standard.version,
        omitted_defects=len(result.decisions) - len(keep),
    )


def _report_defect(
    decision: DefectDecision, standard: Standard, measured: dict[str, float]
) -> ReportDefect:
    located = replace(decision.defect, zone=decision.zone)
    return ReportDefect(
        defect_class=decision.defect.defect_class,
        zone=decision.zone,
        size_mm=size_mm(decision.defect.attributes),
        severity=decision.severity,
        clause_id=decision.clause_id,
        action=decision.action,
        evidence=evidence_field(standard, located, measured),
    )


def evidence_field(standard: Standard, defect: Defect, measured: dict[str, float]) -> str:
    """The report's evidence for a defect (see :func:`inspection.decoder.prompt.evidence`),
    cut to the schema's bound."""
    return _clean(evidence(standard, defect, measured))[:EVIDENCE_MAX_CHARS]


_SUMMARY = {
    "en": {
        "none": "{verdict}: no defects found.",
        "ok": "{verdict}: {n} defect(s), all within tolerance.",
        "worst": "{verdict}: {n} defect(s); worst: {name} in zone {zone}, {severity}, {action}"
        " (clause {clause}).",
        "count": "{n} defect(s).",
        "clause": "Defect {i} ({name}, zone {zone}): clause {clause}, {severity}, {action}.",
        "no_clause": "Defect {i} ({name}, zone {zone}): no clause applies; accept.",
        "largest": "Defect {i}: {name}, {size} mm.",
    },
    "zh": {
        "none": "{verdict}：未发现缺陷。",
        "ok": "{verdict}：{n} 处缺陷，均在公差内。",
        "worst": "{verdict}：{n} 处缺陷；最严重：区域 {zone} 的{name}，{severity}，{action}"
        "（条款 {clause}）。",
        "count": "{n} 处缺陷。",
        "clause": "缺陷 {i}（{name}，区域 {zone}）：条款 {clause}，{severity}，{action}。",
        "no_clause": "缺陷 {i}（{name}，区域 {zone}）：无适用条款，接收。",
        "largest": "缺陷 {i}：{name}，{size} 毫米。",
    },
}
VERDICTS_ZH = {"PASS": "合格", "REJECT": "不合格", "REVIEW": "待复检"}
"""Chinese words of the verdicts, as reports and answers write them."""
_WORDS_ZH = {**VERDICTS_ZH, **TERMS_ZH}


def summarise(result: InspectionResult, standard: Standard, language: str = "en") -> str:
    """A one-line summary of the rule engine's outcome, deterministic, in ``language``."""
    worst = max(result.decisions, key=_worst_first, default=None)
    fields = None if worst is None else (worst.defect.defect_class, *_ruling(worst))
    return _summary(result.verdict, len(result.decisions), fields, standard, language)


def summarise_report(report: Report, standard: Standard) -> str:
    """The summary a report's own fields give, in its language: the template
    :func:`summarise` fills from the rules, filled from the report's verdict, defects and
    ``omitted_defects``. Where the fields agree with the rules the two are the same; a
    decoded summary, free text, named clauses its fields did not (a standard's ids in
    another's style), so the line composes it instead (benchmarks/README.md, "The
    report's summary, cross-checked")."""
    worst = max(report.defects, key=_worst_first, default=None)
    fields = None if worst is None else (worst.defect_class, *_ruling(worst))
    n = len(report.defects) + report.omitted_defects
    return _summary(report.verdict, n, fields, standard, report.language)


def _ruling(d: DefectDecision | ReportDefect) -> tuple:
    """Where a defect lies and what its clause rules: zone, severity, action, clause."""
    return d.zone, d.severity, d.action, d.clause_id


def _worst_first(d: DefectDecision | ReportDefect) -> tuple[int, int]:
    return d.action.rank, d.severity.rank if d.severity else -1


def _summary(
    verdict: Verdict,
    n: int,
    worst: tuple[str, str | None, Severity | None, Action, str | None] | None,
    standard: Standard,
    language: str,
) -> str:
    def word(value: str) -> str:
        return _WORDS_ZH.get(value, value) if language == "zh" else value

    templates = _SUMMARY[language]
    fields: dict[str, Any] = {"verdict": word(verdict.value), "n": n}
    if worst is None:
        text = templates["none"].format(**fields)
    elif worst[3] is Action.ACCEPT:
        text = templates["ok"].format(**fields)
    else:
        defect_class, zone, severity, action, clause = worst
        text = templates["worst"].format(
            **fields,
            name=_class_name(standard, defect_class, language),
            zone=zone or "-",
            severity=word(severity.value) if severity else "-",
            action=word(action.value),
            clause=clause or "-",
        )
    return _clean(text)[:SUMMARY_MAX_CHARS]


QUESTION_KINDS = ("verdict", "count", "clause", "largest")


def answer(
    kind: str,
    result: InspectionResult,
    standard: Standard,
    language: str = "en",
    defect: int = 1,
) -> str:
    """The reference answer to a question of ``kind`` about a part (1-based ``defect``).

    ``verdict`` is the summary; ``count`` the number of defects; ``clause`` the decision
    on one defect; ``largest`` the defect with the largest size.
    """
    if kind not in QUESTION_KINDS:
        raise ValueError(f"unknown question kind {kind!r}; use one of {QUESTION_KINDS}")
    templates = _SUMMARY[language]
    n = len(result.decisions)
    if kind == "verdict":
        return summarise(result, standard, language)
    if kind == "count" or n == 0:
        return templates["count"].format(n=n)
    sizes = [size_mm(d.defect.attributes) or 0.0 for d in result.decisions]
    i = int(max(range(n), key=lambda k: sizes[k])) + 1 if kind == "largest" else defect
    d = result.decisions[i - 1]
    fields = {
        "i": i,
        "name": _class_name(standard, d.defect.defect_class, language),
        "zone": d.zone or "-",
    }
    if kind == "largest":
        text = templates["largest"].format(**fields, size=f"{sizes[i - 1]:.2f}")
    elif d.clause_id is None:
        text = templates["no_clause"].format(**fields)
    else:
        word = (lambda v: _WORDS_ZH.get(v, v)) if language == "zh" else (lambda v: v)
        severity = word(d.severity.value) if d.severity else "-"
        text = templates["clause"].format(
            **fields, clause=d.clause_id, severity=severity, action=word(d.action.value)
        )
    return _clean(text)[:SUMMARY_MAX_CHARS]


def _class_name(standard: Standard, class_id: str, language: str) -> str:
    names = {c.id: c.name.get(language) for c in standard.defect_classes}
    return names.get(class_id, class_id)


def _clean(text: str) -> str:
    # The grammar's strings carry no quotes, backslashes or control characters.
    return "".join(" " if ord(c) < 32 else c for c in text).replace('"', "'").replace("\\", "/")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def defects_of(result: InspectionResult) -> tuple[Defect, ...]:
    """The measured defects of a result, each with the zone the rule engine gave it."""
    return tuple(replace(d.defect, zone=d.zone) for d in result.decisions)


class AnswerModel(BaseModel):
    """The decoder's answer to a question about one part (``inspection ask``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    answer: str = Field(max_length=SUMMARY_MAX_CHARS)
    language: Literal["en", "zh"]


def answer_json_schema(language: str) -> dict[str, Any]:
    """JSON schema of an answer in ``language``."""
    check_language(language)
    schema = AnswerModel.model_json_schema()
    schema["properties"]["language"] = {"const": language}
    return schema


def answer_text(answer: str, language: str) -> str:
    """An answer as the compact JSON the decoder writes."""
    return _dumps({"answer": _clean(answer)[:SUMMARY_MAX_CHARS], "language": language})


# The LM's context is 4096 positions (``max_position_embeddings`` of the ``tiny`` and
# ``small`` decoders built here, models/decoder/*.yaml). Measured with the shipped
# decoder's tokenizer, the prompt of a part with MAX_DEFECTS defects under the shipped
# standards, every clause of its class listed, is at most 1880 tokens (bracket, zh); with
# 16 fused tokens and the answer's budget (4 * SUMMARY_MAX_CHARS + 64 = 704) that leaves
# about 1490 for the question. A byte-level tokenizer spends at most one token a UTF-8
# byte, 4 bytes a character at worst: 300 characters always fit (the training questions
# are under 50). ``ask`` still checks the whole prompt against the context.
MAX_QUESTION_CHARS = 300


def check_question(question: str) -> str:
    """``question`` with its whitespace collapsed, as the prompt carries it.

    Raises
    ------
    UserError
        If it is empty (or only whitespace) or longer than ``MAX_QUESTION_CHARS``.
    """
    text = " ".join(question.split())
    if not text:
        raise UserError("the question is empty; ask about the part in English or Chinese")
    if len(text) > MAX_QUESTION_CHARS:
        raise UserError(
            f"the question is {len(text)} characters long; the most the decoder reads is "
            f"{MAX_QUESTION_CHARS}"
        )
    return text


def question_language(question: str) -> str:
    """``"zh"`` when the question holds a CJK character, else ``"en"``."""
    return "zh" if any("\u4e00" <= c <= "\u9fff" for c in question) else "en"
