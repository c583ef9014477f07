"""Operator reviews as training data: an MVTec AD folder per product.

Every review an operator gives in the console is a label on a recorded part. The latest
review of each inspection decides what it is: PASS goes to ``train/good``, REJECT to
``test/<class>`` with its mask in ``ground_truth/<class>``, and REVIEW (the operator could
not tell) is skipped. The result is read back by :func:`inspection.datasets.load_dataset`::

    OUT/
      reviews.jsonl                      one line per exported part: who decided what, why
      <product>/train/good/<name>.png
      <product>/test/<class>/<name>.png
      <product>/ground_truth/<class>/<name>_mask.png

The mask of a REJECT is the one the reviewer drew; when they drew none but agreed with a
machine REJECT, the recorded defects' boxes; when they overrode the machine to REJECT and
drew nothing, there is no mask (the image is still exported; the manifest says so).

The export is written to a temporary sibling of ``OUT`` and renamed into place, so a
failed export leaves nothing half-written. Torch-free and gradio-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inspection.datasets.loaders import GOOD, GOOD_ALIASES
from inspection.errors import UserError

if TYPE_CHECKING:
    from inspection.records.store import RecordStore

MANIFEST = "reviews.jsonl"
UNKNOWN_PRODUCT = "unknown"
DEFAULT_CLASS = "defect"
_BATCH = 400  # rows per batch of the review query; ids per IN (...) of the defect query
_NAME_PART = 60  # characters kept of a station, part id, product or class in a file name
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# Why a reviewed part was not exported (the keys of ExportSummary.skipped_by_reason).
UNDECIDED = "operator could not tell (REVIEW)"
NO_EVIDENCE = "no evidence image recorded"
EVIDENCE_MISSING = "evidence file missing"
EVIDENCE_UNREADABLE = "evidence image unreadable"
MASK_MISSING = "reviewer's mask file missing"
MASK_UNREADABLE = "reviewer's mask unreadable"
MASK_SIZE = "reviewer's mask size differs from the image"


@dataclass(frozen=True)
class Skipped:
    """A reviewed part left out of the export, and why."""

    station: str
    part_id: str
    reason: str  # one of the module's reason constants
    detail: str = ""


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_reviews` wrote.

    Attributes
    ----------
    out : Path
        The export folder.
    counts : Mapping[str, int]
        Images per folder, relative to ``out`` (``"bracket/train/good": 12``).
    skipped : tuple[Skipped, ...]
        Reviewed parts not exported, each with its reason.
    without_mask : int
        REJECT images exported with no mask (overridden to REJECT, nothing drawn).
    """

    out: Path
    counts: Mapping[str, int] = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()
    without_mask: int = 0

    @property
    def exported(self) -> int:
        """Images exported in all."""
        return sum(self.counts.values())

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))

    def summary(self) -> str:
        """One line: what was exported where, and what was skipped why."""
        good = sum(n for folder, n in self.counts.items() if folder.endswith("/train/good"))
        line = (
            f"exported {self.exported} reviewed parts to {self.out} "
            f"({good} good, {self.exported - good} defective, {self.without_mask} without a mask)"
        )
        if self.skipped:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped_by_reason.items()))
            line += f"; skipped {len(self.skipped)}: {reasons}"
        return line


@dataclass(frozen=True)
class _Reviewed:
    """One inspection and its latest review, as the query returns it."""

    review_id: int
    decision: str
    reviewer: str
    reason: str | None
    review_class: str | None
    mask: str | None
    reviewed_at: datetime | None
    inspection_id: int
    verdict: str | None
    evidence: tuple[str, ...]
    part_id: str
    product: str | None
    station: str


@dataclass(frozen=True)
class _Defect:
    defect_class: str
    score: float | None
    frame_index: int
    bbox: tuple[int, int, int, int] | None


def export_reviews(
    store: RecordStore,
    out: str | Path,
    *,
    station: str | None = None,
    product: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Export the parts operators reviewed as an MVTec AD dataset per product.

    Parameters
    ----------
    store : RecordStore
        The records (database and evidence folder).
    out : str | Path
        The export folder: absent or empty, or replaced when ``overwrite``.
    station, product : str | None
        Only parts of this station / product (``"unknown"`` also matches parts recorded
        without a product).
    since, until : datetime | None
        Only parts captured in ``[since, until)`` (timezone-aware).
    overwrite : bool
        Replace a non-empty ``out`` (only once the new export is complete).

    Returns
    -------
    ExportSummary

    Raises
    ------
    UserError
        When ``out`` is a file, or not empty without ``overwrite``, or holds the records
        themselves; or a time has no time zone.
    """
    out = Path(out).expanduser().resolve()
    _check_out(out, store, overwrite)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise UserError(f"{name} {value.isoformat()} has no time zone: give one (UTC)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        summary = _export(store, tmp, _filters(station, product, since, until))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportSummary(out, summary.counts, summary.skipped, summary.without_mask)


# ---------------------------------------------------------------------- the output folder


def _check_out(out: Path, store: RecordStore, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"export folder {out} is a file: give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"export folder {out} is not empty: give an empty one, or overwrite it")
        # Replacing OUT deletes it: never when it holds the records being exported.
        from inspection.records.db import sqlite_path

        for kept in (store.evidence.root, sqlite_path(store.url)):
            if kept is not None and Path(kept).resolve().is_relative_to(out):
                raise UserError(f"export folder {out} holds the records ({kept}): not replacing it")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished export to ``out`` (replacing an old one only now)."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old)  # an empty directory is replaced by a rename
    elif out.is_dir():
        out.rmdir()
    try:
        os.rename(tmp, out)
    except OSError as error:
        if old is not None:
            os.rename(old, out)  # put the old export back
        raise UserError(f"cannot write the export to {out}: {error}") from error
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- the query


def _filters(
    station: str | None, product: str | None, since: datetime | None, until: datetime | None
) -> list[Any]:
    from sqlalchemy import or_

    from inspection.records.models import Inspection, Part, Station

    where: list[Any] = []
    if station is not None:
        where.append(Station.name == station)
    if product is not None:
        match = Part.product == product
        where.append(or_(match, Part.product.is_(None)) if product == UNKNOWN_PRODUCT else match)
    if since is not None:
        where.append(Inspection.captured_at >= since)
    if until is not None:
        where.append(Inspection.captured_at < until)
    return where


def _reviewed(session: Any, where: Sequence[Any]) -> Iterator[list[_Reviewed]]:
    """Each reviewed inspection with its latest review, in batches, in a stable order."""
    from sqlalchemy import func, select

    from inspection.records.models import Inspection, Part, Review, Station

    # Review ids grow with insertion: the highest is the latest review (created_at is the
    # wall clock, which can step back).
    latest = (
        select(func.max(Review.id).label("review_id")).group_by(Review.inspection_id).subquery()
    )
    stmt = (
        select(
            Review.id,
            Review.decision,
            Review.reviewer,
            Review.reason,
            Review.defect_class,
            Review.mask,
            Review.created_at,
            Inspection.id,
            Inspection.verdict,
            Inspection.evidence,
            Part.part_id,
            Part.product,
            Station.name,
        )
        .join(latest, Review.id == latest.c.review_id)
        .join(Inspection, Review.inspection_id == Inspection.id)
        .join(Part, Inspection.part_ref == Part.id)
        .join(Station, Inspection.station_id == Station.id)
        .where(*where)
        .order_by(Station.name, Part.part_id)
        .execution_options(yield_per=_BATCH)
    )
    for rows in session.execute(stmt).partitions():
        yield [_Reviewed(*row[:9], tuple(row[9] or ()), *row[10:]) for row in rows]


def _defects(session: Any, inspection_ids: list[int]) -> dict[int, list[_Defect]]:
    """The recorded defects of these inspections, in recording order."""
    from sqlalchemy import select

    from inspection.records.models import Defect

    found: dict[int, list[_Defect]] = {}
    for start in range(0, len(inspection_ids), _BATCH):
        chunk = inspection_ids[start : start + _BATCH]
        stmt = (
            select(
                Defect.inspection_id,
                Defect.defect_class,
                Defect.score,
                Defect.frame_index,
                Defect.bbox,
            )
            .where(Defect.inspection_id.in_(chunk))
            .order_by(Defect.inspection_id, Defect.id)
        )
        for inspection_id, defect_class, score, frame, bbox in session.execute(stmt):
            box = None
            if bbox is not None and len(bbox) == 4:
                box = (int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3]))
            found.setdefault(inspection_id, []).append(
                _Defect(defect_class, score, int(frame or 0), box)
            )
    return found


# ---------------------------------------------------------------------- the export


class _Skip(Exception):
    """A reviewed part cannot be exported (caught per part, never escapes)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


@dataclass
class _Progress:
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[Skipped] = field(default_factory=list)
    without_mask: int = 0


def _export(store: RecordStore, tmp: Path, where: Sequence[Any]) -> ExportSummary:
    from sqlalchemy.orm import Session

    progress = _Progress()
    with Session(store.engine) as session, (tmp / MANIFEST).open("w", encoding="utf-8") as f:
        for batch in _reviewed(session, where):
            rejects = [p.inspection_id for p in batch if p.decision == "REJECT"]
            defects = _defects(session, rejects)
            for part in batch:
                try:
                    folder, line = _export_part(
                        store, tmp, part, defects.get(part.inspection_id, [])
                    )
                except _Skip as skip:
                    progress.skipped.append(
                        Skipped(part.station, part.part_id, skip.reason, skip.detail)
                    )
                    continue
                progress.counts[folder] += 1
                if line["decision"] == "REJECT" and line["mask"] is None:
                    progress.without_mask += 1
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return ExportSummary(tmp, dict(progress.counts), tuple(progress.skipped), progress.without_mask)


def _export_part(
    store: RecordStore, tmp: Path, part: _Reviewed, defects: list[_Defect]
) -> tuple[str, dict[str, Any]]:
    """Write one part's image (and mask); its folder and manifest line (or :class:`_Skip`)."""
    if part.decision not in ("PASS", "REJECT"):
        raise _Skip(UNDECIDED)
    reject = part.decision == "REJECT"
    top = _top_defect(defects, part.review_class) if reject else None
    # The frame the defects (and so the mask) belong to; frame 0 without defects.
    frame = top.frame_index if top is not None else 0
    source, pixels = _frame_image(store, part, frame)
    mask, mask_source = (
        _mask(store, part, defects, frame, pixels.shape[:2]) if reject else (None, None)
    )

    product = _product_dir(part.product)
    name = part_name(part.station, part.part_id)
    label = _class_dir(part.review_class or (top.defect_class if top else None)) if reject else GOOD
    folder = f"{product}/test/{label}" if reject else f"{product}/train/{GOOD}"
    image_rel = f"{folder}/{name}.png"
    _write_image(source, pixels, tmp / image_rel)
    mask_rel = None
    if mask is not None:
        mask_rel = f"{product}/ground_truth/{label}/{name}_mask.png"
        _write_png(mask, tmp / mask_rel)
    height_rel = None
    height = _frame_height_map(store, part, frame)
    if height is not None:  # a station with a 3D profiler: the frame's height map, as kept
        height_rel = f"{product}/height/{label}/{name}.tiff"
        (tmp / height_rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(height, tmp / height_rel)
    return folder, {
        "station": part.station,
        "part_id": part.part_id,
        "product": part.product,
        "machine_verdict": part.verdict,
        "decision": part.decision,
        "reviewer": part.reviewer,
        "reason": part.reason,
        "class": label,
        "image": image_rel,
        "mask": mask_rel,
        "mask_source": mask_source,
        **({"height": height_rel} if height_rel is not None else {}),
        "frame": frame,
        "review_id": part.review_id,
        "reviewed_at": None if part.reviewed_at is None else part.reviewed_at.isoformat(),
    }


def _top_defect(defects: list[_Defect], review_class: str | None) -> _Defect | None:
    """The defect the export is about: the highest score, among the reviewer's class if
    the machine saw it; ties go to the first recorded."""
    named = [d for d in defects if review_class is not None and d.defect_class == review_class]
    pool = named or defects
    if not pool:
        return None
    return max(pool, key=lambda d: d.score if d.score is not None else float("-inf"))


def _evidence_file(store: RecordStore, sha: str, reason: str) -> Path:
    try:
        path = store.evidence.find(sha)
    except UserError as error:  # a malformed hash in the record
        raise _Skip(reason, str(error)) from None
    if path is None:
        raise _Skip(reason, f"{sha} not in {store.evidence.root}")
    return path


def _frame_image(store: RecordStore, part: _Reviewed, frame: int) -> tuple[Path, np.ndarray]:
    """The evidence file of ``frame`` and its pixels."""
    if not 0 <= frame < len(part.evidence):
        raise _Skip(NO_EVIDENCE, f"frame {frame} of {len(part.evidence)} recorded")
    path = _evidence_file(store, part.evidence[frame], EVIDENCE_MISSING)
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise _Skip(EVIDENCE_UNREADABLE, str(path))
    return path, pixels


def _frame_height_map(store: RecordStore, part: _Reviewed, frame: int) -> Path | None:
    """The height-map file the record keeps for ``frame``, if any
    (:func:`~inspection.records.evidence.frame_height_map`)."""
    from inspection.records.evidence import frame_height_map

    try:
        files = [store.evidence.find(digest) for digest in part.evidence]
    except UserError:  # a malformed hash in the record: the image's check says so
        return None
    return frame_height_map(files, frame)


def _mask(
    store: RecordStore,
    part: _Reviewed,
    defects: list[_Defect],
    frame: int,
    shape: tuple[int, int],
) -> tuple[np.ndarray | None, str | None]:
    """The mask of a REJECT and where it came from (``(None, None)``: no mask)."""
    if part.mask is not None:
        return _drawn_mask(store, part.mask, shape), "drawn"
    if part.verdict != "REJECT":
        return None, None  # overridden to REJECT with nothing drawn: not located
    boxes = [d.bbox for d in defects if d.frame_index == frame and d.bbox is not None]
    mask = box_mask(boxes, shape)
    # A machine REJECT without any box (an image-level score) locates nothing either.
    return (mask, "accepted") if mask.any() else (None, None)


def _drawn_mask(store: RecordStore, sha: str, shape: tuple[int, int]) -> np.ndarray:
    path = _evidence_file(store, sha, MASK_MISSING)
    drawn = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if drawn is None:
        raise _Skip(MASK_UNREADABLE, str(path))
    if drawn.shape[:2] != tuple(shape):
        size = f"mask {drawn.shape[1]}x{drawn.shape[0]}, image {shape[1]}x{shape[0]}"
        raise _Skip(MASK_SIZE, size)
    if drawn.ndim == 3:
        drawn = drawn.max(axis=2)  # any channel set marks the defect
    return np.where(drawn > 0, 255, 0).astype(np.uint8)


def box_mask(boxes: Sequence[Sequence[int]], shape: tuple[int, int]) -> np.ndarray:
    """A 0/255 ``uint8`` mask of ``shape`` with each ``[x0, y0, x1, y1]`` box filled.

    Boxes are in pixels, ``x0, y0`` inclusive and ``x1, y1`` exclusive (as
    :class:`inspection.types.BBox`), and clipped to the image.
    """
    height, width = shape
    mask = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[max(y0, 0) : max(min(y1, height), 0), max(x0, 0) : max(min(x1, width), 0)] = 255
    return mask


def _write_image(source: Path, pixels: np.ndarray, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.suffix.lower() == ".png":
        shutil.copyfile(source, dest)  # the evidence as recorded, byte for byte
    else:
        _write_png(pixels, dest)


def _write_png(pixels: np.ndarray, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", pixels)
    if not ok:
        raise UserError(f"cannot encode a {pixels.dtype} {pixels.shape} image as PNG ({dest})")
    dest.write_bytes(data.tobytes())


# ---------------------------------------------------------------------- names


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:10]


def safe_name(text: str) -> str:
    """``text`` with anything but ASCII letters, digits, ``.``, ``_`` and ``-`` made ``_``,
    no leading dot (a hidden file, which loaders skip), at most 60 characters; may be
    empty."""
    return _UNSAFE.sub("_", text).lstrip(".")[:_NAME_PART]


def part_name(station: str, part_id: str) -> str:
    """The file stem of a part: readable, filesystem-safe, and distinct per part.

    ``"<station>__<part id>-<hash>"`` with unsafe characters replaced; the hash of the
    exact station and part id keeps ids that read alike apart (``a/b`` and ``a_b``), and
    ending in it, a stem never ends in ``_mask`` (the loader's mask suffix).
    """
    return f"{safe_name(station)}__{safe_name(part_id)}-{_hash(station, part_id)}"


def _product_dir(product: str | None) -> str:
    name = product or UNKNOWN_PRODUCT
    safe = safe_name(name)
    if safe != name or not safe or safe == MANIFEST:
        safe = f"{safe}-{_hash(name)}"  # keep distinct products distinct
    return safe


def _class_dir(defect_class: str | None) -> str:
    name = defect_class or DEFAULT_CLASS
    safe = safe_name(name) or DEFAULT_CLASS
    if safe != name:
        safe = f"{safe}-{_hash(name)}"
    if safe.lower() in GOOD_ALIASES:
        # A test/ok folder would load as good parts: keep the REJECT a defect.
        safe = f"{DEFAULT_CLASS}-{safe}"
    return safe


__all__ = [
    "ExportSummary",
    "Skipped",
    "box_mask",
    "export_reviews",
    "part_name",
    "safe_name",
]
