"""Export of the edge graph (ONNX) and the torch-free ONNX Runtime runner.

``export_onnx`` needs torch; ``OnnxDetector`` does not (names resolve lazily, so
importing this package does not import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_onnx": "inspection.export.onnx",
    "OnnxDetector": "inspection.export.runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inspection.export' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
