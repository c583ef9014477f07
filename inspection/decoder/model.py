"""The report decoder: fusion resampler, projector, causal LM (LLaVA's prefix pattern).

The fused tokens ``(B, N, D)`` go through a two-layer MLP into the LM's embedding space
and are prepended to the prompt's embeddings (standard, measured defects, instruction);
the LM then writes the report. Training puts the loss on the report tokens only.

The LM is a transformers causal LM: a ``LlamaForCausalLM`` built from a small
``LlamaConfig`` for ``tiny`` / ``small`` (trained here, with a tokenizer trained here),
or, for ``base``, a local Hugging Face model directory (never downloaded).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from inspection.config import REPO_ROOT, get_settings
from inspection.decoder.corpus import shipped_standards
from inspection.decoder.fusion import FusionConfig, FusionResampler
from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer
from inspection.errors import ModelError, one_line
from inspection.fields import kind_problems, unknown_fields
from inspection.models.card import check_files, covering_manifest
from inspection.models.fusion import heads_part
from inspection.models.outputs import Detection

FORMAT = "inspection.report-decoder/1"
CONFIG_FILE = "decoder.json"
WEIGHTS_FILE = "model.safetensors"
IGNORE_INDEX = -100  # transformers' label for "no loss here"


@dataclass(frozen=True)
class DecoderConfig:
    """Everything that fixes a report decoder's architecture.

    Attributes
    ----------
    name : str
        Registry name (``models/decoder/<name>.yaml``).
    fusion : FusionConfig
        The resampler; its input widths match the detection model's.
    lm : Mapping[str, Any]
        ``LlamaConfig`` fields of an LM built here (ignored when ``lm_path`` is set).
    lm_path : str | None
        A local Hugging Face causal-LM directory (``base``); loaded with
        ``local_files_only=True``.
    vocab_size : int
        Size of the tokenizer trained here (ignored when ``lm_path`` is set).
    description : str
        For people.
    """

    name: str
    fusion: FusionConfig = field(default_factory=FusionConfig)
    lm: Mapping[str, Any] = field(default_factory=dict)
    lm_path: str | None = None
    vocab_size: int = 2048
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = kind_problems(self)
        if not problems and self.vocab_size < 1:
            problems.append("vocab_size must be >= 1")
        if problems:
            raise ValueError(f"decoder config {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecoderConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        unknown = unknown_fields(cls, data)
        if unknown:
            raise ValueError(f"unknown decoder config fields: {', '.join(unknown)}")
        data = dict(data)
        for section in ("fusion", "lm"):
            if not isinstance(data.get(section) or {}, Mapping):
                raise ValueError(f"decoder config: {section} must be a mapping of fields")
        data["fusion"] = FusionConfig.from_dict(dict(data.get("fusion") or {}))
        data["lm"] = dict(data.get("lm") or {})
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fusion": self.fusion.to_dict(),
            "lm": dict(self.lm),
            "lm_path": self.lm_path,
            "vocab_size": self.vocab_size,
            "description": self.description,
        }


def decoder_config_dirs() -> list[Path]:
    """Where decoder configs live: ``<models_dir>/decoder`` then the repository's."""
    dirs = [get_settings().models_dir / "decoder", REPO_ROOT / "models" / "decoder"]
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def get_decoder_config(name: str | Path) -> DecoderConfig:
    """The config named ``name`` (``tiny``, ``small``, ``base``) or in a YAML file.

    Raises
    ------
    ModelError
        An unknown name, a missing or unreadable file, or fields a config refuses.
    """
    path = Path(name)
    if not str(name).endswith((".yaml", ".yml")):
        found = [
            d / f"{name}.yaml" for d in decoder_config_dirs() if (d / f"{name}.yaml").is_file()
        ]
        if not found:
            known = sorted({p.stem for d in decoder_config_dirs() for p in d.glob("*.yaml")})
            raise ModelError(f"unknown decoder {name!r}; known: {', '.join(known)}")
        path = found[0]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a readable YAML decoder config: {one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a decoder config is a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        return DecoderConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: {exc}") from exc


class Projector(nn.Module):
    """Fused tokens into the LM's embedding space: Linear, GELU, Linear (LLaVA-1.5)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))  # (B, N, H)


class ReportDecoder(nn.Module):
    """Fusion + projector + causal LM, with the tokenizer it was trained with.

    Build with :meth:`create`, restore with :meth:`load`.
    """

    def __init__(
        self, config: DecoderConfig, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
    ):
        super().__init__()
        self.config = config
        self.fusion = FusionResampler(config.fusion)
        self.projector = Projector(config.fusion.dim, lm.get_input_embeddings().embedding_dim)
        self.lm = lm
        self.tokenizer = tokenizer

    # -- construction -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        config: str | Path | DecoderConfig,
        tokenizer: PreTrainedTokenizerBase | None = None,
        lm_path: str | Path | None = None,
        seed: int | None = 0,
    ) -> ReportDecoder:
        """A new decoder with random fusion and projector weights.

        Parameters
        ----------
        config
            A config name (``tiny``, ``small``, ``base``), YAML path or config.
        tokenizer
            For an LM built here; ``None`` trains one on the generated corpus (seconds).
            A pretrained LM (``lm_path``) always uses its own.
        lm_path
            Overrides the config's ``lm_path``: a local Hugging Face model directory.
        seed
            Seeds torch before the random initialisation (``None``: leave it alone).
        """
        if not isinstance(config, DecoderConfig):
            config = get_decoder_config(config)
        if lm_path is not None:
            config = DecoderConfig.from_dict({**config.to_dict(), "lm_path": str(lm_path)})
        if seed is not None:
            torch.manual_seed(seed)
        if config.lm_path:
            lm, tokenizer = _pretrained_lm(Path(config.lm_path).expanduser())
        else:
            if tokenizer is None:
                corpus = tokenizer_corpus(standards=shipped_standards())
                tokenizer = train_tokenizer(corpus, config.vocab_size)
            lm = LlamaForCausalLM(_llama_config(config, tokenizer))
        return cls(config, lm, tokenizer)

    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Weights (safetensors), configs and tokenizer in one directory.

        ``dtype`` (e.g. ``torch.float16``) stores the weights in that type, to ship them
        at half the size; :meth:`load` brings them back to float32.
        """
        if hasattr(self.lm, "peft_config"):  # LoRA layers live inside the base modules
            raise ValueError(
                "this decoder carries LoRA adapters: save them with "
                "inspection.decoder.lora.save_adapter, and the base before adding them"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "config": self.config.to_dict()}
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        self.lm.config.save_pretrained(directory / "lm")
        self.tokenizer.save_pretrained(directory / "tokenizer")
        # save_model handles tied embeddings, which safetensors' save_file refuses.
        module = self if dtype is None else copy.deepcopy(self).to(dtype)
        save_model(module, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, device: str | torch.device = "cpu", verify: bool = True
    ) -> ReportDecoder:
        """Restore a decoder written by :meth:`save` (nothing is downloaded).

        Parameters
        ----------
        directory : str | Path
            The decoder's folder.
        device : str | torch.device
            Torch device.
        verify : bool
            Inside a shipped model (``MODEL/decoder``, or a folder with its own
            ``manifest.json``), refuse files that differ from the manifest's SHA-256
            first; ``False`` only for development. A decoder outside a packaged model
            has no recorded hashes.

        Raises
        ------
        ModelError
            A missing folder or file, a file that differs from the manifest, or one the
            libraries cannot read, naming it.
        """
        directory = Path(directory)
        if verify:
            _verify_files(directory)
        check_decoder_dir(directory)
        config = _read_decoder_json(directory / CONFIG_FILE)
        try:
            lm_config = AutoConfig.from_pretrained(directory / "lm", local_files_only=True)
        except (OSError, ValueError) as exc:  # transformers: not JSON, or no known model_type
            raise ModelError(f"{directory / 'lm'}: unusable LM config ({exc})") from exc
        lm = AutoModelForCausalLM.from_config(lm_config)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                directory / "tokenizer", local_files_only=True
            )
        except (OSError, ValueError, KeyError) as exc:  # missing, not JSON, missing fields
            raise ModelError(f"{directory / 'tokenizer'}: unusable tokenizer ({exc!r})") from exc
        model = cls(config, lm, tokenizer)
        try:
            load_model(model, str(directory / WEIGHTS_FILE), device=str(device))
        except SafetensorError as exc:  # truncated or corrupt
            raise ModelError(
                f"{directory / WEIGHTS_FILE}: not a readable safetensors file ({exc})"
            ) from exc
        return model.eval()

    # -- the forward path ---------------------------------------------------------

    def fuse(
        self, patch_tokens: Tensor, maps: Tensor, audio_tokens: Tensor | None = None
    ) -> Tensor:
        """Fused tokens ``(B, N, D)`` (the edge's payload) from detection outputs."""
        return self.fusion(patch_tokens, maps, audio_tokens)

    def fuse_detection(self, detection: Detection) -> np.ndarray:
        """The float16 payload ``(B, N, D)`` of a numpy :class:`Detection`.

        A detection of heads fused with a normality model
        (:class:`~inspection.models.fusion.FusedDetector`) carries one map channel more
        than the heads', last: the normality model's ``anomaly`` class, which the decoder
        was never trained to read. It reads the heads' channels; the defects the rules
        decided, ``anomaly`` ones included, still reach it in the prompt.
        """
        param = next(self.fusion.parameters())
        detection = heads_part(detection)

        def t(a: np.ndarray | None) -> Tensor | None:
            return None if a is None else torch.as_tensor(a, dtype=param.dtype, device=param.device)

        with torch.no_grad():
            fused = self.fuse(
                t(detection.patch_tokens), t(detection.maps), t(detection.audio_tokens)
            )
        return fused.to(torch.float16).cpu().numpy()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens added."""
        return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def inputs(
        self,
        fused: Tensor,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]] | None = None,
        pad_left: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """LM inputs ``[prefix][<s> prompt][target </s>]``, padded into one batch.

        Parameters
        ----------
        fused : Tensor
            ``(B, N, D)`` fused tokens.
        prompt_ids, target_ids
            Token ids per row; targets are left out for generation.
        pad_left
            Left-pad (generation: every row then ends where its next token goes).

        Returns
        -------
        tuple[Tensor, Tensor, Tensor]
            ``inputs_embeds (B, L, H)``, ``attention_mask (B, L)``, ``labels (B, L)``
            (``-100`` except on target tokens and the closing ``</s>``).
        """
        embed = self.lm.get_input_embeddings()
        device = embed.weight.device
        prefix = self.projector(fused.to(device)).to(embed.weight.dtype)  # (B, N, H)
        bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        rows, labels = [], []
        for b, prompt in enumerate(prompt_ids):
            target = [*target_ids[b], self.tokenizer.eos_token_id] if target_ids else []
            ids = torch.tensor([*bos, *prompt, *target], dtype=torch.long, device=device)
            rows.append(torch.cat([prefix[b], embed(ids)]))  # (N + T_b, H)
            ignored = prefix.shape[1] + len(ids) - len(target)
            labels.append(torch.tensor([IGNORE_INDEX] * ignored + target, device=device))
        return _pad(rows, labels, pad_left)

    def forward(
        self,
        fused: Tensor,
        prompt_ids: Sequence[Sequence[int]],
        target_ids: Sequence[Sequence[int]],
        target_weights: Sequence[Sequence[float]] | None = None,
    ) -> Tensor:
        """Mean cross-entropy of the target report tokens (and ``</s>``) given the prefix
        and the prompt; the prefix and prompt themselves carry no loss.

        ``target_weights`` (one per target token; ``</s>`` counts 1) makes it a weighted
        mean, e.g. to train on the tokens the grammar leaves free (see
        :func:`inspection.decoder.train.free_token_weights`).
        """
        embeds, mask, labels = self.inputs(fused, prompt_ids, target_ids)
        base = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        body, head = getattr(base, "model", None), getattr(base, "lm_head", None)
        if body is None or head is None:  # an LM of another layout: the generic path
            return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss
        # Logits only where there is a loss: the prompt is most of the sequence, and the
        # vocabulary projection is the LM's largest matrix product.
        hidden = body(inputs_embeds=embeds, attention_mask=mask).last_hidden_state  # (B, L, H)
        targets = labels[:, 1:]  # (B, L-1): position t predicts token t + 1
        keep = targets != IGNORE_INDEX
        logits = head(hidden[:, :-1][keep])  # (K, V)
        if target_weights is None:
            return nn.functional.cross_entropy(logits.float(), targets[keep])
        # Row-major order of `keep` is each row's target tokens then its </s>.
        w = torch.tensor(
            [x for row in target_weights for x in (*row, 1.0)], device=logits.device
        )  # (K,)
        ce = nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none")
        return (w * ce).sum() / w.sum()


def _pad(rows: list[Tensor], labels: list[Tensor], left: bool) -> tuple[Tensor, Tensor, Tensor]:
    length = max(r.shape[0] for r in rows)
    b, h = len(rows), rows[0].shape[1]
    embeds = rows[0].new_zeros(b, length, h)  # (B, L, H)
    mask = torch.zeros(b, length, dtype=torch.long, device=rows[0].device)  # (B, L)
    out_labels = torch.full((b, length), IGNORE_INDEX, device=rows[0].device)  # (B, L)
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        span = slice(length - row.shape[0], length) if left else slice(0, row.shape[0])
        embeds[i, span], mask[i, span], out_labels[i, span] = row, 1, label
    return embeds, mask, out_labels


def check_decoder_dir(directory: Path) -> None:
    """Refuse a folder that is not a saved decoder, naming what it lacks.

    Raises
    ------
    ModelError
        When the folder, or one of the files a decoder is loaded from, is missing.
    """
    needed = (CONFIG_FILE, "lm", "tokenizer", WEIGHTS_FILE)
    missing = [n for n in needed if not (directory / n).exists()]
    if missing:
        what = "no such folder" if not directory.is_dir() else f"no {', '.join(missing)}"
        raise ModelError(f"{directory}: not a report decoder directory ({what})")


def _verify_files(directory: Path) -> None:
    """Check the decoder's files against the manifest of the model it ships in (its own
    folder's or its parent's); ``adapters/ACTIVE`` is a setting (``inspection adapters
    activate`` changes it), not a model file, and is not checked."""
    from inspection.decoder.lora import ACTIVE_FILE, ADAPTERS_DIR

    found = covering_manifest(directory)
    if found is None:
        return
    manifest, files = found
    files.pop(f"{ADAPTERS_DIR}/{ACTIVE_FILE}", None)
    check_files(directory, files, str(manifest))


def _read_decoder_json(path: Path) -> DecoderConfig:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(f"{path}: not a report decoder config (format {found!r}, not {FORMAT!r})")
    try:
        return DecoderConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:  # fields the config refuses
        raise ModelError(f"{path}: unusable decoder config ({exc})") from exc


def _llama_config(config: DecoderConfig, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    return LlamaConfig(
        **{
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,  # small vocabularies: halves the embedding weights
            **config.lm,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
    )


def _pretrained_lm(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no local Hugging Face model directory (lm_path)")
    lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None:  # many causal LMs ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return lm, tokenizer
