"""Batch image audit: an archive of part images in, an auditable report out.

>>> from inspection.audit import AuditOptions, audit
>>> summary = audit("lot7.zip", "runs/lot7", "models/default", "bracket.yaml")  # doctest: +SKIP
>>> summary.verdicts  # doctest: +SKIP
{'PASS': 9120, 'REJECT': 611, 'REVIEW': 269}

Its parts into the line's records database, for the console to list and review (what
``inspection audit --db`` does after the audit):

>>> from inspection.audit import record_audit
>>> from inspection.records.store import RecordStore
>>> with RecordStore("sqlite:///line.db") as store:  # doctest: +SKIP
...     record_audit("lot7.zip", "runs/lot7", store, station="audit-lot7").new
10000

One stage a module: :mod:`~inspection.audit.inputs` (folder, zip, glob, manifest,
streamed and made safe), :mod:`~inspection.audit.engine` (batched inference and the
line's decision, the local engine), :mod:`~inspection.audit.ray_engine` (the same on
Ray Data), :mod:`~inspection.audit.results` (``results.jsonl``, resumable),
:mod:`~inspection.audit.report` (``report.html``, ``results.csv``) and
:mod:`~inspection.audit.recording` (the parts into the records database).
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
    "RecordedAudit": "inspection.audit.recording",
    "record_audit": "inspection.audit.recording",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'inspection.audit' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
