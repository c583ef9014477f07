"""The audit of one batch of parts, and the local engine that streams an input through it.

:class:`PartAuditor` is what both engines run (the local one here, Ray Data's in
:mod:`inspection.audit.ray_engine`): read and decode parts on threads, run the model
over the tiles of the whole batch together, decide each part with the line's
:class:`~inspection.pipeline.Inspector` (so :func:`~inspection.pipeline.decide` makes
every verdict; nothing here compares a score with a threshold), draw the overlays of
the parts that did not pass, and return one JSON record a part.

Batches are planned in one place (:func:`plan_batches`: ``batch_size`` consecutive
parts not yet done), whichever engine runs them, so a part's tiles meet the same
neighbours in the same forward pass, whichever engine runs them: the two engines'
verdicts and measurements are identical (their scores to float32 rounding, as the
model's thread count allows).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from inspection.audit.inputs import (
    AuditItem,
    InputRefused,
    count_inputs,
    input_kind,
    iter_inputs,
    read_bytes,
    sha256_hex,
)
from inspection.audit.results import ResultsLog, check_run, record_key
from inspection.errors import UserError
from inspection.io import HeightEncoding, read_audio, read_height_map, read_image, write_image
from inspection.models.outputs import Detection, concat_detections
from inspection.models.preprocess import Tiles, preprocess
from inspection.pipeline import (
    Inspector,
    Thresholds,
    line_thresholds,
    review_result,
)
from inspection.standards import Standard
from inspection.types import AudioClip, Frame, InspectionResult, Observation, Verdict
from inspection.viz import class_colour, height_picture, overlay

MAX_TILES_PER_RUN = 64
"""Model inputs per forward pass: the batch's tiles run in slices of this many, so
memory stays bounded whatever the images' size."""
THUMBNAIL_SIDE = 200  # px, the longest side of a report thumbnail (drawn at that size)
THUMB_LABELS = 4  # labelled regions on a thumbnail; on the full-size overlay:
FULL_LABELS = 24
OVERLAYS = "overlays"
THUMBNAILS = "overlays/thumbs"
STATION = "audit"
_BATCH_FIELDS = (
    "maps",
    "image_logit",
    "class_logits",
    "audio_logit",
    "part_logit",
    "patch_tokens",
    "audio_tokens",
)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class AuditOptions:
    """How an audit runs.

    Attributes
    ----------
    batch_size : int
        Parts whose tiles run through the model together.
    workers : int
        Threads that read and decode images and draw overlays (local engine); model
        replicas (Ray engine).
    mm_per_px : float | None
        Scale for every part whose input states none (a manifest's, or ``dataset.yaml``'s,
        wins). Without any, sizes are not measured and size clauses go to review.
    engine : str
        ``"local"`` or ``"ray"``.
    ray_address : str | None
        An existing Ray cluster (``ray://host:10001`` or ``auto``); ``None`` starts a
        local Ray on 127.0.0.1.
    verify : bool
        Check the model's files against their recorded SHA-256.
    progress : bool
        Show a progress bar (rate and ETA).
    normality : Path | None
        A feature normality model of the product fused with the model
        (:func:`~inspection.pipeline.load_detector`): what only it finds goes to REVIEW.
        The two models tile differently, so parts then run one at a time.
    review_from : float | None
        A review band below the model's image threshold
        (:func:`~inspection.pipeline.with_review_band`); ``None``: none.
    guard_band : Path | None
        The gauge's guard band (``guard_band.json`` from ``inspection evaluate``,
        :func:`~inspection.pipeline.with_guard_band`): a reading within it of a clause's
        limit is REVIEW. ``None``: readings taken as exact.
    profiler_dents : bool
        Search each part's height map (a manifest's ``height``) for dents the camera
        missed (:func:`~inspection.pipeline.with_profiler_dents`).
    height_encoding : HeightEncoding | None
        How integer height maps read in mm (``dataset.yaml``'s ``height_encoding`` is
        used where this is ``None``); float maps are mm already.
    """

    batch_size: int = 16
    workers: int = 4
    mm_per_px: float | None = None
    engine: str = "local"
    ray_address: str | None = None
    verify: bool = True
    progress: bool = True
    normality: Path | None = None
    review_from: float | None = None
    guard_band: Path | None = None
    profiler_dents: bool = False
    height_encoding: HeightEncoding | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1, not {self.workers}")
        if self.engine not in ("local", "ray"):
            raise UserError(f"--engine must be 'local' or 'ray', not {self.engine!r}")
        if self.mm_per_px is not None:
            Frame(np.zeros((8, 8), np.uint8), mm_per_px=self.mm_per_px)  # refused at the door


def _encoding_record(encoding: HeightEncoding | None) -> dict[str, Any] | None:
    return None if encoding is None else asdict(encoding)


@dataclass(frozen=True)
class AuditSummary:
    """What one run did (the report counts every part of the folder, resumed ones too)."""

    parts: int  # records in results.jsonl after the run
    new: int  # parts audited by this run
    skipped: int  # parts found done by an earlier run
    verdicts: dict[str, int]
    unreadable: int
    seconds: float
    out: Path

    @property
    def images_per_second(self) -> float:
        return self.new / max(self.seconds, 1e-9)


@dataclass
class LoadedPart:
    """One part read for auditing: its pixels, or why it could not be read."""

    item: AuditItem
    sha256: str | None
    frame: Frame | None = None
    tiles: Tiles | None = None
    audio: AudioClip | None = None
    error: str | None = None
    done: bool = False  # found in results.jsonl: nothing to do

    @property
    def key(self) -> str:
        return record_key(self.sha256, self.item.source)


@dataclass
class _Replay:
    """A detector that returns a detection already made in a batch (or raises the error
    the batch met), so the line's Inspector decides the part exactly as on the line."""

    classes: tuple[str, ...]
    version: str
    detection: Detection | None
    error: Exception | None = None

    def detect(self, image: np.ndarray, audio: AudioClip | None = None) -> Detection:
        if self.error is not None:
            raise self.error
        assert self.detection is not None
        return self.detection


@dataclass
class PartAuditor:
    """Audits batches of parts with one detector under one standard.

    Parameters
    ----------
    detector
        A :class:`~inspection.models.detector.TiledDetector` (torch or ONNX Runtime).
    metadata
        The model's metadata (its calibrated thresholds).
    standard
        The defect standard.
    out
        The audit folder: overlays are written under it.
    options
        The run's options.
    """

    detector: Any
    metadata: dict[str, Any]
    standard: Standard
    out: Path
    options: AuditOptions = AuditOptions()
    pool: Executor = field(init=False)

    def __post_init__(self) -> None:
        self.thresholds: Thresholds = line_thresholds(
            self.metadata,
            review_from=self.options.review_from,
            guard_band=self.options.guard_band,
            profiler_dents=self.options.profiler_dents,
        )
        self.pool = ThreadPoolExecutor(self.options.workers, thread_name_prefix="audit")
        (self.out / THUMBNAILS).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_paths(
        cls, model: str | Path, standard: str | Path, out: str | Path, options: AuditOptions
    ) -> PartAuditor:
        """Load the model and the standard (as each Ray worker does)."""
        from inspection.pipeline import load_detector
        from inspection.standards import load_standard

        detector, metadata = load_detector(Path(model), options.verify, options.normality)
        return cls(detector, metadata, load_standard(Path(standard)), Path(out), options)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    # -- identity -------------------------------------------------------------------

    def run_identity(self) -> dict[str, Any]:
        """What the verdicts depend on, recorded in ``audit.json``."""
        t = self.thresholds
        return {
            "model_version": self.detector.version,
            "standard_id": self.standard.id,
            "standard_revision": self.standard.revision,
            "standard_version": self.standard.version,
            "calibration_version": t.version,
            # how sizes are read where a part states no scale or height encoding of its own
            "mm_per_px": self.options.mm_per_px,
            "height_encoding": _encoding_record(self.options.height_encoding),
            "thresholds": {"image": t.image, "pixel": t.pixel, "audio": t.audio},
            "clauses": {
                c.id: {"severity": str(c.severity), "action": str(c.action), "text": c.text.en}
                for c in self.standard.clauses
            },
        }

    # -- reading --------------------------------------------------------------------

    def hash_item(self, item: AuditItem, done: set[str] | ResultsLog = frozenset()) -> LoadedPart:
        """Read the item's bytes and hash them; nothing is decoded."""
        if item.problem is not None:
            part = LoadedPart(item, None, error=item.problem)
        else:
            try:
                part = LoadedPart(item, sha256_hex(read_bytes(item)))
            except InputRefused as exc:
                part = LoadedPart(item, None, error=str(exc))
        part.done = part.key in done
        return part

    def load(self, item: AuditItem, done: set[str] | ResultsLog = frozenset()) -> LoadedPart:
        """Hash, then (when not done yet) decode and tile the item; any problem with the
        input is the part's ``error``, never an exception."""
        if item.problem is not None:
            part = LoadedPart(item, None, error=item.problem)
            part.done = part.key in done
            return part
        try:
            data = read_bytes(item)
        except InputRefused as exc:
            part = LoadedPart(item, None, error=str(exc))
            part.done = part.key in done
            return part
        part = LoadedPart(item, sha256_hex(data))
        part.done = part.key in done
        if part.done:
            return part
        try:
            image = decode_item(item, data)
            height = item_height_map(item, self.options.height_encoding)
            part.frame = Frame(
                image, camera=STATION, mm_per_px=self._scale(item), height_map=height
            )
            tiling = getattr(self.detector, "preprocess_options", None)  # none: a fusion
            part.tiles = None if tiling is None else preprocess(image, tiling)
            part.audio = read_audio(item.audio) if item.audio else None
        except UserError as exc:  # the input's fault; anything else is a bug
            part.error = _strip_path(str(exc), item)
            part.frame = part.tiles = part.audio = None
        return part

    def _scale(self, item: AuditItem) -> float | None:
        return item.mm_per_px if item.mm_per_px is not None else self.options.mm_per_px

    # -- the batch ------------------------------------------------------------------

    def audit_batch(self, parts: list[LoadedPart]) -> list[dict[str, Any]]:
        """Records of a batch of loaded parts, in order (see the module)."""
        readable = [p for p in parts if p.error is None]
        detections = self._detect(readable)
        results = dict(
            zip(
                (id(p) for p in readable),
                self.pool.map(self._decide, readable, detections),
                strict=True,
            )
        )
        records = list(self.pool.map(lambda p: self._record(p, results.get(id(p))), parts))
        for p in parts:  # the pixels are done with: memory stays bounded
            p.frame = p.tiles = p.audio = None
        return records

    def _detect(self, parts: list[LoadedPart]) -> list[Detection | Exception]:
        out: list[Detection | Exception | None] = [None] * len(parts)
        batched = [i for i, p in enumerate(parts) if p.audio is None and p.tiles is not None]
        if batched:
            try:
                found = detect_tiles(self.detector, [parts[i].tiles for i in batched])
            except Exception:  # one bad part must not take its batch with it: each alone
                found = [self._detect_one(parts[i]) for i in batched]
            for i, detection in zip(batched, found, strict=True):
                out[i] = detection
        for i, p in enumerate(parts):
            if out[i] is None:  # a tap test is scored in windows, a fusion part by part
                out[i] = self._detect_one(p)
        return out  # type: ignore[return-value]

    def _detect_one(self, part: LoadedPart) -> Detection | Exception:
        try:
            return self.detector.detect(part.frame.image, part.audio)
        except Exception as exc:  # the line's policy: a model failure is REVIEW
            return exc

    def _decide(self, part: LoadedPart, detection: Detection | Exception) -> InspectionResult:
        error = detection if isinstance(detection, Exception) else None
        replay = _Replay(
            self.detector.classes,
            self.detector.version,
            None if error else detection,
            error,
        )
        inspector = Inspector(replay, self.standard, self.thresholds)
        metadata = {}
        if part.item.reference_rgb is not None:
            metadata["reference_rgb"] = part.item.reference_rgb
        observation = Observation(
            part.item.part_id, STATION, (part.frame,), audio=part.audio, metadata=metadata
        )
        return inspector.inspect(observation)

    def _record(self, part: LoadedPart, result: InspectionResult | None) -> dict[str, Any]:
        if result is None:  # could not be read: listed with its reason, never a PASS
            result = review_result(self.standard, part.item.part_id, part.error or "unreadable")
            result = replace(
                result,
                model_version=self.detector.version,
                calibration_version=self.thresholds.version,
            )
        record = audit_record(part, result)
        if result.verdict is not Verdict.PASS and part.frame is not None:
            record.update(self._draw(part, result))
        return record

    def _draw(self, part: LoadedPart, result: InspectionResult) -> dict[str, str]:
        """The full-size overlay and the report's thumbnail, each drawn at the size it
        is shown (the thumbnail scaled first), so that their labels are legible. A part
        with a height map has it beside the full-size overlay, in false colour."""
        name = overlay_name(part)
        image = part.frame.image
        shape = image.shape[:2]
        full = self.out / OVERLAYS / f"{name}.png"
        regions, footprints = self._regions(result, shape, shape, FULL_LABELS)
        picture = overlay(image, regions, dashed=footprints)
        if part.frame.height_map is not None:  # the relief its dents were measured on, beside
            outlines = [(mask, colour) for mask, _, colour in regions]
            relief = height_picture(part.frame.height_map, outlines, footprints)
            picture = np.concatenate([picture, relief], axis=1)
        _write_atomic(full, picture)
        scale = THUMBNAIL_SIDE / max(shape)
        size = (max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(image, size[::-1], interpolation=interp)
        thumb = self.out / THUMBNAILS / f"{name}.jpg"
        regions, footprints = self._regions(result, shape, size, THUMB_LABELS)
        _write_atomic(thumb, overlay(small, regions, dashed=footprints))
        return {
            "overlay": full.relative_to(self.out).as_posix(),
            "thumbnail": thumb.relative_to(self.out).as_posix(),
        }

    def _regions(self, result: InspectionResult, shape, size, labelled: int):
        """Overlay regions of the part's defects at ``size``, and the footprints the
        profiler measured dents on (dashed); the ``labelled`` largest regions carry
        their class and clause, the rest are outlined only (labels would hide the
        part)."""
        classes = list(self.detector.classes)
        found = [
            d
            for d in result.decisions
            if d.defect.mask is not None and d.defect.mask.shape == tuple(shape)
        ]
        largest = sorted(range(len(found)), key=lambda i: -int(found[i].defect.mask.sum()))
        named = set(largest[:labelled])
        regions, footprints = [], []
        for i, d in enumerate(found):
            cls = d.defect.defect_class
            colour = class_colour(classes.index(cls) if cls in classes else len(classes))
            label = (f"{cls} {d.clause_id}" if d.clause_id else cls) if i in named else ""
            regions.append((_at_size(d.defect.mask, size), label, colour))
            if d.defect.footprint is not None:
                footprints.append((_at_size(d.defect.footprint, size), colour))
        return regions, footprints


def _at_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A frame's mask drawn on a picture of ``size`` (rows, columns)."""
    if tuple(size) == mask.shape:
        return mask
    return cv2.resize(mask.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST)


def item_height_map(item: AuditItem, encoding: HeightEncoding | None) -> np.ndarray | None:
    """An audited part's height map in mm (``None`` without one), read through
    ``encoding`` (the audit's), else the one its ``dataset.yaml`` states."""
    if not item.height_map:
        return None
    if encoding is None and item.height_encoding is not None:
        encoding = HeightEncoding.from_mapping(item.height_encoding, "height_encoding")
    return read_height_map(item.height_map, encoding)


def detect_tiles(detector: Any, tiles: list[Tiles]) -> list[Detection]:
    """Full-size detections of several images whose tiles run through the model
    together, :data:`MAX_TILES_PER_RUN` at a time (what ``detector.detect`` does for one
    image, batched across images)."""
    if not tiles:
        return []
    stacked = np.concatenate([t.images for t in tiles])
    runs = [
        detector.run(stacked[i : i + MAX_TILES_PER_RUN])
        for i in range(0, len(stacked), MAX_TILES_PER_RUN)
    ]
    joined = concat_detections(runs)
    out, start = [], 0
    for t in tiles:
        n = len(t.layout)
        one = _take(joined, start, start + n)
        out.append(one.merge_tiles(t.layout, reduce=detector.reduce))
        start += n
    return out


def _take(detection: Detection, start: int, stop: int) -> Detection:
    """Items ``start:stop`` of a batched detection."""
    fields = {
        name: None if getattr(detection, name) is None else getattr(detection, name)[start:stop]
        for name in _BATCH_FIELDS
    }
    return replace(detection, **fields)


def audit_record(part: LoadedPart, result: InspectionResult) -> dict[str, Any]:
    """One line of ``results.jsonl``: the part's verdict, defects with their
    measurements and clauses, and everything that made the verdict."""
    data = result.to_json()
    decisions = data.pop("decisions")
    record: dict[str, Any] = {
        "key": part.key,
        "source": part.item.source,
        "sha256": part.sha256,
        **data,
        "defects": [
            {
                "defect_class": d["defect"]["defect_class"],
                "zone": d["zone"],
                "measurements": d["defect"]["attributes"],
                "bbox": d["defect"]["bbox"],
                "score": d["defect"]["score"],
                "clause": d["clause_id"],
                "severity": d["severity"],
                "action": d["action"],
                "reason": d["reason"],
                **({"footprint_bbox": box} if (box := d["defect"].get("footprint_bbox")) else {}),
            }
            for d in decisions
        ],
        "error": part.error,
    }
    if part.frame is not None:
        record["width"], record["height"] = part.frame.width, part.frame.height
    return record


_RESULT_FIELDS = (
    "part_id",
    "verdict",
    "severity",
    "action",
    "reasons",
    "standard_id",
    "standard_version",
    "model_version",
    "calibration_version",
    "scores",
    "timings_ms",
    "path",
)


def result_of(record: dict[str, Any]) -> InspectionResult:
    """The :class:`~inspection.types.InspectionResult` of one ``results.jsonl`` record
    (the inverse of :func:`audit_record`: ``audit --db`` records it)."""
    decisions = [
        {
            "defect": {
                "defect_class": d["defect_class"],
                "attributes": d["measurements"],
                "bbox": d["bbox"],
                "zone": d["zone"],
                "score": d["score"],
                "footprint_bbox": d.get("footprint_bbox"),
            },
            "zone": d["zone"],
            "severity": d["severity"],
            "action": d["action"],
            "clause_id": d["clause"],
            "reason": d["reason"],
        }
        for d in record.get("defects", ())
    ]
    return InspectionResult.from_json(
        {**{k: record[k] for k in _RESULT_FIELDS if k in record}, "decisions": decisions}
    )


def overlay_name(part: LoadedPart) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(part.item.source).stem)[:60]
    return f"{stem}-{(part.sha256 or '0' * 12)[:12]}"


def decode_item(item: AuditItem, data: bytes) -> np.ndarray:
    """The pixels of an item's bytes, read as every image is (:func:`~inspection.io.read_image`)."""
    if item.entry is None:
        return read_image(item.path)
    # The reader takes paths (its header probe, EXIF and pixel budget work on files):
    # a zip entry is decoded from a private temporary copy, deleted at once.
    fd, tmp = tempfile.mkstemp(suffix=item.suffix, prefix="audit-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return read_image(tmp)
        except UserError as exc:
            raise type(exc)(str(exc).replace(tmp, item.source)) from exc
    finally:
        os.unlink(tmp)


def _strip_path(message: str, item: AuditItem) -> str:
    """A reader's message without the file's name, which the report shows beside it."""
    for prefix in (f"{item.path}: ", f"{item.source}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _write_atomic(path: Path, image: np.ndarray) -> None:
    """Write beside, then rename: a kill never leaves half an image behind."""
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    write_image(tmp, image)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------
# Planning and the local engine


def ordered_map(
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], ahead: int
) -> Iterator[R]:
    """``map(fn, items)`` on ``pool``, in order, with at most ``ahead`` in flight: the
    input streams, and memory holds a bounded window of it."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def plan_batches(
    parts: Iterable[LoadedPart],
    batch_size: int,
    on_skip: Callable[[LoadedPart], None],
) -> Iterator[list[LoadedPart]]:
    """Batches of ``batch_size`` consecutive parts still to audit, in input order.

    Parts done by an earlier run, and parts refused before they could be hashed, go to
    ``on_skip`` and join no batch: both engines plan this way, so their batches are the
    same.
    """
    batch: list[LoadedPart] = []
    for part in parts:
        if part.done or part.sha256 is None:
            on_skip(part)
            continue
        batch.append(part)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def audit(
    input_spec: str | Path,
    out: str | Path,
    model: str | Path,
    standard: str | Path,
    options: AuditOptions = AuditOptions(),
) -> AuditSummary:
    """Audit every image of ``input_spec`` into ``out`` (see :mod:`inspection.audit`).

    Parameters
    ----------
    input_spec
        A folder (searched recursively), a ``.zip``, a glob (``'lot7/**/*.png'``) or a
        ``.jsonl`` manifest (or a folder holding ``manifest.jsonl``).
    out
        The audit folder: ``report.html``, ``results.csv``, ``results.jsonl``,
        ``overlays/``. A re-run into it resumes: parts already there are skipped.
    model
        A model directory or an exported ``.onnx`` graph.
    standard
        The defect standard's YAML file.
    options
        See :class:`AuditOptions`.

    Returns
    -------
    AuditSummary

    Raises
    ------
    UserError
        An input that cannot be listed, a model or standard that cannot be loaded, or an
        output folder holding another audit.
    """
    from inspection.audit.report import write_outputs

    out = Path(out)
    kind = input_kind(input_spec)  # refuse a bad input before the model loads
    total = count_inputs(input_spec)
    if total == 0:
        raise UserError(f"{input_spec}: no image files found (suffixes .png .jpg .tif ...)")
    start = time.perf_counter()
    if options.engine == "ray":
        from inspection.audit.ray_engine import run_ray

        identity, counts = run_ray(input_spec, out, model, standard, options, total)
    else:
        identity, counts = _run_local(input_spec, out, model, standard, options, total)
    seconds = time.perf_counter() - start
    run = {"input": str(input_spec), "input_kind": kind, "engine": options.engine, **identity}
    stats = write_outputs(out, run)
    return AuditSummary(
        parts=stats.parts,
        new=counts["new"],
        skipped=counts["skipped"],
        verdicts=stats.verdicts,
        unreadable=stats.unreadable,
        seconds=seconds,
        out=out,
    )


def _run_local(input_spec, out: Path, model, standard, options: AuditOptions, total: int):
    auditor = PartAuditor.from_paths(model, standard, out, options)
    identity = auditor.run_identity()
    check_run(out, {"input": str(input_spec), **identity})
    counts = {"new": 0, "skipped": 0}
    try:
        with ResultsLog(out) as log, _progress(total, options.progress) as bar:
            skip = skipper(auditor, log, counts, bar)
            parts = ordered_map(
                auditor.pool,
                lambda item: auditor.load(item, log),
                iter_inputs(input_spec),
                ahead=2 * options.batch_size,
            )
            for batch in plan_batches(parts, options.batch_size, skip):
                for record in auditor.audit_batch(batch):
                    log.append(record)
                    counts["new"] += 1
                    bar.update(1)
    finally:
        auditor.close()
    return identity, counts


def skipper(auditor: PartAuditor, log, counts: dict[str, int], bar):
    """What ``plan_batches`` does with a part it does not batch: one done before is
    counted as skipped; one refused before it could be hashed gets a record of its own.
    (The local and Ray engines share it.)"""

    def skip(part: LoadedPart) -> None:
        if part.done:
            counts["skipped"] += 1
        else:
            log.append(auditor._record(part, None))
            counts["new"] += 1
        bar.update(1)

    return skip


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="img",
        desc="auditing",
        disable=not enabled,
        mininterval=0.5,
        smoothing=0.1,
    )


def dumps_items(parts: list[LoadedPart]) -> str:
    """A planned batch as JSON, for a Ray worker (items and the hashes seen)."""
    return json.dumps([{**p.item.to_json(), "sha256": p.sha256} for p in parts])
