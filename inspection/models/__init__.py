"""Detection model: open_clip image tower + defect heads, whisper audio encoder, fusion.

>>> from inspection.models import create_model, list_models
>>> model = create_model("tiny")  # doctest: +SKIP
>>> out = model(image, mel)  # DetectionOutput; out.numpy() -> Detection  # doctest: +SKIP

Names are resolved lazily: importing this package (or its torch-free modules ``config``,
``outputs``, ``preprocess``, ``audio``) does not import torch; the edge runtime relies on it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "inspection.models.config",
    "DEFAULT_CLASSES": "inspection.models.config",
    "list_models": "inspection.models.registry",
    "get_config": "inspection.models.registry",
    "register_model": "inspection.models.registry",
    "create_model": "inspection.models.registry",
    "DefectModel": "inspection.models.model",
    "DetectionOutput": "inspection.models.model",
    "Detection": "inspection.models.outputs",
    "save_model": "inspection.models.checkpoint",
    "load_model": "inspection.models.checkpoint",
    "read_checkpoint": "inspection.models.checkpoint",
    "verify_checkpoint": "inspection.models.checkpoint",
    "verify_manifest": "inspection.models.card",
    "PreprocessOptions": "inspection.models.preprocess",
    "Tiles": "inspection.models.preprocess",
    "TileLayout": "inspection.models.preprocess",
    "preprocess": "inspection.models.preprocess",
    "stitch_tiles": "inspection.models.preprocess",
    "audio_to_mel": "inspection.models.audio",
    "log_mel_spectrogram": "inspection.models.audio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inspection.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
