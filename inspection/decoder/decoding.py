"""Constrained decoding: every report parses and validates against its standard's schema.

xgrammar compiles the per-standard JSON schema (:func:`report_json_schema`) against
the decoder's tokenizer and masks, at every step, the tokens that would leave the
grammar; it works offline with a tokenizer trained here and with
``generate(inputs_embeds=...)``. Decoding is greedy. Strings and numbers in the schema
are bounded, so a report has a worst-case length (:func:`max_report_bytes`) and the
default token budget always lets it finish, whatever the weights.

Each row of a batch has its own grammar: parts of different standards (or different
numbers of defects) decode together.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import xgrammar as xgr
from pydantic import ValidationError
from transformers import PreTrainedTokenizerBase
from xgrammar.contrib.hf import LogitsProcessor

from inspection.decoder.crosscheck import check_answer, rules_say
from inspection.decoder.model import ReportDecoder
from inspection.decoder.prompt import build_prompt
from inspection.decoder.schema import (
    SUMMARY_MAX_CHARS,
    AnswerModel,
    answer_json_schema,
    check_question,
    max_report_bytes,
    parse_report,
    question_language,
    report_json_schema,
    summarise_report,
)
from inspection.decoder.tokenizer import control_token_ids
from inspection.errors import UserError
from inspection.standards import Standard, apply_standard
from inspection.standards.schema import check_language
from inspection.types import Defect, InspectionResult, Report, Verdict


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode.

    Attributes
    ----------
    language : str
        ``"en"`` or ``"zh"``: the prompt's language and the report's (pinned in the schema).
    max_new_tokens : int | None
        Token budget a report. ``None``: the schema's worst case, so that decoding always
        finishes; a smaller budget can cut a report short (``DecodingResult.error``).
    batch_size : int
        Parts decoded together.
    exact_defects : bool
        The report lists exactly the measured defects, entry ``i`` pinned to defect ``i``
        and to the outcomes the standard allows for it (see ``report_json_schema``).
    """

    language: str = "en"
    max_new_tokens: int | None = None
    batch_size: int = 16
    exact_defects: bool = True

    def __post_init__(self) -> None:
        check_language(self.language)
        if self.batch_size < 1 or (self.max_new_tokens is not None and self.max_new_tokens < 1):
            raise ValueError("batch_size and max_new_tokens must be positive")


@dataclass(frozen=True)
class ReportRequest:
    """One part to report on: its payload and what the edge measured.

    Attributes
    ----------
    fused : np.ndarray
        ``(N, D)`` fused tokens (float16 on the wire).
    standard : Standard
        The part's standard (its ids are the only ones the report may cite).
    defects : tuple[Defect, ...]
        Every measured defect with its zone, in the order the report lists them (past
        ``MAX_DEFECTS`` the report lists the worst and counts the rest).
    part_id : str
        Carried into the report.
    result : InspectionResult | None
        The part's decision, when the request was made from one
        (:func:`~inspection.decoder.reporting.report_request`): the verdict the report is
        held to, which can be REVIEW where the measurements alone would pass.
    """

    fused: np.ndarray
    standard: Standard
    defects: tuple[Defect, ...] = ()
    part_id: str = ""
    result: InspectionResult | None = None

    def rules(self) -> InspectionResult:
        """What the report is held to: the part's decision, or else the rule engine on
        exactly what the decoder is given (the report's target)."""
        if self.result is not None:
            return self.result
        return apply_standard(self.standard, self.defects, self.part_id)


@dataclass(frozen=True)
class DecodingResult:
    """One decoded report.

    Attributes
    ----------
    report : Report | None
        The validated report; ``None`` only when a caller's ``max_new_tokens`` cut it.
    text : str
        The JSON the decoder wrote.
    tokens : tuple[int, ...]
        Its token ids (without ``</s>``).
    seconds : float
        Wall time of the batch this part was decoded in (the latency it saw).
    error : str | None
        Why ``report`` is ``None``.
    """

    report: Report | None
    text: str
    tokens: tuple[int, ...]
    seconds: float
    error: str | None = None


def decode(
    model: ReportDecoder,
    requests: Sequence[ReportRequest],
    options: DecodingOptions = DecodingOptions(),
) -> list[DecodingResult]:
    """Write the reports of ``requests``, ``options.batch_size`` at a time, greedily.

    Returns
    -------
    list[DecodingResult]
        One per request, in order.
    """
    results: list[DecodingResult] = []
    for start in range(0, len(requests), options.batch_size):
        results += _decode_batch(model, requests[start : start + options.batch_size], options)
    return results


def _decode_batch(
    model: ReportDecoder, requests: Sequence[ReportRequest], options: DecodingOptions
) -> list[DecodingResult]:
    start = time.perf_counter()
    counts = [len(r.defects) if options.exact_defects else None for r in requests]
    compiler = _compiler(model.tokenizer, model.lm.config.vocab_size)
    grammars = [
        _compile(compiler, report_json_schema(r.standard, options.language, n, _pinned(r, options)))
        for r, n in zip(requests, counts, strict=True)
    ]
    budget = options.max_new_tokens or max(
        max_report_bytes(r.standard, n) + 1 for r, n in zip(requests, counts, strict=True)
    )
    prompts = [build_prompt(r.standard, r.defects, options.language) for r in requests]
    rows = generate(model, [r.fused for r in requests], prompts, grammars, budget)
    seconds = time.perf_counter() - start
    return [
        _result(model.tokenizer, row, r, n, options.language, seconds)
        for row, r, n in zip(rows, requests, counts, strict=True)
    ]


def _pinned(request: ReportRequest, options: DecodingOptions) -> tuple[Defect, ...] | None:
    return request.defects if options.exact_defects else None


def generate(
    model: ReportDecoder,
    fused: Sequence[np.ndarray],
    prompts: Sequence[str],
    grammars: Sequence[xgr.CompiledGrammar],
    max_new_tokens: int,
) -> list[list[int]]:
    """Greedy grammar-constrained generation of one batch; the new token ids of each row."""
    tokenizer = model.tokenizer
    prefix = torch.as_tensor(np.stack([np.asarray(f, np.float32) for f in fused]))
    model.eval()
    with torch.inference_mode():
        embeds, mask, _ = model.inputs(prefix, model.encode(prompts), pad_left=True)
        out = model.lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            logits_processor=[LogitsProcessor(list(grammars))],  # one per generate() call
            suppress_tokens=_suppressed(tokenizer),
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )  # (B, T_new): only new tokens with inputs_embeds
    return [row.tolist() for row in out]


@dataclass(frozen=True)
class Answer:
    """The decoder's answer to a question about one part, held to the rule engine.

    Attributes
    ----------
    text : str
        The answer to show: the decoder's, or where it contradicts the rules, the rules'
        verdict with the decoder's answer beside it (empty when none could be decoded).
    language : str
        The question's language, which the answer is in.
    seconds : float
        Decoding time.
    error : str | None
        Why ``text`` is empty.
    rules_verdict : Verdict | None
        The rule engine's verdict on the part, which stands whatever the answer says.
    decoder_text : str
        The decoder's own answer.
    disagreements : tuple[str, ...]
        How the decoder's answer contradicts the rules (see
        :func:`~inspection.decoder.crosscheck.check_answer`); empty when it does not.
    """

    text: str
    language: str
    seconds: float
    error: str | None = None
    rules_verdict: Verdict | None = None
    decoder_text: str = ""
    disagreements: tuple[str, ...] = ()

    @property
    def agreed(self) -> bool:
        """The decoder's answer states nothing the rules contradict."""
        return not self.disagreements


ANSWER_BUDGET = 4 * SUMMARY_MAX_CHARS + 64
"""New tokens an answer may take: the schema's longest answer, in bytes."""


def ask(
    model: ReportDecoder,
    request: ReportRequest,
    question: str,
    result: InspectionResult | None = None,
) -> Answer:
    """Answer ``question`` about one part, in the question's language (zh or en).

    The answer is cross-checked against the rule engine's ``result`` for the part
    (default: ``request.rules()``): where it states a verdict, a
    count or a clause the rules contradict, the answer says what the rules say, with the
    decoder's words beside it, and the rules' verdict stands.

    Raises
    ------
    UserError
        If the question is empty or longer than ``MAX_QUESTION_CHARS``, or the prompt
        would not fit the decoder's context.
    """
    question = check_question(question)
    result = request.rules() if result is None else result
    start = time.perf_counter()
    language = question_language(question)
    compiler = _compiler(model.tokenizer, model.lm.config.vocab_size)
    grammar = _compile(compiler, answer_json_schema(language))
    prompt = build_prompt(request.standard, request.defects, language, question=question)
    _check_context(model, prompt, len(request.fused))
    (row,) = generate(model, [request.fused], [prompt], [grammar], ANSWER_BUDGET)
    eos = model.tokenizer.eos_token_id
    text = model.tokenizer.decode(row[: row.index(eos)] if eos in row else row)
    seconds = time.perf_counter() - start
    verdict = result.verdict
    try:
        parsed = AnswerModel.model_validate_json(text)
    except ValidationError as exc:
        return Answer("", language, seconds, f"cut short or invalid: {exc}", verdict)
    disagreements = check_answer(parsed.answer, result, request.standard.clause_ids)
    shown = rules_say(result, parsed.answer, language) if disagreements else parsed.answer
    return Answer(shown, language, seconds, None, verdict, parsed.answer, disagreements)


def _check_context(model: ReportDecoder, prompt: str, prefix: int) -> None:
    # Past the LM's positions the answer is garbage (seen: 130 s, then noise).
    limit = getattr(model.lm.config, "max_position_embeddings", None)
    (ids,) = model.encode([prompt])
    needed = prefix + 1 + len(ids) + ANSWER_BUDGET  # fused tokens, <s>, prompt, answer
    if limit is not None and needed > limit:
        raise UserError(
            f"the question and the part's prompt need {needed} positions; the decoder's "
            f"context holds {limit}: ask a shorter question"
        )


def _result(
    tokenizer: PreTrainedTokenizerBase,
    row: list[int],
    request: ReportRequest,
    n_defects: int | None,
    language: str,
    seconds: float,
) -> DecodingResult:
    eos = tokenizer.eos_token_id
    tokens = tuple(row[: row.index(eos)] if eos in row else row)
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    try:
        report = parse_report(text, request.standard, request.part_id, language, n_defects)
    except ValidationError as exc:
        return DecodingResult(None, text, tokens, seconds, f"cut short or invalid: {exc}")
    # The summary restates the fields the grammar bound; decoded, it is free text and
    # named clauses they did not, so it is composed from them (``text`` keeps the decoder's).
    report = replace(report, summary=summarise_report(report, request.standard))
    return DecodingResult(report, text, tokens, seconds)


@functools.lru_cache(maxsize=4)
def _compiler(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> xgr.GrammarCompiler:
    info = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=[tokenizer.eos_token_id]
    )
    return xgr.GrammarCompiler(info)  # caches compiled grammars by schema


def _compile(compiler: xgr.GrammarCompiler, schema: dict) -> xgr.CompiledGrammar:
    # Compact JSON (no free whitespace): the form the decoder is trained on, and bounded.
    return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)


@functools.lru_cache(maxsize=4)
def _suppressed(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    return control_token_ids(tokenizer)
