"""Constrained decoding: a RANDOMLY INITIALISED decoder still writes schema-valid reports."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")

from inspection.decoder.corpus import (  # noqa: E402
    generate_standard,
    random_defects,
    shipped_standards,
)
from inspection.decoder.decoding import DecodingOptions, ReportRequest, decode  # noqa: E402
from inspection.decoder.model import ReportDecoder  # noqa: E402
from inspection.decoder.schema import parse_report, summarise_report  # noqa: E402
from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer  # noqa: E402
from inspection.types import Verdict  # noqa: E402


@pytest.fixture(scope="module")
def model():
    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    return ReportDecoder.create("tiny", tokenizer=train_tokenizer(corpus, 512), seed=0).eval()


@pytest.fixture(scope="module")
def requests():
    rng = np.random.default_rng(7)
    unseen = generate_standard(np.random.default_rng(12345))  # not in the tokenizer corpus
    standards = [*shipped_standards(), unseen]
    return [
        ReportRequest(
            rng.standard_normal((8, 64)).astype(np.float16),
            standard,
            random_defects(rng, standard, max_defects=2),
            f"part-{i}",
        )
        for i, standard in enumerate(standards * 4)
    ]  # 16 parts, 4 standards


def _check(result, request, language):
    assert result.error is None, result.error
    data = json.loads(result.text)
    assert data["language"] == language and len(data["defects"]) == len(request.defects)
    standard = request.standard
    for defect in data["defects"]:
        assert defect["defect_class"] in standard.class_ids
        assert defect["clause_id"] is None or defect["clause_id"] in standard.clause_ids
        assert defect["zone"] is None or defect["zone"] in [z.id for z in standard.zones]
    parsed = parse_report(result.text, standard, request.part_id, language)
    # every field as decoded; the summary composed from them (the decoder's stays in text)
    composed = summarise_report(parsed, standard)
    assert result.report == replace(parsed, summary=composed)
    assert parsed.summary == data["summary"]
    assert result.report.part_id == request.part_id
    assert result.report.standard_version == standard.version


@pytest.mark.parametrize("language", ["en", "zh"])
def test_random_decoder_writes_valid_reports_batch_1(model, requests, language):
    for request in requests[:4]:  # bracket, panel, tile, an unseen generated standard
        (result,) = decode(model, [request], DecodingOptions(language, batch_size=1))
        _check(result, request, language)


def test_random_decoder_writes_valid_reports_batch_16(model, requests):
    results = decode(model, requests, DecodingOptions("en", batch_size=16))
    assert len(results) == 16 and len({r.seconds for r in results}) == 1  # one batch
    for result, request in zip(results, requests, strict=True):
        _check(result, request, "en")
    # Left padding does not change what a part gets.
    (alone,) = decode(model, [requests[5]], DecodingOptions("en", batch_size=1))
    assert alone.tokens == results[5].tokens


def test_a_short_budget_is_reported_not_raised(model, requests):
    (result,) = decode(model, requests[:1], DecodingOptions("en", max_new_tokens=5))
    assert result.report is None and "cut short" in result.error and len(result.tokens) == 5


def test_options_are_checked():
    with pytest.raises(ValueError):
        DecodingOptions(language="de")


def _crowded_request(standard, n=24):
    from inspection.decoder.schema import defects_of
    from inspection.standards import apply_standard
    from inspection.types import Defect

    defects = [Defect("scratch", {"length_mm": 1.0}, zone="A")] * (n - 1) + [
        Defect("crack", {}, zone="A")
    ]
    result = apply_standard(standard, defects, "crowded")
    return ReportRequest(np.zeros((8, 64), np.float16), standard, defects_of(result), "crowded")


def test_a_part_with_more_defects_than_a_report_holds_decodes(model, bracket_standard):
    request = _crowded_request(bracket_standard)
    # Used to raise "n_defects must be in 0..16, not 24" before the first token.
    (result,) = decode(model, [request], DecodingOptions("en", max_new_tokens=5))
    assert "cut short" in result.error and len(result.tokens) == 5


# One listed defect is some 90 tokens of this test tokenizer: a whole report of 16 is long.
@pytest.mark.slow
def test_a_random_decoder_writes_a_valid_report_of_the_worst_16_of_24(model):
    from inspection.decoder.crosscheck import cross_check
    from inspection.standards import parse_standard

    standard = parse_standard(
        """
id: QS-T
title: {en: t, zh: t}
product: t
revision: A
effective: 2025-01-01
zones: [{id: A, name: {en: a, zh: a}, region: [0, 0, 1, 1]}]
defect_classes:
  - {id: scratch, name: {en: scratch, zh: 划痕}}
  - {id: crack, name: {en: crack, zh: 裂纹}}
clauses:
  - {id: "1", defect: crack, severity: critical, action: scrap, text: {en: x, zh: x}}
"""
    )  # scratches have no clause: the shortest evidence ("-"), the fewest tokens
    request = _crowded_request(standard)
    (result,) = decode(model, [request], DecodingOptions("en"))
    assert result.error is None, result.error
    data = json.loads(result.text)
    assert len(data["defects"]) == 16 and data["omitted_defects"] == 8
    assert data["defects"][-1]["defect_class"] == "crack"  # the worst is listed
    check = cross_check(request.rules(), result.report)
    assert check.final_verdict is Verdict.REJECT and not check.agreed
