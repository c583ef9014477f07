"""Batch image audit: an archive of part images in, an auditable report out.

>>> from inspection.audit import AuditOptions, audit
>>> summary = audit("lot7.zip", "runs/lot7", "models/default", "bracket.yaml")  # doctest: +SKIP
>>> summary.verdicts  # doctest: +SKIP
{'PASS': 9120, 'REJECT': 611, 'REVIEW': 269}

One stage a module: :mod:`~inspection.audit.inputs` (folder, zip, glob, manifest,
streamed and made safe), :mod:`~inspection.audit.engine` (batched inference and the
line's decision, the local engine), :mod:`~inspection.audit.ray_engine` (the same on
Ray Data), :mod:`~inspection.audit.results` (``results.jsonl``, resumable) and
:mod:`~inspection.audit.report` (``report.html``, ``results.csv``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Lazy, as in inspection.models: the CLI imports inspection.audit.commands, and through
# this package, at start; the engine (OpenCV, measurement, the rule engine) loads when
# an audit runs.
_EXPORTS = {
    "AuditOptions": "inspection.audit.engine",
    "AuditSummary": "inspection.audit.engine",
    "audit": "inspection.audit.engine",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inspection.audit' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
