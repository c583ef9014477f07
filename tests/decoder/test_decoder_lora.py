"""LoRA adapters: saved on their own, loaded side by side, hot-swapped without a reload."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from inspection.decoder.corpus import shipped_standards  # noqa: E402
from inspection.decoder.decoding import ReportRequest, decode  # noqa: E402
from inspection.decoder.lora import (  # noqa: E402
    LoraOptions,
    adapters,
    add_adapter,
    load_adapter,
    save_adapter,
    use_adapter,
)
from inspection.decoder.model import ReportDecoder  # noqa: E402
from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer  # noqa: E402

RANDOM = LoraOptions(rank=4, init_identity=False)  # untrained but not a no-op


@pytest.fixture(scope="module")
def tokenizer():
    corpus = tokenizer_corpus(n_examples=10, n_standards=2, standards=shipped_standards())
    return train_tokenizer(corpus, vocab_size=384)


def _logits(model, fused, ids):
    embeds, mask, _ = model.inputs(fused, ids)
    with torch.no_grad():
        return model.lm(inputs_embeds=embeds, attention_mask=mask).logits


def test_adapters_swap_save_and_load(tokenizer, bracket_standard, tmp_path):
    base_dir = ReportDecoder.create("tiny", tokenizer=tokenizer, seed=0).save(tmp_path / "base")
    model = ReportDecoder.load(base_dir)
    fused, ids = torch.randn(1, 8, 64), model.encode(["Defect standard QS-BRK-200"])
    plain = _logits(model, fused, ids)
    base_weight = model.lm.get_input_embeddings().weight

    torch.manual_seed(1)
    add_adapter(model, "bracket", RANDOM)
    torch.manual_seed(2)
    add_adapter(model, "panel", RANDOM)
    assert adapters(model) == ["bracket", "panel"]
    use_adapter(model, "bracket")
    bracket = _logits(model, fused, ids)
    use_adapter(model, "panel")
    panel = _logits(model, fused, ids)
    assert not torch.allclose(bracket, plain) and not torch.allclose(bracket, panel)
    assert model.lm.get_input_embeddings().weight is base_weight  # base never reloaded
    with model.lm.disable_adapter():
        assert torch.allclose(_logits(model, fused, ids), plain)

    saved = save_adapter(model, "bracket", tmp_path / "adapters")
    weights = sorted(p.name for p in saved.iterdir())
    assert "adapter_model.safetensors" in weights and "adapter_config.json" in weights
    assert (saved / "adapter_model.safetensors").stat().st_size < 0.2 * (
        base_dir / "model.safetensors"
    ).stat().st_size
    with pytest.raises(ValueError, match="LoRA"):
        model.save(tmp_path / "nope")

    fresh = ReportDecoder.load(base_dir)
    load_adapter(fresh, saved, "bracket")
    assert torch.allclose(_logits(fresh, fused, ids), bracket, atol=1e-6)
    (result,) = decode(fresh, [ReportRequest(fused[0].numpy(), bracket_standard)])
    assert result.report is not None  # constrained decoding through the peft wrapper


def test_a_new_adapter_starts_as_a_no_op(tokenizer):
    model = ReportDecoder.create("tiny", tokenizer=tokenizer, seed=0)
    fused, ids = torch.randn(1, 8, 64), model.encode(["x"])
    plain = _logits(model, fused, ids)
    add_adapter(model, "new")
    assert torch.allclose(_logits(model, fused, ids), plain)
    trainable = {n for n, p in model.lm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
