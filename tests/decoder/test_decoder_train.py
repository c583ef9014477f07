"""Decoder training: it learns, it resumes exactly, adapters train alone; evaluation figures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from inspection.decoder import train as train_module  # noqa: E402
from inspection.decoder.corpus import generate_examples, shipped_standards  # noqa: E402
from inspection.decoder.decoding import DecodingResult, ReportRequest, ask  # noqa: E402
from inspection.decoder.evaluate import held_out_requests, report_metrics  # noqa: E402
from inspection.decoder.lora import (  # noqa: E402
    adapter_dir,
    load_decoder,
    saved_adapters,
    set_active_adapter,
)
from inspection.decoder.model import ReportDecoder  # noqa: E402
from inspection.decoder.schema import parse_report, report_text, target_report  # noqa: E402
from inspection.decoder.train import DecoderTrainOptions, train_decoder  # noqa: E402
from inspection.types import Action, Verdict  # noqa: E402


def _options(tmp_path, **kw) -> DecoderTrainOptions:
    base = dict(out=tmp_path / "dec", config="tiny", steps=4, batch_size=4, progress=False)
    return DecoderTrainOptions(**{**base, **kw})


@pytest.mark.slow
def test_tiny_decoder_learns(tmp_path):
    result = train_decoder(_options(tmp_path, steps=40, batch_size=8, lr=3e-3))
    losses = [
        float(line.split('"loss": ')[1].rstrip("}\n"))
        for line in (tmp_path / "dec" / train_module.LOG_FILE).read_text().splitlines()
    ]
    assert result.steps == 40
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    model = ReportDecoder.load(tmp_path / "dec")  # the saved decoder loads and decodes
    assert model.config.name == "tiny"


@pytest.mark.slow
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    straight = _options(tmp_path / "a", steps=4, checkpoint_every=2)
    train_decoder(straight)

    crashing = _options(tmp_path / "b", steps=4, checkpoint_every=2)
    real = train_module.batch_examples

    def crash_at_step_3(options, standards, step):
        if step == 3:
            raise KeyboardInterrupt("power cut")
        return real(options, standards, step)

    monkeypatch.setattr(train_module, "batch_examples", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_decoder(crashing)
    monkeypatch.setattr(train_module, "batch_examples", real)
    train_decoder(replace(crashing, resume=True))

    a = ReportDecoder.load(tmp_path / "a" / "dec").state_dict()
    b = ReportDecoder.load(tmp_path / "b" / "dec").state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_needs_a_state(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume"):
        train_decoder(_options(tmp_path, resume=True))


def test_adapter_trains_alone_and_is_listed(tmp_path, bracket_standard):
    train_decoder(_options(tmp_path, steps=2))
    decoder_dir = tmp_path / "dec"
    base_before = ReportDecoder.load(decoder_dir).state_dict()
    target = adapter_dir(decoder_dir, "bracket-line")
    result = train_decoder(
        _options(
            tmp_path,
            out=target,
            init=decoder_dir,
            adapter="bracket-line",
            standards=(bracket_standard_path(),),
            generated_fraction=0.0,
            steps=3,
            lr=5e-2,
        )
    )
    assert (target / "adapter_config.json").is_file()
    assert (target / "adapter_model.safetensors").is_file()
    assert result.trainable_parameters < sum(v.numel() for v in base_before.values()) / 5
    base_after = ReportDecoder.load(decoder_dir).state_dict()
    for key in base_before:  # the base on disk is untouched
        assert torch.equal(base_before[key], base_after[key]), key

    assert [a.name for a in saved_adapters(decoder_dir)] == ["bracket-line"]
    set_active_adapter(decoder_dir, "bracket-line")
    assert saved_adapters(decoder_dir)[0].active
    model = load_decoder(decoder_dir)
    assert model.lm.active_adapter == "bracket-line"
    with pytest.raises(KeyError, match="no adapter"):
        set_active_adapter(decoder_dir, "missing")
    with pytest.raises(ValueError, match="bad adapter name"):
        adapter_dir(decoder_dir, "../escape")


def bracket_standard_path():
    from inspection.config import standard_path

    return standard_path("bracket")


@pytest.fixture(scope="module")
def tiny_decoder():
    return ReportDecoder.create("tiny", seed=3)


@pytest.mark.parametrize(
    ("question", "language"), [("Is this part acceptable?", "en"), ("这个零件合格吗？", "zh")]
)
def test_ask_answers_valid_json_in_the_question_language(tiny_decoder, question, language):
    request = held_out_requests(tiny_decoder, 1, seed=11)[0]
    answer = ask(tiny_decoder, request, question)
    assert answer.error is None
    assert answer.language == language


def _scored(n: int):
    rng = np.random.default_rng(4)
    examples = [e for e in generate_examples(rng, n, shipped_standards()) if e.defects]
    triples = []
    for e in examples:
        target = target_report(e.result, e.standard, e.language)
        text = report_text(target)  # as decoded: the report's JSON
        decoded = parse_report(text, e.standard, n_defects=len(e.defects))
        triples.append((DecodingResult(decoded, text, (), 0.0), target, e.result))
    return triples


def test_report_metrics_of_perfect_and_spoiled_reports():
    perfect = _scored(12)
    metrics = report_metrics(perfect)
    assert metrics["report_valid_json_rate"] == 1.0
    assert metrics["report_field_accuracy"] == 1.0
    assert metrics["cross_check_agreement"] == 1.0
    assert metrics["rouge_l"] == pytest.approx(1.0)

    spoiled = []
    for decoded, target, rules in perfect:
        report = decoded.report
        first = replace(report.defects[0], action=Action.SCRAP, clause_id="nowhere")
        flipped = Verdict.PASS if report.verdict is not Verdict.PASS else Verdict.REJECT
        report = replace(report, defects=(first, *report.defects[1:]), verdict=flipped)
        spoiled.append((replace(decoded, report=report), target, rules))
    spoiled.append((DecodingResult(None, "", (), 0.0, "cut"), perfect[0][1], perfect[0][2]))
    metrics = report_metrics(spoiled)
    assert metrics["report_valid_json_rate"] == pytest.approx(len(perfect) / len(spoiled))
    assert metrics["report_field_accuracy_by_field"]["clause_id"] < 1.0
    assert metrics["report_verdict_accuracy"] == 0.0
    assert metrics["cross_check_agreement"] == 0.0


def test_held_out_requests_are_deterministic_and_under_unseen_standards(tiny_decoder):
    a = held_out_requests(tiny_decoder, 4, seed=21)
    b = held_out_requests(tiny_decoder, 4, seed=21)
    assert [r.standard.version for r in a] == [r.standard.version for r in b]
    assert all(isinstance(r, ReportRequest) and r.fused.dtype == np.float16 for r in a)
    shipped = {s.version for s in shipped_standards()}
    assert not shipped & {r.standard.version for r in a}


def test_loss_weights_fall_on_what_the_grammar_leaves_free(tiny_decoder):
    from inspection.decoder.train import PINNED_WEIGHT, free_token_weights

    rng = np.random.default_rng(6)
    example = next(e for e in generate_examples(rng, 20, shipped_standards()) if e.defects)
    ids, weights = free_token_weights(tiny_decoder.tokenizer, example.target)
    assert ids == tiny_decoder.encode([example.target])[0]
    free = tiny_decoder.tokenizer.decode([i for i, w in zip(ids, weights, strict=True) if w == 1])
    pinned = tiny_decoder.tokenizer.decode(
        [i for i, w in zip(ids, weights, strict=True) if w == PINNED_WEIGHT]
    )
    assert example.result.verdict.value in free and example.defects[0].defect_class in pinned
    assert "evidence" in pinned and "evidence" not in free
