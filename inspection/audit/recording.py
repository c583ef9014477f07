"""An audit's parts into the line's records database (``inspection audit --db``).

The records are the line's own (:class:`~inspection.records.RecordStore`): each audited
part becomes a part of the audit's station with its verdict, defects, clauses and
versions, and the image it was judged on as its evidence, so the operator console lists,
reviews and answers questions on audited parts as it does on the line's. They are written
after the audit from ``results.jsonl`` and the input, whichever engine ran it, so a
resumed or repeated audit records each part once (the store skips a part its station has
recorded).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspection.audit.inputs import (
    AuditItem,
    InputRefused,
    count_inputs,
    iter_inputs,
    read_bytes,
    sha256_hex,
)
from inspection.audit.results import RecordIndex, record_key
from inspection.errors import UserError
from inspection.io import HeightEncoding

BATCH = 200  # records a transaction


@dataclass(frozen=True)
class RecordedAudit:
    """What :func:`record_audit` wrote."""

    new: int  # parts recorded now (or spooled, to be written when the database answers)
    before: int  # parts this station had recorded already
    pending: int  # records still in the spool (the database did not answer)
    station: str


def record_audit(
    input_spec: str | Path,
    out: str | Path,
    store: Any,
    station: str,
    product: str | None = None,
    progress: bool = True,
    height_encoding: HeightEncoding | None = None,
) -> RecordedAudit:
    """Record every audited part of ``out`` in ``store``, with its image as evidence
    (and its height map after it, as a station keeps one:
    :func:`~inspection.records.evidence.frame_evidence`).

    Parameters
    ----------
    input_spec
        The audit's input (its files are read again for the evidence).
    out
        The audit's folder (``results.jsonl``).
    store : RecordStore
        The line's records.
    station
        The station the parts are recorded at; a part id is recorded once a station.
    product
        The product of the audit's standard (the console chooses its standard by it).
    progress
        Show a progress bar.
    height_encoding
        How the audit read integer height maps (its ``--height-scale``).
    """
    from tqdm import tqdm

    from inspection.audit.engine import result_of
    from inspection.records.store import RecordEntry

    if not station:
        raise UserError("--station must not be empty")
    new = before = 0
    entries: list[RecordEntry] = []

    def flush() -> None:
        nonlocal new, before
        answers = store.record_many(entries)
        new += sum(answers)
        before += len(answers) - sum(answers)
        entries.clear()

    items = iter_inputs(input_spec)
    total = count_inputs(input_spec)
    with (
        RecordIndex(Path(out)) as index,
        tqdm(items, total=total, unit="part", desc="recording", disable=not progress) as bar,
    ):
        for record, image, item in _audited(bar, index):
            result = result_of(record)
            entries.append(
                RecordEntry(
                    result.part_id,
                    station,
                    result,
                    images=() if image is None else _evidence(image, item, height_encoding),
                    product=product,
                )
            )
            if len(entries) >= BATCH:
                flush()
        flush()
    return RecordedAudit(new, before, store.pending(), station)


def _evidence(image: Any, item: AuditItem, encoding: HeightEncoding | None) -> tuple:
    """The part's image, and its height map where it has one, read as the audit read it
    (a map changed since, and now unreadable, is left out: the verdict stands)."""
    from inspection.audit.engine import item_height_map
    from inspection.records.evidence import encode_height_map

    try:
        height = item_height_map(item, encoding)
    except UserError:
        return (image,)
    return (image,) if height is None else (image, encode_height_map(height))


def _audited(items: Any, index: RecordIndex) -> Iterator[tuple[dict, Any, AuditItem]]:
    """Each input item's record with its evidence: the file's bytes when they are an
    image the console can show as they are (PNG, JPEG, BMP), else the decoded pixels
    (TIFF, WebP: stored as PNG); none for a part that could not be read."""
    from inspection.audit.engine import decode_item
    from inspection.records.evidence import kept_as_is

    for item in items:
        data = _bytes(item)
        record = index.get(record_key(None if data is None else sha256_hex(data), item.source))
        if record is None:  # not audited (a run cut short), or changed since
            continue
        image: Any = None
        if data is not None and record.get("error") is None:
            image = data if kept_as_is(data) else decode_item(item, data)
        yield record, image, item


def _bytes(item: AuditItem) -> bytes | None:
    if item.problem is not None:
        return None
    try:
        return read_bytes(item)
    except InputRefused:
        return None
