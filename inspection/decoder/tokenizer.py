"""The decoder's tokenizer: byte-level BPE trained on the project's own text.

Byte-level, so that any text round-trips (Chinese, ΔE, mm², a clause id no standard
has used yet) and xgrammar can match tokens byte by byte. Trained with the
``tokenizers`` library on rendered standards (zh and en, shipped and generated) and
target reports; saved and loaded as a ``transformers.PreTrainedTokenizerFast``
directory, as a pretrained model's tokenizer would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from inspection.decoder.corpus import corpus_texts, generate_examples, generate_standard
from inspection.decoder.schema import LANGUAGES
from inspection.standards import Standard, render_standard

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer.

    Parameters
    ----------
    texts
        The corpus (see :func:`tokenizer_corpus`).
    vocab_size
        Target size, special tokens and the 256 byte symbols included.

    Returns
    -------
    PreTrainedTokenizerFast
        With ``<pad>``, ``<s>``, ``</s>`` as pad, bos and eos; adds no special tokens
        itself (the decoder places them).
    """
    tokenizer = Tokenizer(models.BPE())
    # Digits one by one: comparing 6.20 with 5.00 is then digit against digit, which a
    # small LM learns; merged digit groups would each be a symbol to memorise.
    # No prefix space: a report tokenised on its own matches what the decoder generates.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: nothing is unknown
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS
    )


def tokenizer_corpus(
    seed: int = 0,
    n_examples: int = 200,
    n_standards: int = 20,
    standards: Sequence[Standard] = (),
) -> Iterator[str]:
    """Text to train the tokenizer on: standards in both languages, prompts, reports.

    Parameters
    ----------
    seed
        The corpus is a function of it.
    n_examples
        Random parts (prompt + target report each).
    n_standards
        Extra generated standards, rendered in zh and en.
    standards
        The shipped standards (rendered in zh and en; also used for examples).
    """
    rng = np.random.default_rng(seed)
    extra = [generate_standard(rng) for _ in range(n_standards)]
    for standard in (*standards, *extra):
        for language in LANGUAGES:
            yield render_standard(standard, language)
    yield from corpus_texts(list(generate_examples(rng, n_examples, standards)))


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write the tokenizer as a transformers directory; returns the directory."""
    directory = Path(directory)
    tokenizer.save_pretrained(directory)
    return directory


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer directory (never from the hub)."""
    return PreTrainedTokenizerFast.from_pretrained(str(directory), local_files_only=True)


def control_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of tokens whose text holds a control character (newline, tab ...).

    Compact report JSON never contains one, but xgrammar's string grammar lets raw
    control characters through, which strict JSON parsers refuse; decoding suppresses
    these tokens.
    """
    special = set(tokenizer.all_special_ids)
    return [
        i
        for i in range(len(tokenizer))
        if i not in special and any(ord(c) < 32 for c in tokenizer.decode([i]))
    ]
