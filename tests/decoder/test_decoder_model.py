"""Prefix + prompt forward, loss on the report only, overfit sanity, save/load."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from inspection.decoder.corpus import make_example, shipped_standards  # noqa: E402
from inspection.decoder.decoding import DecodingOptions, ReportRequest, decode  # noqa: E402
from inspection.decoder.model import ReportDecoder, get_decoder_config  # noqa: E402
from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer  # noqa: E402
from inspection.errors import ModelError  # noqa: E402
from inspection.types import Defect  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    return train_tokenizer(corpus, vocab_size=512)


@pytest.fixture(scope="module")
def example(bracket_standard):
    defects = [Defect("scratch", {"length_mm": 3.4, "width_mm": 0.2}, zone="A")]
    return make_example(bracket_standard, defects, "zh", part_id="p1")


def test_configs_resolve():
    tiny, small = get_decoder_config("tiny"), get_decoder_config("small")
    assert tiny.lm["hidden_size"] == 64 and small.lm["num_hidden_layers"] == 4
    assert get_decoder_config("base").lm_path is None
    with pytest.raises(ModelError, match="tiny"):
        get_decoder_config("nope")


@pytest.mark.parametrize(
    "text, message",
    [
        ("fusion:\n  dim: lots\n", "dim must be a whole number, not 'lots'"),
        ("fusion:\n  colour: 3\n", "unknown fusion config fields: colour"),
        ("fusion:\n  dim: 0\n", "dim must be >= 1"),
        ("fusion:\n  dim: 30\n  heads: 4\n", "dim 30 not divisible by heads 4"),
        ("fusion: [1, 2]\n", "fusion must be a mapping"),
        ("vocab_size: 1e3\n", "vocab_size must be a whole number"),
        ("lm_path: 3\n", "lm_path must be text"),
        ("colour: 3\n", "unknown decoder config fields: colour"),
        ("fusion: {\n", "not a readable YAML decoder config: while parsing"),
        ("- 1\n", "a mapping of fields"),
    ],
)
def test_malformed_decoder_configs_are_refused_by_name(tmp_path, text, message):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ModelError, match=message) as caught:
        get_decoder_config(path)
    assert "\n" not in str(caught.value) and "mine.yaml" in str(caught.value)


def test_loss_only_on_the_report(tokenizer, example):
    torch.manual_seed(0)
    model = ReportDecoder.create("tiny", tokenizer=tokenizer)
    fused = torch.randn(2, 8, 64)
    prompts = model.encode([example.prompt, "short prompt"])
    targets = model.encode([example.target, "{}"])
    embeds, mask, labels = model.inputs(fused, prompts, targets)
    assert embeds.shape == (2, 8 + 1 + len(prompts[0]) + len(targets[0]) + 1, 64)
    assert (labels != -100).sum(1).tolist() == [len(targets[0]) + 1, len(targets[1]) + 1]
    assert mask[1].sum() == 8 + 1 + len(prompts[1]) + 3  # right-padded
    loss = model(fused, prompts, targets)
    assert torch.isfinite(loss) and abs(loss.item() - np.log(len(tokenizer))) < 1.5


def test_overfits_one_example(tokenizer, example):
    torch.manual_seed(0)
    model = ReportDecoder.create("tiny", tokenizer=tokenizer).train()
    fused = torch.randn(1, 8, 64)
    prompt, target = model.encode([example.prompt]), model.encode([example.target])
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(fused, prompt, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_save_load_identical_outputs(tokenizer, example, bracket_standard, tmp_path):
    model = ReportDecoder.create("tiny", tokenizer=tokenizer, seed=1).eval()
    loaded = ReportDecoder.load(model.save(tmp_path / "dec"))
    fused = torch.randn(1, 8, 64)
    prompt, target = model.encode([example.prompt]), model.encode([example.target])
    with torch.no_grad():
        assert torch.equal(model(fused, prompt, target), loaded(fused, prompt, target))
    request = ReportRequest(fused[0].numpy(), bracket_standard, example.defects, "p1")
    first, second = (decode(m, [request], DecodingOptions("zh"))[0] for m in (model, loaded))
    assert first.tokens == second.tokens and first.report == second.report


def test_pretrained_lm_from_a_local_directory(tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            eos_token_id=tokenizer.eos_token_id,
        )
    )
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    model = ReportDecoder.create("base", lm_path=tmp_path / "lm")
    assert model.projector.fc2.out_features == 32 and model.config.fusion.image_dim == 768
    with torch.no_grad():
        fused = model.fuse(torch.randn(1, 196, 768), torch.randn(1, 7, 56, 56))
        loss = model(fused, model.encode(["prompt"]), model.encode(["{}"]))
    assert fused.shape == (1, 32, 256) and torch.isfinite(loss)


@pytest.mark.parametrize("audio", [False, True])
def test_payload_of_a_detection(tokenizer, audio):
    from inspection.decoder.fusion import payload_bytes
    from inspection.models.outputs import Detection

    rng = np.random.default_rng(0)
    detection = Detection(
        maps=rng.standard_normal((2, 7, 64, 64)).astype(np.float32),
        image_logit=np.zeros(2, np.float32),
        class_logits=np.zeros((2, 6), np.float32),
        audio_logit=np.zeros(2, np.float32) if audio else None,
        part_logit=np.zeros(2, np.float32),
        patch_tokens=rng.standard_normal((2, 16, 32)).astype(np.float32),
        audio_tokens=rng.standard_normal((2, 50, 32)).astype(np.float32) if audio else None,
        grid=(4, 4),
    )
    model = ReportDecoder.create("tiny", tokenizer=tokenizer)
    payload = model.fuse_detection(detection)
    assert payload.shape == (2, 8, 64) and payload.dtype == np.float16
    assert payload[0].nbytes == payload_bytes(model.config.fusion) == 1024
    # heads fused with a normality model: their channels, the appended anomaly one unread
    classes = ("scratch", "dent", "color_deviation", "crack", "contamination", "other")
    extra = rng.standard_normal((2, 1, 64, 64)).astype(np.float32)
    fused = replace(
        detection,
        maps=np.concatenate([detection.maps, extra], axis=1),
        classes=(*classes, "anomaly"),
    )
    np.testing.assert_array_equal(model.fuse_detection(fused), payload)
    with pytest.raises(RuntimeError):  # any other channel count is not the heads'
        model.fuse_detection(replace(fused, classes=(*classes, "scuff")))
