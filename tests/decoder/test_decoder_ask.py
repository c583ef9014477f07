"""``ask``: answers held to the rule engine, and questions the decoder can read."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("xgrammar")

import inspection.decoder.decoding as decoding  # noqa: E402
from inspection.decoder.corpus import shipped_standards  # noqa: E402
from inspection.decoder.decoding import ReportRequest, ask  # noqa: E402
from inspection.decoder.model import ReportDecoder  # noqa: E402
from inspection.decoder.reporting import ask_part  # noqa: E402
from inspection.decoder.schema import MAX_QUESTION_CHARS, defects_of  # noqa: E402
from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer  # noqa: E402
from inspection.errors import UserError  # noqa: E402
from inspection.models.outputs import Detection  # noqa: E402
from inspection.pipeline import Inspector, Thresholds  # noqa: E402
from inspection.standards import apply_standard  # noqa: E402
from inspection.types import Defect, Frame, Observation, Verdict  # noqa: E402

CLASSES = ("scratch", "dent", "color_deviation", "crack", "contamination", "missing_feature")


@pytest.fixture(scope="module")
def model():
    corpus = tokenizer_corpus(n_examples=20, n_standards=2, standards=shipped_standards())
    return ReportDecoder.create("tiny", tokenizer=train_tokenizer(corpus, 512), seed=0).eval()


@pytest.fixture
def says(monkeypatch, model):
    """Make the decoder write ``answer`` (the rest of ``ask`` runs as it is); count calls."""
    calls = []

    def stub(answer: str):
        def generate(m, fused, prompts, grammars, max_new_tokens):
            calls.append(prompts)
            text = json.dumps({"answer": answer, "language": "en"}, ensure_ascii=False)
            return [m.encode([text])[0] + [m.tokenizer.eos_token_id]]

        monkeypatch.setattr(decoding, "generate", generate)
        return calls

    return stub


class ScratchDetector:
    """A detection of a 6 mm scratch in zone A at 0.1 mm/px: clause 4.1.1, scrap (or,
    ``region=False``, a high score with no region to measure: REVIEW)."""

    version = "scripted"

    def __init__(self, region: bool = True):
        self.region = region

    def detect(self, image, audio=None):
        maps = np.full((1, 1 + len(CLASSES), 100, 100), -8.0, np.float32)
        if self.region:
            maps[0, 0, 50:52, 20:80] = 4.0
            maps[0, 1, 50:52, 20:80] = 3.0
        one = np.array([4.0], np.float32)
        return Detection(
            maps=maps,
            image_logit=one,
            class_logits=np.zeros((1, len(CLASSES)), np.float32),
            audio_logit=None,
            part_logit=one,
            patch_tokens=np.zeros((1, 4, 32), np.float32),  # the tiny fusion's width
            audio_tokens=None,
            grid=(2, 2),
            classes=CLASSES,
        )


def _observation() -> Observation:
    frame = Frame(np.full((100, 100, 3), 128, np.uint8), camera="c", mm_per_px=0.1)
    return Observation("p1", "station", (frame,))


def test_an_answer_that_says_pass_on_a_rules_reject_says_what_the_rules_say(
    model, says, bracket_standard
):
    says("PASS: no defects found.")
    inspector = Inspector(ScratchDetector(), bracket_standard, Thresholds())
    result, answer = ask_part(inspector, model, _observation(), "Does the part pass?")
    assert result.verdict is Verdict.REJECT and result.clauses == ("4.1.1",)
    assert answer.rules_verdict is Verdict.REJECT and not answer.agreed
    assert answer.decoder_text == "PASS: no defects found."
    assert answer.text == (
        "the rules say REJECT (clause 4.1.1); the decoder's answer disagreed: "
        "PASS: no defects found."
    )
    assert "verdict: answer PASS, rules REJECT" in answer.disagreements


def test_an_agreeing_answer_is_the_decoders(model, says, bracket_standard):
    words = "REJECT: 1 defect(s); worst: scratch in zone A, critical, scrap (clause 4.1.1)."
    says(words)
    inspector = Inspector(ScratchDetector(), bracket_standard, Thresholds())
    _, answer = ask_part(inspector, model, _observation(), "What is the verdict?")
    assert answer.agreed and answer.text == words == answer.decoder_text


def test_ask_holds_the_answer_to_the_result_it_is_given(model, says, bracket_standard):
    """A result the inspector sent to REVIEW (no region for a high score) is not a PASS,
    though the rules on the (no) measurements alone would pass the part."""
    says("PASS: no defects found.")
    request = ReportRequest(np.zeros((8, 64), np.float16), bracket_standard, (), "p")
    assert ask(model, request, "Does it pass?").agreed  # the rules alone: PASS
    review = apply_standard(bracket_standard, [Defect("dent", {"length_mm": 1.0}, zone="A")])
    assert review.verdict is Verdict.REVIEW
    answer = ask(model, request, "Does it pass?", review)
    assert answer.text.startswith("the rules say REVIEW") and not answer.agreed


@pytest.mark.parametrize("question", ["", "   \n\t "])
def test_an_empty_question_is_refused(model, says, bracket_standard, question):
    calls = says("x")
    request = ReportRequest(np.zeros((8, 64), np.float16), bracket_standard, (), "p")
    with pytest.raises(UserError, match="the question is empty"):
        ask(model, request, question)
    inspector = Inspector(ScratchDetector(), bracket_standard, Thresholds())
    with pytest.raises(UserError, match="the question is empty"):
        ask_part(inspector, model, _observation(), question)
    assert calls == []  # nothing decoded


def test_a_question_longer_than_the_cap_is_refused_with_its_length(model, says, bracket_standard):
    calls = says("x")
    request = ReportRequest(np.zeros((8, 64), np.float16), bracket_standard, (), "p")
    longest = "x" * MAX_QUESTION_CHARS
    ask(model, request, longest)
    assert calls[-1][0].count(longest) == 1  # read whole
    for question in ("x" * (MAX_QUESTION_CHARS + 1), "零" * 100_000):
        with pytest.raises(UserError) as refused:
            ask(model, request, question)
        message = str(refused.value)
        assert f"{len(question)} characters" in message and str(MAX_QUESTION_CHARS) in message
    assert len(calls) == 1


def test_the_longest_question_on_the_most_defects_fits_the_context(model, says, bracket_standard):
    """The cap's reasoning, checked: 16 defects with every clause of their class listed
    and a question of the cap in 4-byte characters still fit 4096 positions."""
    calls = says("x")
    defects = [Defect("scratch", {"length_mm": 3.0}, zone=z) for z in "AB" * 8]
    result = apply_standard(bracket_standard, defects, "p")
    request = ReportRequest(np.zeros((8, 64), np.float16), bracket_standard, defects_of(result))
    ask(model, request, "😀" * MAX_QUESTION_CHARS)  # raises UserError if it does not fit
    assert len(calls) == 1


def test_a_prompt_past_the_context_is_refused(model, says, bracket_standard, monkeypatch):
    calls = says("x")
    monkeypatch.setattr(model.lm.config, "max_position_embeddings", 200)
    request = ReportRequest(np.zeros((8, 64), np.float16), bracket_standard, (), "p")
    with pytest.raises(UserError, match="context holds 200"):
        ask(model, request, "Does it pass?")
    assert calls == []


def test_a_part_the_inspector_sent_to_review_is_never_passed_by_its_report(
    model, says, bracket_standard
):
    """A score with no region to measure: REVIEW, though the rules on no measured defect
    would pass. The request holds the report (and answers) to the inspector's verdict."""
    from inspection.decoder.crosscheck import cross_check
    from inspection.decoder.reporting import report_request
    from inspection.decoder.schema import target_report

    inspector = Inspector(ScratchDetector(region=False), bracket_standard, Thresholds())
    result, request = report_request(inspector, model, _observation())
    assert result.verdict is Verdict.REVIEW and result.decisions == ()
    assert request.rules() is result
    passing = target_report(apply_standard(bracket_standard, [], "p1"), bracket_standard)
    assert passing.verdict is Verdict.PASS  # what a decoder sees: no defect
    assert cross_check(request.rules(), passing).final_verdict is Verdict.REVIEW
    says("PASS: no defects found.")
    _, answer = ask_part(inspector, model, _observation(), "Does it pass?")
    assert answer.text.startswith("the rules say REVIEW;") and not answer.agreed
