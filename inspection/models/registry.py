"""The model registry: a name resolves to a :class:`ModelConfig`, as in open_clip and timm.

Configs are ``<name>.yaml`` files in the models directory (``INSPECTION_MODELS_DIR``,
default the repository's ``models/``); :func:`register_model` adds one at run time.

>>> from inspection.models import create_model, list_models
>>> list_models()  # doctest: +SKIP
['base', 'small', 'tiny', 'tiny-conv']
>>> model = create_model("tiny")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from inspection.config import REPO_ROOT, get_settings
from inspection.errors import ModelError, one_line
from inspection.models.config import ModelConfig

if TYPE_CHECKING:  # torch stays unimported until a model is built
    from inspection.models.checkpoint import CheckpointInfo
    from inspection.models.model import DefectModel

_REGISTERED: dict[str, ModelConfig] = {}


def _config_dirs() -> list[Path]:
    dirs = [get_settings().models_dir, REPO_ROOT / "models"]
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def _config_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for directory in reversed(_config_dirs()):  # the configured directory wins
        files.update({p.stem: p for p in sorted(directory.glob("*.yaml"))})
    return files


def list_models() -> list[str]:
    """Names of every model config, sorted."""
    return sorted(set(_config_files()) | set(_REGISTERED))


def register_model(config: ModelConfig) -> None:
    """Make ``config`` resolvable by its name (overrides a YAML file of that name)."""
    _REGISTERED[config.name] = config


def load_config(path: str | Path) -> ModelConfig:
    """Read a model config YAML file; its ``name`` defaults to the file's stem.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelError
        A file that is not UTF-8 YAML, not a mapping, or has fields a config refuses.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not a readable YAML model config: {one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: a model config is a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: {exc}") from exc


def get_config(name: str | Path) -> ModelConfig:
    """The config of a registered name, or of a YAML file given by path.

    Raises
    ------
    KeyError
        For a name that is neither registered nor a file, listing the known names.
    """
    if isinstance(name, Path) or str(name).endswith((".yaml", ".yml")):
        return load_config(name)
    if name in _REGISTERED:
        return _REGISTERED[name]
    files = _config_files()
    if name not in files:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return load_config(files[name])


def _model_class(config: ModelConfig) -> type:
    """The module a config builds: trained heads, or a feature normality model."""
    if config.is_normality:
        from inspection.models.normality import NormalityModel

        return NormalityModel
    from inspection.models.model import DefectModel

    return DefectModel


def create_model(
    name_or_config: str | Path | ModelConfig,
    weights: str | Path | CheckpointInfo | None = None,
    device: str = "cpu",
    **overrides: Any,
) -> DefectModel:
    """Build a detection model by name, config or config file.

    Parameters
    ----------
    name_or_config : str | Path | ModelConfig
        Registry name, YAML path, or config.
    weights : str | Path | CheckpointInfo | None
        A checkpoint written by :func:`inspection.models.save_model` (directory or
        ``.safetensors`` file), verified against its recorded SHA-256 (see
        :func:`inspection.models.checkpoint.read_checkpoint`). Its stored config must
        match the requested one in every architecture field. ``None``: random weights,
        plus the pretrained towers the config names (``pretrained_image`` /
        ``pretrained_audio``, local files).
    device : str
        Torch device.
    **overrides
        Config fields to change first, e.g. ``pretrained_image="/models/clip.bin"``.

    Returns
    -------
    DefectModel | NormalityModel
        In eval mode (a normality model for ``method`` ``padim`` / ``patchcore``, whose
        good-part statistics come from fitting or from ``weights``).
    """
    import torch

    from inspection.models.checkpoint import load_weights

    if isinstance(name_or_config, ModelConfig):
        config = name_or_config
    else:
        config = get_config(name_or_config)
    if overrides:
        config = config.replace(**overrides)
    model_class = _model_class(config)
    if weights is None:
        return model_class(config).to(device).eval()
    # A checkpoint holds every weight: build on the meta device (no random init, no
    # pretrained tower files read) and let the checkpoint's tensors take the places.
    with torch.device("meta"):
        model = model_class(config, load_pretrained=False)
    info = load_weights(model, weights)
    if any(t.is_meta for t in model.buffers()):  # a buffer the checkpoint does not hold
        model = model_class(config, load_pretrained=False)
        load_weights(model, info)  # read and verified once
    return model.to(device).eval()
