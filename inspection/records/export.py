"""The line's records out, for a spreadsheet, an MES or SPC (``inspection records export``).

One row a part, in the order the parts were recorded: what the line decided and why
(verdict, severity, action, the clauses cited, the defects), every version that made the
decision, and the latest operator review, if any. ``.csv`` flattens the defects into
counts and lists; ``.jsonl`` keeps each defect whole (class, zone, measurements, clause,
box). The file is written whole or not at all (a temporary file renamed into place).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from inspection.errors import UserError

FORMATS = (".csv", ".jsonl")
COLUMNS = (
    "station",
    "part_id",
    "product",
    "captured_at",
    "decided_at",
    "verdict",
    "not_inspected",
    "severity",
    "action",
    "clauses",
    "defects",
    "defect_classes",
    "reasons",
    "image_score",
    "standard_id",
    "standard_version",
    "model_version",
    "calibration_version",
    "software_version",
    "path",
    "review_decision",
    "reviewer",
    "review_reason",
    "reviewed_at",
    "evidence",
)
LIST_SEPARATOR = "; "
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula in a text cell."""


@dataclass(frozen=True)
class ExportedRecords:
    """What :func:`export_records` wrote."""

    out: Path
    parts: int
    verdicts: dict[str, int]


def check_out(out: Path) -> None:
    """Refuse an output whose format is unknown or whose folder is not there, before any
    query runs."""
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"{out}: the export writes {' or '.join(FORMATS)}, by the name's suffix")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder")
    if out.is_dir():
        raise UserError(f"{out}: a folder, not a file name")


def export_records(
    store: Any,
    out: str | Path,
    since: datetime | None = None,
    until: datetime | None = None,
    station: str | None = None,
    verdict: str | None = None,
    progress: bool = True,
    product: str | None = None,
) -> ExportedRecords:
    """Write the parts captured in ``[since, until)`` to ``out`` (``.csv`` or ``.jsonl``).

    Parameters
    ----------
    store : RecordStore
        The line's records.
    out
        The file to write (replaced whole when it exists).
    since, until
        The capture window (time-zone aware); ``None``: open.
    station, verdict
        Only this station's parts, only parts with this verdict (``"NOT_INSPECTED"``
        for parts never decided).
    progress
        Show a progress bar.
    product
        Only this product's parts.
    """
    from tqdm import tqdm

    out = Path(out)
    check_out(out)
    batches = store.iter_parts(since, until, station, verdict, product=product)
    counts = store.counts(since, until, station, product)
    total = sum(counts.values()) if verdict is None else counts.get(str(verdict).upper(), 0)
    verdicts: dict[str, int] = {}
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8", newline="") as f,
            tqdm(total=total, unit="part", desc="exporting", disable=not progress) as bar,
        ):
            write = _csv_writer(f) if out.suffix.lower() == ".csv" else _jsonl_writer(f)
            for row in _rows(store, batches):
                write(row)
                key = row["verdict"] or "NOT_INSPECTED"
                verdicts[key] = verdicts.get(key, 0) + 1
                bar.update(1)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportedRecords(out, sum(verdicts.values()), verdicts)


def _rows(store: Any, batches: Iterator[list[Any]]) -> Iterator[dict[str, Any]]:
    for parts in batches:
        reviews = store.latest_reviews(parts)
        for part in parts:
            yield _row(part, reviews.get((part.station, part.part_id)))


def _row(part: Any, review: dict[str, Any] | None) -> dict[str, Any]:
    clauses = dict.fromkeys(d["clause_id"] for d in part.defects if d["clause_id"])
    return {
        "station": part.station,
        "part_id": part.part_id,
        "product": part.product,
        "captured_at": _iso(part.captured_at),
        "decided_at": _iso(part.decided_at),
        "verdict": part.verdict,
        "not_inspected": part.not_inspected,
        "severity": part.severity,
        "action": part.action,
        "clauses": list(clauses),
        "defects": [_defect(d) for d in part.defects],
        "reasons": list(part.reasons),
        "image_score": part.scores.get("image"),
        "standard_id": part.standard_id,
        "standard_version": part.standard_version,
        "model_version": part.model_version,
        "calibration_version": part.calibration_version,
        "software_version": part.software_version,
        "path": part.path,
        "review": None if review is None else {**review, "created_at": _iso(review["created_at"])},
        "evidence": list(part.evidence),
    }


def _defect(defect: dict[str, Any]) -> dict[str, Any]:
    return {
        "defect_class": defect["defect_class"],
        "zone": defect["zone"],
        "measurements": defect["attributes"],
        "clause": defect["clause_id"],
        "severity": defect["severity"],
        "action": defect["action"],
        "reason": defect["reason"],
        "score": defect["score"],
        "bbox": defect["bbox"],
        "footprint_bbox": defect.get("footprint_bbox"),
    }


def spreadsheet_safe(row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row whose text cells a spreadsheet will not run as formulas: a cell that
    starts as one (``=``, ``+``, ``-``, ``@``, tab, CR: a file named ``=HYPERLINK(...)``,
    an operator's note) gets a leading apostrophe, which keeps it text (the OWASP advice on
    CSV injection). Numbers are left as they are."""
    return {
        key: f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value
        for key, value in row.items()
    }


def _csv_writer(f: Any):
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()

    def write(row: dict[str, Any]) -> None:
        review = row["review"] or {}
        cells = spreadsheet_safe(
            {
                **{k: v for k, v in row.items() if k in COLUMNS},
                "clauses": LIST_SEPARATOR.join(row["clauses"]),
                "defects": len(row["defects"]),
                "defect_classes": LIST_SEPARATOR.join(d["defect_class"] for d in row["defects"]),
                "reasons": LIST_SEPARATOR.join(row["reasons"]),
                "review_decision": review.get("decision"),
                "reviewer": review.get("reviewer"),
                "review_reason": review.get("reason"),
                "reviewed_at": review.get("created_at"),
                "evidence": LIST_SEPARATOR.join(row["evidence"]),
            }
        )
        writer.writerow(cells)

    return write


def _jsonl_writer(f: Any):
    def write(row: dict[str, Any]) -> None:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
