"""Checkpoints: safetensors weights that carry their own model config.

A checkpoint is a directory with ``model.safetensors`` and ``config.json``. The config
(and any extra metadata, e.g. ``image_threshold``) is stored as JSON in the safetensors
header, so the weights file alone rebuilds its model, as whisper's checkpoints carry
``ModelDimensions``; ``config.json`` repeats it for people and tools, with the
``model_version``: a hash of the weights file, recorded with every verdict.

Every load, whether ``load_model(dir)`` or ``create_model(name, weights=path)``, and
whether the weights are a tiny test model or a ``base`` model a user trained, goes
through :func:`load_weights`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from inspection.models.config import ModelConfig

if TYPE_CHECKING:
    from inspection.models.model import DefectModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "inspection.defect-model/1"
VERSION_LENGTH = 16  # hex digits of the weights file's SHA-256 that name a model version

# Fields that say where weights came from, not what the architecture is.
_PROVENANCE_FIELDS = ("name", "description", "pretrained_image", "pretrained_audio")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, read without torch."""

    path: Path
    config: ModelConfig
    model_version: str
    extra: dict[str, Any] = field(default_factory=dict)


def weights_path(path: str | Path) -> Path:
    """The weights file of a checkpoint directory or file."""
    path = Path(path).expanduser()
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such checkpoint")
    return file


def file_hash(path: str | Path, length: int = VERSION_LENGTH) -> str:
    """Leading ``length`` hex digits of the file's SHA-256 (the model version)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Config, version and extra metadata of a checkpoint (torch-free)."""
    file = weights_path(path)
    with safe_open(str(file), framework="numpy") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{file}: not an inspection model checkpoint (no config in its header)")
    return CheckpointInfo(
        path=file,
        config=ModelConfig.from_dict(json.loads(meta["config"])),
        model_version=file_hash(file),
        extra=json.loads(meta.get("extra", "{}")),
    )


def save_model(
    model: DefectModel, directory: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``directory`` (``model.safetensors`` + ``config.json``).

    Parameters
    ----------
    model : DefectModel
        The model; its ``model_version`` is set to the new file's hash.
    directory : str | Path
        Created if missing; an existing checkpoint there is replaced.
    extra : dict | None
        JSON-serialisable metadata kept with the weights (``image_threshold``,
        training data version ...).

    Returns
    -------
    Path
        The checkpoint directory.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "extra": json.dumps(extra),
    }
    file = directory / WEIGHTS_FILE
    save_file(state, str(file), metadata=header)
    sha256 = file_hash(file, length=64)
    model.model_version = sha256[:VERSION_LENGTH]
    model.metadata = extra
    card = {
        "format": FORMAT,
        "model_version": model.model_version,
        "weights": WEIGHTS_FILE,
        "sha256": sha256,
        "config": model.config.to_dict(),
        "extra": extra,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return directory


def load_weights(model: DefectModel, path: str | Path | CheckpointInfo) -> CheckpointInfo:
    """Load a checkpoint's weights into ``model`` (strict), after checking that the
    checkpoint's architecture is the model's. Sets ``model_version`` and ``metadata``."""
    from safetensors.torch import load_file

    info = path if isinstance(path, CheckpointInfo) else read_checkpoint(path)
    differ = _architecture_diff(info.config, model.config)
    if differ:
        raise ValueError(
            f"{info.path}: checkpoint of model {info.config.name!r} does not fit "
            f"{model.config.name!r}: {', '.join(differ)} differ"
        )
    device = next(model.parameters()).device
    device = "cpu" if device.type == "meta" else str(device)
    # assign=True: a model built on the meta device (no random init) takes the tensors.
    model.load_state_dict(load_file(str(info.path), device=device), strict=True, assign=True)
    model.model_version = info.model_version
    model.metadata = dict(info.extra)
    return info


def load_model(path: str | Path | CheckpointInfo, device: str = "cpu") -> DefectModel:
    """Rebuild a model from a checkpoint directory or ``.safetensors`` file (or its
    :class:`CheckpointInfo`, already read: the header is not read and hashed again).

    The architecture comes from the checkpoint itself; the pretrained tower files its
    config may name are not read (the checkpoint holds every weight).
    """
    from inspection.models.registry import create_model

    info = path if isinstance(path, CheckpointInfo) else read_checkpoint(path)
    return create_model(info.config, weights=info, device=device)


def same_architecture(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether a checkpoint of config ``a`` loads into a model of config ``b``."""
    return not _architecture_diff(a, b)


def _architecture_diff(a: ModelConfig, b: ModelConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [k for k in da if k not in _PROVENANCE_FIELDS and da[k] != db[k]]
