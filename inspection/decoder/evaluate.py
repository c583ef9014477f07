"""Scoring the decoder's reports against the rule engine on the same measurements.

For every part the rule engine, under the part's standard, writes the target report;
the decoder writes its own from the payload and the prompt. The figures (added to
``metrics.json`` by ``inspection evaluate --decoder`` and written by
``inspection decoder evaluate``):

``report_valid_json_rate``
    Reports that parse and validate against the standard's schema.
``report_field_accuracy``
    Mean over the fields ``defect_class``, ``severity``, ``clause_id``, ``action`` of the
    share of defects where the report's value equals the rule engine's (a defect of an
    invalid report counts as wrong in every field); ``report_field_accuracy_by_field``
    gives each, ``report_defect_exact_rate`` the share with all four right.
``report_verdict_accuracy``, ``cross_check_agreement``
    Reports with the rules' verdict; parts whose cross-check found no difference at all.
``rouge_l``
    ROUGE-L F1 of the summary against the reference (words in English, characters in
    Chinese).
``decoder_tokens_per_second``, ``reports_per_second``
    Generated tokens (and reports) over decoding wall time, at the batch size used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from inspection.decoder.corpus import generate_examples
from inspection.decoder.crosscheck import cross_check, field_value
from inspection.decoder.decoding import DecodingOptions, DecodingResult, ReportRequest, decode
from inspection.decoder.model import ReportDecoder
from inspection.decoder.schema import LANGUAGES, target_report
from inspection.decoder.train import random_fused_inputs
from inspection.metrics import rouge_l
from inspection.standards import Standard
from inspection.types import InspectionResult, Report

FIELDS = ("defect_class", "severity", "clause_id", "action")


def score_reports(
    model: ReportDecoder,
    requests: Sequence[ReportRequest],
    batch_size: int = 16,
    languages: Sequence[str] = LANGUAGES,
    progress: bool = True,
) -> dict[str, Any]:
    """Decode ``requests`` (languages in turn) and score them; see the module's figures.

    Parts with a defect class their standard does not define have no valid report (the
    rule engine sends them to REVIEW); they are counted in ``report_parts_outside_standard``
    and left out of the other figures.
    """
    scored, outside = [], 0
    by_language: dict[str, list[tuple[ReportRequest, Report, InspectionResult]]] = {}
    for i, request in enumerate(requests):
        language = languages[i % len(languages)]
        result = request.rules()
        try:
            target = target_report(result, request.standard, language)
        except ValueError:
            outside += 1
            continue
        by_language.setdefault(language, []).append((request, target, result))
    seconds, tokens = 0.0, 0
    bar = tqdm(total=sum(map(len, by_language.values())), desc="reports", disable=not progress)
    for language, items in by_language.items():
        options = DecodingOptions(language=language, batch_size=batch_size)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            results = decode(model, [r for r, _, _ in chunk], options)
            seconds += results[0].seconds
            tokens += sum(len(r.tokens) + 1 for r in results)  # + </s>
            scored += [(res, t, rr) for res, (_, t, rr) in zip(results, chunk, strict=True)]
            bar.update(len(chunk))
    bar.close()
    return {
        **report_metrics(scored),
        "report_parts": len(scored),
        "report_parts_outside_standard": outside,
        "decoder_tokens_per_second": tokens / seconds if seconds else None,
        "reports_per_second": len(scored) / seconds if seconds else None,
        "decoder_batch_size": batch_size,
    }


def report_metrics(scored: Sequence[tuple[DecodingResult, Report, InspectionResult]]) -> dict:
    """Figures of decoded reports against targets (``(decoded, target, rules)`` triples)."""
    if not scored:
        return {"report_valid_json_rate": None, "report_field_accuracy": None}
    right = {f: 0 for f in FIELDS}
    exact = n_defects = agreed = verdicts = 0
    rouge = []
    for decoded, target, rules in scored:
        report = decoded.report
        n_defects += len(target.defects)
        agreed += cross_check(rules, report).agreed
        if report is None:
            rouge.append(0.0)
            continue
        verdicts += report.verdict is target.verdict
        # the decoder's own summary (the report's is composed from its fields)
        written = json.loads(decoded.text)["summary"]
        rouge.append(rouge_l(written, target.summary, target.language == "zh"))
        for ours, truth in zip(report.defects, target.defects, strict=False):
            hits = [field_value(ours, f) == field_value(truth, f) for f in FIELDS]
            exact += all(hits)
            for f, hit in zip(FIELDS, hits, strict=True):
                right[f] += hit
    by_field = {f: right[f] / n_defects if n_defects else None for f in FIELDS}
    n = len(scored)
    return {
        "report_valid_json_rate": sum(d.report is not None for d, _, _ in scored) / n,
        "report_field_accuracy": (float(np.mean(list(by_field.values()))) if n_defects else None),
        "report_field_accuracy_by_field": by_field,
        "report_defect_exact_rate": exact / n_defects if n_defects else None,
        "report_defects": n_defects,
        "report_verdict_accuracy": verdicts / n,
        "cross_check_agreement": agreed / n,
        "rouge_l": float(np.mean(rouge)),
    }


def held_out_requests(
    model: ReportDecoder,
    n: int,
    seed: int,
    standards: Sequence[Standard] = (),
    generated_fraction: float = 0.5,
) -> list[ReportRequest]:
    """``n`` parts drawn as in training but from another seed: with ``standards`` empty
    (or ``generated_fraction`` 1) every part is under a standard no training run saw."""
    rng = np.random.default_rng([seed, 7_777_777])
    examples = list(generate_examples(rng, n, standards, generated_fraction))
    patches, maps, audio = random_fused_inputs(model, n, seed, 7_777_777)
    with torch.no_grad():
        fused = model.fuse(patches, maps, audio).to(torch.float16).numpy()  # (n, N, D)
    return [
        ReportRequest(fused[i], e.standard, e.defects, part_id=f"held-out-{i:05d}")
        for i, e in enumerate(examples)
    ]
