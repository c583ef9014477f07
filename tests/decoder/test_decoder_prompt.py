"""The prompt (clauses retrieved beside each defect) and the per-part pinned grammar."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from inspection.decoder.corpus import generate_examples, needs_unmeasured, shipped_standards
from inspection.decoder.prompt import build_prompt, measured_values
from inspection.decoder.schema import evidence_field, report_json_schema
from inspection.types import Defect

xgr = pytest.importorskip("xgrammar")


def test_prompt_puts_the_covering_clauses_under_each_defect(bracket_standard):
    defects = (
        Defect("scratch", {"length_mm": 6.2, "width_mm": 0.3}, zone="A"),
        Defect("dent", {"length_mm": 1.0}, zone="B"),
    )
    prompt = build_prompt(bracket_standard, defects, "en")
    scratch, dent = prompt.split("\n1. ")[1].split("\n2. ")
    assert "[4.1.1] length_mm 6.20 > 5.00 ✓ -> critical, scrap" in scratch
    assert (
        "[4.1.2] length_mm 6.20 > 2.00 ✓ and length_mm 6.20 <= 5.00 ✗ -> major, rework"
    ) in scratch
    assert "4.1.3" not in scratch  # zone B only
    assert "[4.2.1] depth_mm ? > 0.30 ? -> critical, scrap" in dent  # not measured
    assert "4.1." not in dent
    assert prompt.rstrip().endswith("Write the inspection report as JSON in English.")


def test_question_prompt_in_chinese(bracket_standard):
    prompt = build_prompt(bracket_standard, (), "zh", question="零件合格吗？")
    assert "问题：零件合格吗？" in prompt and "无" in prompt
    assert prompt.rstrip().endswith("请用中文以 JSON 格式回答。")


def test_needs_unmeasured_sees_a_clause_on_a_missing_value(bracket_standard):
    dent = Defect("dent", {"length_mm": 1.0}, zone="B")  # its clause 4.2.1 needs depth_mm
    assert needs_unmeasured(bracket_standard, [dent])
    measured = Defect("dent", {"length_mm": 1.0, "depth_mm": 0.1}, zone="B")
    assert not needs_unmeasured(bracket_standard, [measured])


def test_unmeasured_fraction_shows_more_parts_with_a_missing_value():
    def share(fraction: float) -> float:
        rng = np.random.default_rng(3)
        examples = list(
            generate_examples(rng, 120, shipped_standards(), unmeasured_fraction=fraction)
        )
        return np.mean([needs_unmeasured(e.standard, e.defects) for e in examples])

    natural, all_redrawn = share(0.0), share(1.0)
    assert natural < 0.5 and all_redrawn > 0.9  # a few standards have no such clause


@pytest.fixture(scope="module")
def compiler():
    from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer

    tokenizer = train_tokenizer(tokenizer_corpus(n_examples=20, n_standards=4), vocab_size=512)
    info = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=len(tokenizer), stop_token_ids=[tokenizer.eos_token_id]
    )
    return tokenizer, xgr.GrammarCompiler(info)


def _accepts(compiler, schema: dict, text: str) -> bool:
    tokenizer, grammar_compiler = compiler
    grammar = grammar_compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
    matcher = xgr.GrammarMatcher(grammar)
    ids = [*tokenizer.encode(text), tokenizer.eos_token_id]
    return all(matcher.accept_token(i) for i in ids) and matcher.is_terminated()


def test_every_target_report_fits_its_pinned_grammar(compiler):
    rng = np.random.default_rng(8)
    for example in generate_examples(rng, 60, shipped_standards()):
        schema = report_json_schema(example.standard, example.language, defects=example.defects)
        assert _accepts(compiler, schema, example.target), example.target


def test_pinned_grammar_refuses_another_class_clause_and_a_wrong_action(compiler, bracket_standard):
    defects = (Defect("scratch", {"length_mm": 6.2}, zone="A"),)
    schema = report_json_schema(bracket_standard, "en", defects=defects)
    evidence = evidence_field(bracket_standard, defects[0], measured_values(defects)[0])
    assert evidence == "4.1.1 ✓ critical scrap; 4.1.2 ✗ major rework"
    good = {
        "defect_class": "scratch",
        "zone": "A",
        "size_mm": 6.2,
        "evidence": evidence,
        "severity": "critical",
        "clause_id": "4.1.1",
        "action": "scrap",
    }
    frame = {"verdict": "REJECT", "summary": "x", "language": "en"}

    def text(defect: dict) -> str:
        return json.dumps({"defects": [defect], **frame}, ensure_ascii=False)

    assert _accepts(compiler, schema, text(good))
    assert not _accepts(compiler, schema, text({**good, "clause_id": "4.2.1"}))  # a dent's
    assert not _accepts(compiler, schema, text({**good, "action": "accept"}))  # not 4.1.1's
    assert not _accepts(compiler, schema, text({**good, "defect_class": "dent"}))  # measured
    assert not _accepts(compiler, schema, text({**good, "size_mm": 6.3}))  # measured
    assert not _accepts(compiler, schema, text({**good, "evidence": "4.1.1 ✓"}))
    # 4.1.2 covers the class and zone, but its condition fails (✗): it cannot be cited.
    failing = {"severity": "major", "clause_id": "4.1.2", "action": "rework"}
    assert not _accepts(compiler, schema, text({**good, **failing}))
    assert _accepts(
        compiler, schema, text({**good, "severity": None, "clause_id": None, "action": "accept"})
    )


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_crowded_part_lists_its_worst_16_and_its_report_fits_the_grammar(
    compiler, bracket_standard, language
):
    from inspection.decoder.schema import report_text, target_report
    from inspection.standards import apply_standard

    # 20 within tolerance, then 4 of clause 4.5.2 (contamination, count >= 3).
    defects = [Defect("scratch", {"length_mm": 1.0}, zone="A")] * 20 + [
        Defect("contamination", {"area_mm2": 0.1}, zone="A")
    ] * 4
    prompt = build_prompt(bracket_standard, defects, language)
    assert "\n16. " in prompt and "\n17. " not in prompt
    assert len(re.findall(r"\n\d+\. contamination", prompt)) == 4  # the worst are listed
    assert prompt.count("count 4.00 >= 3.00 ✓") == 4  # counted over the whole part
    more = "8 more defect(s) not listed: 24 found" if language == "en" else "另有 8 处缺陷未列出"
    assert more in prompt
    schema = report_json_schema(bracket_standard, language, defects=defects)  # used to raise
    result = apply_standard(bracket_standard, defects, "p")
    target = report_text(target_report(result, bracket_standard, language))
    assert _accepts(compiler, schema, target)
    assert not _accepts(
        compiler, schema, target.replace('"omitted_defects": 8', '"omitted_defects": 7')
    )
