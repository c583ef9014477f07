"""Checkpoints: safetensors weights that carry their own model config.

A checkpoint is a directory with ``model.safetensors`` and ``config.json``. The config
(and any extra metadata, e.g. ``image_threshold``) is stored as JSON in the safetensors
header, so the weights file alone rebuilds its model, as whisper's checkpoints carry
``ModelDimensions``; ``config.json`` repeats it for people and tools, with the
``model_version``: a hash of the weights file, recorded with every verdict.

Every load, whether ``load_model(dir)`` or ``create_model(name, weights=path)``, and
whether the weights are a tiny test model or a ``base`` model a user trained, goes
through :func:`read_checkpoint`, which verifies the files against their recorded SHA-256
(a shipped model's ``manifest.json``, else the weights' hash in ``config.json``) before
anything is built from them, and :func:`load_weights`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open

from inspection.errors import ModelError
from inspection.models.card import MANIFEST, check_files, read_manifest, sha256
from inspection.models.config import ModelConfig

if TYPE_CHECKING:
    from torch import Tensor

    from inspection.models.model import DefectModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "inspection.defect-model/1"
VERSION_LENGTH = 16  # hex digits of the weights file's SHA-256 that name a model version

# What to do about a model that is not packaged (no manifest.json) and fails its check.
_UNPACKAGED_HINT = (
    "config.json records the SHA-256 of the weights saved with it; if the change is "
    "intended, load it with --no-verify (verify=False) or save the model again"
)
# Fields that say where weights came from, not what the architecture is.
_PROVENANCE_FIELDS = ("name", "description", "pretrained_image", "pretrained_audio")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, read without torch.

    ``sha256`` is the weights file's full hash; ``model_version`` its first digits.
    """

    path: Path
    config: ModelConfig
    model_version: str
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def weights_path(path: str | Path) -> Path:
    """The weights file of a checkpoint directory or file.

    Raises
    ------
    ModelError
        ``path`` does not exist, or is a folder without ``model.safetensors``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"{path}: no such checkpoint (no model directory or file there)")
    if path.is_dir() and not (path / WEIGHTS_FILE).is_file():
        raise ModelError(f"{path}: no such checkpoint (the folder has no {WEIGHTS_FILE})")
    return path / WEIGHTS_FILE if path.is_dir() else path


def file_hash(path: str | Path, length: int = VERSION_LENGTH) -> str:
    """Leading ``length`` hex digits of the file's SHA-256 (the model version)."""
    return sha256(path)[:length]


def read_checkpoint(path: str | Path, verify: bool = True) -> CheckpointInfo:
    """Config, version and extra metadata of a checkpoint (torch-free).

    Parameters
    ----------
    path : str | Path
        A checkpoint directory or its ``.safetensors`` file.
    verify : bool
        Check the files against their recorded SHA-256 first (see :func:`verify_checkpoint`);
        ``False`` only for development.

    Raises
    ------
    ModelError
        No checkpoint at ``path``, files that differ from their record, or a weights file
        that is not a readable inspection checkpoint.
    """
    file = weights_path(path)
    digest = file_hash(file, length=64)  # hashed once: the version, and the verification
    if verify:
        verify_checkpoint(file, digest)
    try:
        with safe_open(str(file), framework="numpy") as f:
            meta = f.metadata() or {}
    except SafetensorError as exc:
        raise ModelError(
            f"{file}: not a readable safetensors file (truncated or corrupt: {exc})"
        ) from exc
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ModelError(f"{file}: not an inspection model checkpoint (no config in its header)")
    try:
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (TypeError, ValueError) as exc:  # not JSON, or fields ModelConfig refuses
        raise ModelError(f"{file}: the model config in its header is unusable: {exc}") from exc
    return CheckpointInfo(
        path=file,
        config=config,
        model_version=digest[:VERSION_LENGTH],
        extra=extra,
        sha256=digest,
    )


def verify_checkpoint(file: str | Path, digest: str | None = None) -> None:
    """Check a checkpoint's files against the SHA-256 recorded for them.

    A shipped model's ``manifest.json`` (written by ``inspection package``) records the
    weights and ``config.json``; a model that was trained but not packaged records its
    weights' hash in ``config.json``. Either way a file that differs is refused, so a
    model with flipped bytes never measures parts.

    Parameters
    ----------
    file : str | Path
        The weights file.
    digest : str | None
        Its SHA-256 where the caller has it already (not hashed again).

    Raises
    ------
    ModelError
        Naming each file that is missing or differs, or the weights when nothing records
        their hash.
    """
    file = Path(file)
    directory = file.parent
    known = {file.name: digest} if digest else None
    manifest = read_manifest(directory)
    if manifest is not None:
        expected = {file.name: manifest.get(file.name)}
        if CONFIG_FILE in manifest:
            expected[CONFIG_FILE] = manifest[CONFIG_FILE]
        check_files(directory, expected, MANIFEST, known)
        return
    recorded = {file.name: _recorded_sha256(directory, file.name)}
    check_files(directory, recorded, CONFIG_FILE, known, hint=_UNPACKAGED_HINT)


def _recorded_sha256(directory: Path, weights: str) -> str | None:
    """The weights' SHA-256 as ``config.json`` records it (``None``: not recorded)."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON (or not UTF-8)
        raise ModelError(
            f"{path}: not valid JSON ({exc}); it records the weights' SHA-256"
        ) from exc
    if not isinstance(card, dict) or card.get("weights", WEIGHTS_FILE) != weights:
        return None
    return card.get("sha256")


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
    state = {k: compact(v.detach().cpu().contiguous()) for k, v in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "config": json.dumps(model.config.to_dict()),
        "extra": json.dumps(extra),
    }
    file = directory / WEIGHTS_FILE
    # A manifest records a packaged model; new weights make it stale, and a stale one
    # would refuse this model at its next load. `inspection package` writes a new one.
    (directory / MANIFEST).unlink(missing_ok=True)
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


def compact(tensor: Tensor) -> Tensor:
    """``tensor`` in float16 when every value survives the round trip exactly (a
    normality model's rounded statistics: half the bytes on disk), else unchanged."""
    import torch

    if tensor.dtype != torch.float32 or tensor.numel() == 0:
        return tensor
    half = tensor.half()
    return half if torch.equal(half.float(), tensor) else tensor


def load_weights(
    model: DefectModel, path: str | Path | CheckpointInfo, verify: bool = True
) -> CheckpointInfo:
    """Load a checkpoint's weights into ``model`` (strict), after checking that the
    checkpoint's architecture is the model's. Sets ``model_version`` and ``metadata``.

    ``verify``: check the files' SHA-256 first (:func:`read_checkpoint`; a
    :class:`CheckpointInfo` was checked, or not, when it was read).
    """
    from safetensors.torch import load_file

    info = path if isinstance(path, CheckpointInfo) else read_checkpoint(path, verify=verify)
    differ = _architecture_diff(info.config, model.config)
    if differ:
        raise ModelError(
            f"{info.path}: checkpoint of model {info.config.name!r} does not fit "
            f"{model.config.name!r}: {', '.join(differ)} differ"
        )
    device = next(model.parameters()).device
    device = "cpu" if device.type == "meta" else str(device)
    # assign=True: a model built on the meta device (no random init) takes the tensors.
    try:
        state = load_file(str(info.path), device=device)
    except SafetensorError as exc:  # e.g. changed on disk since its header was read
        raise ModelError(f"{info.path}: not a readable safetensors file ({exc})") from exc
    own = model.state_dict()
    # Tensors stored in half (lossless, see `compact`) come back in the model's own dtype.
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.model_version = info.model_version
    model.metadata = dict(info.extra)
    return info


def load_model(
    path: str | Path | CheckpointInfo, device: str = "cpu", verify: bool = True
) -> DefectModel:
    """Rebuild a model from a checkpoint directory or ``.safetensors`` file (or its
    :class:`CheckpointInfo`, already read: the header is not read and hashed again).

    The architecture comes from the checkpoint itself; the pretrained tower files its
    config may name are not read (the checkpoint holds every weight).

    Parameters
    ----------
    path : str | Path | CheckpointInfo
        The checkpoint.
    device : str
        Torch device.
    verify : bool
        Refuse files that differ from their recorded SHA-256 (``manifest.json`` of a
        shipped model, else ``config.json``); ``False`` only for development.

    Raises
    ------
    ModelError
        A missing, unreadable or modified checkpoint, naming the file.
    """
    from inspection.models.registry import create_model

    info = path if isinstance(path, CheckpointInfo) else read_checkpoint(path, verify=verify)
    return create_model(info.config, weights=info, device=device)


def same_architecture(a: ModelConfig, b: ModelConfig) -> bool:
    """Whether a checkpoint of config ``a`` loads into a model of config ``b``."""
    return not _architecture_diff(a, b)


def _architecture_diff(a: ModelConfig, b: ModelConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [k for k in da if k not in _PROVENANCE_FIELDS and da[k] != db[k]]
