"""The records of every part: SQLAlchemy models, Alembic migrations, the record store.

Needs the ``line`` extra (SQLAlchemy, Alembic); torch-free: the edge daemon records parts
through :class:`RecordStore`. Names are imported on first use, so that importing
:mod:`inspection.records.commands` (the command line) does not load SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "open_records": "inspection.records.db",
    "NOT_INSPECTED": "inspection.records.store",
    "DatabaseUnavailable": "inspection.records.store",
    "PartHistory": "inspection.records.store",
    "PruneCounts": "inspection.records.store",
    "RecordEntry": "inspection.records.store",
    "RecordStore": "inspection.records.store",
    "RecordedPart": "inspection.records.store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
