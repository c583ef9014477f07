"""The byte-level BPE tokenizer: trained in seconds, any zh/en text round-trips."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from inspection.decoder.corpus import shipped_standards
from inspection.decoder.tokenizer import (
    control_token_ids,
    load_tokenizer,
    save_tokenizer,
    tokenizer_corpus,
    train_tokenizer,
)

TEXTS = [
    "Scratches longer than 5 mm on the visible face are not permitted.",
    "外观面上长度超过 5 毫米的划痕不允许。",
    '{"defects": [], "verdict": "PASS", "summary": "合格：未发现缺陷。", "language": "zh"}',
    "ΔE 3.2, area 0.8 mm², clause §9-Ω.7 😀 — 未见过的字：龘",
    "  leading spaces\tand\nnewlines  ",
]


@pytest.fixture(scope="module")
def tokenizer():
    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    return train_tokenizer(corpus, vocab_size=512)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_merges_learned_and_specials(tokenizer):
    assert len(tokenizer) == 512
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (
        "<pad>",
        "<s>",
        "</s>",
    )
    # The corpus's words are single tokens or few; raw bytes would be one per byte.
    assert len(tokenizer.encode("defect_class", add_special_tokens=False)) <= 3


def test_save_load_same_ids(tokenizer, tmp_path):
    loaded = load_tokenizer(save_tokenizer(tokenizer, tmp_path / "tok"))
    for text in TEXTS:
        assert loaded.encode(text, add_special_tokens=False) == tokenizer.encode(
            text, add_special_tokens=False
        )


def test_control_tokens(tokenizer):
    banned = set(control_token_ids(tokenizer))
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert set(newline) <= banned
    assert not banned & set(tokenizer.encode('{"a": 1.5}', add_special_tokens=False))


def test_digits_are_single_tokens(tokenizer):
    # Numbers are compared digit against digit in the prompt (see decoder.prompt).
    pieces = tokenizer.tokenize("length_mm 16.20 > 5.00")
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("1620500")
