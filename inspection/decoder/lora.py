"""LoRA adapters on the decoder's LM (peft): one per product line, swapped at run time.

An adapter holds only the low-rank weights of the LM's attention projections, so it is
saved on its own (kilobytes to megabytes), loaded next to others on one base model and
switched by name without reloading the base. The fusion resampler and the projector
are shared by every product line and stay outside the adapters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peft import LoraConfig, PeftModel, TaskType, get_peft_model

from inspection.decoder.model import ReportDecoder
from inspection.errors import UserError


@dataclass(frozen=True)
class LoraOptions:
    """Shape of an adapter.

    Attributes
    ----------
    rank, alpha, dropout : int, int, float
        LoRA's ``r``, ``lora_alpha`` and ``lora_dropout``.
    target_modules : tuple[str, ...]
        LM modules that get adapters (Llama's attention projections by default).
    init_identity : bool
        True: a new adapter starts as a no-op (LoRA's ``B = 0``), as for training.
        False: random, so that an untrained adapter visibly changes the output (tests).
    """

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    init_identity: bool = True

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha < 1 or not 0.0 <= self.dropout < 1.0:
            raise UserError(
                f"LoRA --rank and alpha must be >= 1 and dropout in [0, 1), not "
                f"{self.rank}, {self.alpha} and {self.dropout}"
            )

    def peft_config(self) -> LoraConfig:
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            init_lora_weights=self.init_identity,
        )


def is_wrapped(model: ReportDecoder) -> bool:
    """The decoder's LM carries peft adapters."""
    return isinstance(model.lm, PeftModel)


def add_adapter(model: ReportDecoder, name: str, options: LoraOptions = LoraOptions()) -> None:
    """Add a new adapter ``name`` to the LM and make it the active one.

    Only the adapter's weights are then trainable in the LM (fusion and projector keep
    their ``requires_grad``; freeze them yourself to train the adapter alone).
    """
    if not is_wrapped(model):
        model.lm = get_peft_model(model.lm, options.peft_config(), adapter_name=name)
    else:
        model.lm.add_adapter(name, options.peft_config())
    model.lm.set_adapter(name)


def save_adapter(model: ReportDecoder, name: str, directory: str | Path) -> Path:
    """Write adapter ``name`` alone (``adapter_config.json`` + safetensors).

    Returns
    -------
    Path
        The adapter's directory (peft puts a non-default adapter in ``directory/name``).
    """
    _require_wrapped(model)
    directory = Path(directory)
    model.lm.save_pretrained(directory, selected_adapters=[name])
    return directory if name == "default" else directory / name


def load_adapter(model: ReportDecoder, directory: str | Path, name: str) -> None:
    """Load a saved adapter as ``name`` next to the others and make it active."""
    if not is_wrapped(model):
        model.lm = PeftModel.from_pretrained(model.lm, str(directory), adapter_name=name)
    else:
        model.lm.load_adapter(str(directory), adapter_name=name)
    model.lm.set_adapter(name)


def use_adapter(model: ReportDecoder, name: str) -> None:
    """Switch the active adapter (no weights are reloaded)."""
    _require_wrapped(model)
    _enable(model)
    model.lm.set_adapter(name)


def adapters(model: ReportDecoder) -> Sequence[str]:
    """Names of the adapters loaded on the LM."""
    return list(model.lm.peft_config) if is_wrapped(model) else []


def _require_wrapped(model: ReportDecoder) -> None:
    if not is_wrapped(model):
        raise ValueError("the decoder has no LoRA adapters; add_adapter or load_adapter first")


# -- adapters saved with a decoder --------------------------------------------------
#
# DECODER/adapters/<name>/ holds one adapter (peft files + adapter.json: the standard it
# was trained on and its figures); DECODER/adapters/ACTIVE names the one in use.

ADAPTERS_DIR = "adapters"
ACTIVE_FILE = "ACTIVE"
INFO_FILE = "adapter.json"


@dataclass(frozen=True)
class AdapterInfo:
    """A saved adapter: its name, folder and what ``adapter.json`` records."""

    name: str
    path: Path
    info: dict
    active: bool


# One folder name on every file system and in every shell: ASCII, no separators, no
# leading dot or dash. "ACTIVE" is the file naming the active adapter and "none" means
# the base alone (``adapters activate none``); both are refused in any case, since
# macOS and Windows fold case.
ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_NAMES = (ACTIVE_FILE, "none")
ADAPTER_NAME_RULE = (
    "1 to 64 ASCII letters, digits, '-' and '_', starting with a letter or digit, "
    f"and not {' or '.join(repr(n) for n in RESERVED_NAMES)} in any case"
)


def adapter_dir(decoder_dir: str | Path, name: str) -> Path:
    """Where adapter ``name`` of a decoder lives.

    Raises
    ------
    UserError
        If ``name`` breaks :data:`ADAPTER_NAME_RULE`.
    """
    reserved = name.casefold() in {n.casefold() for n in RESERVED_NAMES}
    if not ADAPTER_NAME.fullmatch(name) or reserved:
        raise UserError(f"bad adapter name {name!r}: use {ADAPTER_NAME_RULE}")
    return Path(decoder_dir) / ADAPTERS_DIR / name


def saved_adapters(decoder_dir: str | Path) -> list[AdapterInfo]:
    """The adapters saved with a decoder, by name."""
    root = Path(decoder_dir) / ADAPTERS_DIR
    active = active_adapter(decoder_dir)
    found = []
    for path in sorted(p for p in root.glob("*") if (p / "adapter_config.json").is_file()):
        info_file = path / INFO_FILE
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        found.append(AdapterInfo(path.name, path, info, path.name == active))
    return found


def active_adapter(decoder_dir: str | Path) -> str | None:
    """The adapter a loaded decoder uses, or ``None`` for the base alone."""
    path = Path(decoder_dir) / ADAPTERS_DIR / ACTIVE_FILE
    name = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return name or None


def set_active_adapter(decoder_dir: str | Path, name: str | None) -> None:
    """Make ``name`` the adapter loaded decoders use (``None``: the base alone)."""
    if name is not None and not (adapter_dir(decoder_dir, name) / "adapter_config.json").is_file():
        known = ", ".join(a.name for a in saved_adapters(decoder_dir)) or "none"
        raise KeyError(f"no adapter {name!r} in {decoder_dir} (saved: {known})")
    root = Path(decoder_dir) / ADAPTERS_DIR
    root.mkdir(parents=True, exist_ok=True)
    (root / ACTIVE_FILE).write_text((name or "") + "\n", encoding="utf-8")


def load_decoder(
    decoder_dir: str | Path, device: str = "cpu", verify: bool = True
) -> ReportDecoder:
    """A decoder with every saved adapter loaded and the active one in use.

    Switch between them with :func:`use_adapter` (or :func:`base_only`) at run time: the
    base weights are loaded once. ``verify``: refuse files that differ from the manifest
    of the model the decoder ships in (``MODEL/decoder``), adapters included (see
    :meth:`ReportDecoder.load`).

    Raises
    ------
    ModelError
        A missing, unreadable or modified decoder file, naming it.
    """
    model = ReportDecoder.load(decoder_dir, device=device, verify=verify)
    saved = saved_adapters(decoder_dir)
    for adapter in saved:
        load_adapter(model, adapter.path, adapter.name)
    active = active_adapter(decoder_dir)
    if active is not None:
        use_adapter(model, active)
    elif saved:
        base_only(model)
    return model.eval()


def base_only(model: ReportDecoder) -> None:
    """Decode with the base weights alone (the adapters stay loaded, inactive)."""
    if is_wrapped(model):
        model.lm.base_model.disable_adapter_layers()


def _enable(model: ReportDecoder) -> None:
    if is_wrapped(model):
        model.lm.base_model.enable_adapter_layers()
