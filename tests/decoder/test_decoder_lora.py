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


@pytest.mark.parametrize(
    "name",
    ["a b*名", "名", "café", "", "-x", "_x", ".x", "a/b", "a\\b", "..", "a.b", "a" * 65,
     "ACTIVE", "active", "none", "None", "x\n"],
)  # fmt: skip
def test_an_adapter_name_breaking_the_rule_is_refused_with_the_rule(name, tmp_path):
    from inspection.decoder.lora import ADAPTER_NAME_RULE, adapter_dir
    from inspection.errors import UserError

    with pytest.raises(UserError) as refused:
        adapter_dir(tmp_path, name)
    assert str(refused.value) == f"bad adapter name {name!r}: use {ADAPTER_NAME_RULE}"
    assert "ASCII letters, digits, '-' and '_'" in ADAPTER_NAME_RULE


@pytest.mark.parametrize("name", ["bracket-line", "A_1", "7", "a" * 64, "tile_B2-zh"])
def test_adapter_names_within_the_rule_are_folders_under_adapters(name, tmp_path):
    from inspection.decoder.lora import active_adapter, adapter_dir, set_active_adapter

    path = adapter_dir(tmp_path, name)
    assert path == tmp_path / "adapters" / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text("{}", encoding="utf-8")
    set_active_adapter(tmp_path, name)  # the ACTIVE file names it
    assert active_adapter(tmp_path) == name
    set_active_adapter(tmp_path, None)
    assert active_adapter(tmp_path) is None
