"""Dataset checker: decode every file of a dataset and report what is wrong with it.

Unlike the loaders, the checker reads every image, mask and audio clip, so it finds the
problems that otherwise surface halfway through a training run or, worse, silently bias
an evaluation: unreadable files, masks that are missing, orphaned or misaligned, broken
audio, and duplicate images, above all duplicates shared between train and test.

Duplicates are found in two stages. A 64-bit perceptual hash (``imagehash.phash``) of
each image proposes candidate pairs (Hamming distance, all against all with numpy XOR +
popcount); a candidate is confirmed only if the 32×32 grayscale thumbnails differ by less
than :data:`MAX_THUMB_RMS` grey levels (root mean square). The hash alone is not enough:
good parts of one product often share a hash, while an exact or re-encoded copy differs
from its original by well under one grey level at thumbnail size. Two shots of the same
part at the same pose can differ as little as a re-encoded copy and are then reported
too, which is what a train/test split wants to know about. Both stages run block by block
(the thumbnail distances as one matrix product per block), so the candidate pairs of a
dataset of 10k lookalikes never have to be held at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import imagehash
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from inspection.datasets.loaders import (
    GOOD,
    MANIFEST_NAME,
    Dataset,
    DatasetError,
    Sample,
    _manifest_dataset,
    detect_layout,
    load_dataset,
    parse_manifest,
)
from inspection.io import (
    ORIENTATIONS,
    HeightEncoding,
    InputError,
    read_audio,
    read_header,
    read_height_map,
    read_image,
)

MAX_HASH_DISTANCE = 8
"""Candidate duplicates: phash Hamming distance at most this (of 64 bits)."""
MAX_THUMB_RMS = 2.0
"""Confirmed duplicates: RMS difference of the 32×32 thumbnails, in grey levels of 255.

Re-encoding an image of 128 px or more as JPEG (quality 30–95) moves its thumbnail by
0.1–1.7; lookalike parts of one product, each with its own surface grain, differ by 2.6
or more. Below about 100 px the thumbnail keeps the JPEG noise and a heavily compressed
copy (quality ≤ 75 of a noisy image) may be missed.
"""
BLIND_HEIGHT_SHARE = 0.5
"""A height map NaN (or infinite) over more than this share of it: the profiler saw little."""
MAX_ASPECT_RATIO = 1.1
"""Duplicates have the same shape: aspect ratios within this factor."""
THUMB_SIZE = 32
_HASH_SOURCE_SIZE = 128  # phash sees a 32×32 squash; hashing a 128×128 area-resize is enough
_PAIR_BLOCK = 1 << 22  # image pairs compared per block (≈ 32 MB of uint64 hashes)
_MAX_PER_KIND = 5  # problems of one kind listed in the printed report (the JSON has them all)


class Issue(NamedTuple):
    """One problem found in a dataset: the file, a short kind, a readable message.

    Kinds (errors): ``dataset``, ``manifest``, ``missing_file``, ``unreadable_image``,
    ``unreadable_mask``, ``unreadable_audio``, ``unreadable_height_map``,
    ``misaligned_height_map``, ``missing_mask``, ``misaligned_mask``,
    ``leakage`` (duplicates across splits), ``label_conflict``.
    Kinds (warnings): ``orphan_mask``, ``empty_mask``, ``mask_on_good``, ``nonbinary_mask``,
    ``missing_mask`` (a manifest that states no mask), ``no_masks``, ``silent_audio``,
    ``blind_height_map``, ``flat_height_map``,
    ``duplicate``, ``duplicate_entry``, ``duplicate_part_id``, ``rotated`` (an image or
    mask read turned or mirrored by its EXIF orientation).
    """

    path: Path
    kind: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"path": str(self.path), "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are copies of each other (iterates over their paths)."""

    paths: tuple[Path, ...]
    splits: tuple[str | None, ...]
    labels: tuple[str, ...]
    identical: bool  # byte-identical files, not just the same picture

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def cross_split(self) -> bool:
        """The copies sit in different splits: train/test leakage."""
        return len({s for s in self.splits if s is not None}) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": [str(p) for p in self.paths],
            "splits": list(self.splits),
            "labels": list(self.labels),
            "identical": self.identical,
            "cross_split": self.cross_split,
        }


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_dataset` found.

    Attributes
    ----------
    root : Path
        The path that was checked.
    layout : str | None
        Detected layout; ``None`` if the dataset could not be listed.
    n_samples : int
    counts : Mapping[str, Mapping[str, int]]
        ``{split: {label: n}}``; samples without a split are under ``"unsplit"``.
    errors, warnings : tuple[Issue, ...]
        ``(path, kind, message)`` each. Errors make the dataset unusable as is.
    duplicates : tuple[DuplicateGroup, ...]
    images : Mapping[str, Any]
        Summary of the decodable images: count, width and height range, dtypes, channels.
    audio : Mapping[str, Any]
        Summary of the decodable audio clips: count and duration range.
    seconds : float
        Wall time of the check.
    """

    root: Path
    layout: str | None
    n_samples: int = 0
    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict, hash=False)
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    duplicates: tuple[DuplicateGroup, ...] = ()
    images: Mapping[str, Any] = field(default_factory=dict, hash=False)
    audio: Mapping[str, Any] = field(default_factory=dict, hash=False)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    @property
    def leaks(self) -> tuple[DuplicateGroup, ...]:
        """Duplicate groups that span splits."""
        return tuple(g for g in self.duplicates if g.cross_split)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view of the report."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "ok": self.ok,
            "n_samples": self.n_samples,
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "images": dict(self.images),
            "audio": dict(self.audio),
            "errors": [e.to_json() for e in self.errors],
            "warnings": [w.to_json() for w in self.warnings],
            "duplicates": [g.to_json() for g in self.duplicates],
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------
# Entry point


def check_dataset(
    path: str | Path, progress: bool = True, *, workers: int | None = None
) -> CheckReport:
    """Decode every image, mask and audio file of a dataset and report its problems.

    Parameters
    ----------
    path : str | Path
        Anything :func:`inspection.datasets.load_dataset` accepts.
    progress : bool
        Show a progress bar while decoding.
    workers : int | None
        Decoding threads (OpenCV releases the GIL); default: CPU count.

    Returns
    -------
    CheckReport
        Never raises for a broken file or dataset: everything is reported in it.
    """
    start = time.perf_counter()
    root = Path(path)
    try:
        dataset, errors = _load(root)
    except DatasetError as exc:
        issue = Issue(root, "dataset", str(exc).removeprefix(f"{root}: "))
        return CheckReport(root=root, layout=None, errors=(issue,), seconds=_since(start))
    warnings: list[Issue] = []
    _check_listing(dataset, errors, warnings)

    inspect = partial(_inspect_sample, encoding=dataset.height_encoding)
    with _quiet_opencv(), ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        results = list(
            tqdm(
                pool.map(inspect, dataset.samples),
                total=len(dataset),
                desc=f"checking {root.name or root}",
                unit="img",
                disable=not progress,
                leave=False,
            )
        )
    for result in results:
        errors.extend(result.errors)
        warnings.extend(result.warnings)

    groups = find_duplicates(dataset.samples, [r.image for r in results])
    for group in groups:
        _duplicate_issue(group, dataset.root, errors, warnings)

    return CheckReport(
        root=root,
        layout=dataset.layout,
        n_samples=len(dataset),
        counts={_split_key(k): v for k, v in dataset.counts().items()},
        errors=tuple(sorted(errors, key=_issue_order)),
        warnings=tuple(sorted(warnings, key=_issue_order)),
        duplicates=tuple(groups),
        images=_image_summary([r.image for r in results if r.image is not None]),
        audio=_audio_summary([r.audio_s for r in results if r.audio_s is not None]),
        seconds=_since(start),
    )


def _load(root: Path) -> tuple[Dataset, list[Issue]]:
    """The dataset, and one error per malformed manifest line (the rest still checked)."""
    if detect_layout(root) != "manifest":
        return load_dataset(root), []
    manifest = root if root.is_file() else root / MANIFEST_NAME
    samples, problems = parse_manifest(manifest)
    errors = [Issue(manifest, "manifest", f"line {line}: {message}") for line, message in problems]
    return _manifest_dataset(manifest, samples), errors


def _check_listing(dataset: Dataset, errors: list[Issue], warnings: list[Issue]) -> None:
    """Problems visible from the file listing alone."""
    for mask in dataset.orphan_masks:
        warnings.append(Issue(mask, "orphan_mask", "mask file belongs to no image"))

    seen_images = Counter(s.image for s in dataset.samples)
    for image, n in seen_images.items():
        if n > 1:
            warnings.append(Issue(image, "duplicate_entry", f"image listed {n} times"))
    if dataset.layout == "manifest":
        part_ids = Counter(s.part_id for s in dataset.samples)
        for s in dataset.samples:
            if part_ids[s.part_id] > 1:
                message = f"part_id {s.part_id!r} is used by {part_ids[s.part_id]} entries"
                warnings.append(Issue(s.image, "duplicate_part_id", message))

    defective = [s for s in dataset.samples if not s.is_good]
    unmasked = [s for s in defective if s.mask is None]
    if not unmasked:
        return
    if dataset.layout == "manifest":
        # A manifest says so explicitly (mask: null), e.g. for a defect only audio reveals.
        for s in unmasked:
            warnings.append(Issue(s.image, "missing_mask", f"{s.label} image has mask: null"))
    elif len(unmasked) == len(defective) and dataset.layout == "folder":
        # A classification set without masks: one note, not one error per image.
        message = f"no masks for any of {len(defective)} defective images (labels only)"
        warnings.append(Issue(dataset.root, "no_masks", message))
    else:
        for s in unmasked:
            errors.append(Issue(s.image, "missing_mask", f"{s.label} image has no mask file"))


# ---------------------------------------------------------------------------------------
# Per-sample decoding (runs in worker threads)


@dataclass(frozen=True)
class ImageInfo:
    """What the checker keeps of one decoded image: shape and duplicate fingerprints."""

    height: int
    width: int
    dtype: str
    channels: int
    phash: int  # 64-bit perceptual hash
    thumb: np.ndarray  # (THUMB_SIZE, THUMB_SIZE) grayscale 0-255, float16 to halve memory


@dataclass(frozen=True)
class _SampleResult:
    image: ImageInfo | None
    audio_s: float | None
    errors: list[Issue]
    warnings: list[Issue]


def _inspect_sample(sample: Sample, encoding: HeightEncoding | None = None) -> _SampleResult:
    errors: list[Issue] = []
    warnings: list[Issue] = []
    info = None
    image = _read(sample.image, "image", read_image, errors)
    if image is not None:
        info = image_info(image)
        _check_orientation(sample.image, warnings)
    if sample.mask is not None:
        mask = _read(sample.mask, "mask", read_image, errors)
        if mask is not None:
            _check_orientation(sample.mask, warnings)
            _check_mask(sample, mask, image, errors, warnings)
    duration = None
    if sample.audio is not None:
        clip = _read(sample.audio, "audio", read_audio, errors)
        if clip is not None:
            duration = clip.duration_s
            if not np.any(clip.samples):
                warnings.append(Issue(sample.audio, "silent_audio", "audio is all zeros"))
    if sample.height_map is not None:
        reader = partial(read_height_map, encoding=encoding)
        height = _read(sample.height_map, "height_map", reader, errors)
        if height is not None and image is not None and height.shape != image.shape[:2]:
            (hh, hw), (ih, iw) = height.shape, image.shape[:2]
            message = f"height map is {hw}x{hh} px, image {sample.image.name} is {iw}x{ih} px"
            errors.append(Issue(sample.height_map, "misaligned_height_map", message))
        if height is not None:
            warnings += _height_map_warnings(sample.height_map, height)
    return _SampleResult(info, duration, errors, warnings)


def _height_map_warnings(path: Path, height: np.ndarray) -> list[Issue]:
    """A height map the profiler saw little of (``blind_height_map``: every dent there
    goes unmeasured, and a depth clause to REVIEW), or one value everywhere
    (``flat_height_map``: a profiler's map has noise, so this is an export of nothing)."""
    seen = np.isfinite(height)
    if seen.mean() < 1 - BLIND_HEIGHT_SHARE:
        share = f"{1 - seen.mean():.0%}"
        return [Issue(path, "blind_height_map", f"the profiler saw nothing over {share} of it")]
    if np.ptp(height[seen]) == 0:
        value = f"{float(height[seen][0]):g}"
        return [Issue(path, "flat_height_map", f"height map is {value} mm everywhere")]
    return []


def _read(path: Path, role: str, reader: Any, errors: list[Issue]) -> Any:
    """``reader(path)``, or ``None`` with an error recorded."""
    if not path.is_file():
        errors.append(Issue(path, "missing_file", f"{role} file not found"))
        return None
    try:
        return reader(path)
    except InputError as exc:
        errors.append(Issue(path, f"unreadable_{role}", str(exc).removeprefix(f"{path}: ")))
    except Exception as exc:  # a reader bug or exotic file must not stop the whole check
        errors.append(Issue(path, f"unreadable_{role}", f"{type(exc).__name__}: {exc}"))
    return None


def _check_orientation(path: Path, warnings: list[Issue]) -> None:
    """A file stored sideways (or mirrored) whose EXIF orientation turns it on read: as
    every reader here and every viewer shows it, but a tool that ignores the tag (or a
    mask drawn on the stored pixels) sees it otherwise."""
    header = read_header(path)
    if header is None or not header.rotated:
        return
    swapped = header.orientation in (5, 6, 7, 8)
    stored = (header.height, header.width) if swapped else (header.width, header.height)
    message = (
        f"EXIF orientation {header.orientation}: read {ORIENTATIONS[header.orientation]}, "
        f"as viewers show it (stored as {stored[0]}x{stored[1]} px)"
    )
    warnings.append(Issue(path, "rotated", message))


def _check_mask(
    sample: Sample,
    mask: np.ndarray,
    image: np.ndarray | None,
    errors: list[Issue],
    warnings: list[Issue],
) -> None:
    path = sample.mask
    assert path is not None
    if image is not None and mask.shape[:2] != image.shape[:2]:
        mh, mw = mask.shape[:2]
        ih, iw = image.shape[:2]
        message = f"mask is {mw}x{mh} px, image {sample.image.name} is {iw}x{ih} px"
        errors.append(Issue(path, "misaligned_mask", message))
    values = mask.max(axis=2) if mask.ndim == 3 else mask  # as inspection.io.read_mask
    levels = np.unique(values)
    if len(levels) > 2:
        # read_mask keeps pixels above half the peak: say how many faint ones it drops,
        # so a mask that is mostly faint (a soft probability map?) shows up here.
        peak = int(levels[-1])
        dropped = int(np.count_nonzero((values > 0) & (values <= peak / 2)))
        message = (
            f"mask has {len(levels)} grey levels (resampled or JPEG?); pixels above half "
            f"its peak ({peak}) count as defect, {dropped} fainter ones do not"
        )
        warnings.append(Issue(path, "nonbinary_mask", message))
    has_defect = bool(levels[-1] > 0)
    if not sample.is_good and not has_defect:
        message = f"{sample.label} image has an empty mask (invisible defect?)"
        warnings.append(Issue(path, "empty_mask", message))
    elif sample.is_good and has_defect:
        warnings.append(Issue(path, "mask_on_good", "good image has a non-empty mask"))


def image_info(image: np.ndarray) -> ImageInfo:
    """Shape, type and duplicate fingerprints (phash, thumbnail) of a decoded image."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    gray = gray.astype(np.float32)
    if image.dtype == np.uint16:
        gray /= 257.0  # compare on the 8-bit grey scale whatever the bit depth
    small = cv2.resize(gray, (_HASH_SOURCE_SIZE, _HASH_SOURCE_SIZE), interpolation=cv2.INTER_AREA)
    thumb = cv2.resize(small, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    phash = imagehash.phash(Image.fromarray(np.clip(small + 0.5, 0, 255).astype(np.uint8)))
    return ImageInfo(
        height=int(image.shape[0]),
        width=int(image.shape[1]),
        dtype=str(image.dtype),
        channels=1 if image.ndim == 2 else int(image.shape[2]),
        phash=int(np.packbits(phash.hash.reshape(-1)).view(">u8")[0]),
        thumb=thumb.astype(np.float16),
    )


# ---------------------------------------------------------------------------------------
# Duplicates


def find_duplicates(
    samples: Sequence[Sample], infos: Sequence[ImageInfo | None]
) -> list[DuplicateGroup]:
    """Group the samples whose images are copies of each other.

    Parameters
    ----------
    samples : Sequence[Sample]
    infos : Sequence[ImageInfo | None]
        :func:`image_info` of each sample's image, ``None`` where it was unreadable.
        A sample listed twice (same path) counts once.

    Returns
    -------
    list[DuplicateGroup]
        Groups of two or more images, in path order.
    """
    keep: dict[Path, int] = {}
    for index, (sample, info) in enumerate(zip(samples, infos, strict=True)):
        if info is not None:
            keep.setdefault(sample.image, index)
    members = list(keep.values())
    if len(members) < 2:
        return []
    chosen = [infos[k] for k in members]
    hashes = np.array([info.phash for info in chosen], dtype=np.uint64)  # type: ignore[union-attr]
    thumbs = np.stack([info.thumb for info in chosen])  # type: ignore[union-attr]
    aspects = np.array([info.width / info.height for info in chosen])  # type: ignore[union-attr]

    i, j = similar_pairs(hashes, thumbs, aspects)

    groups: list[DuplicateGroup] = []
    for component in _connected(len(members), i, j):
        group_samples = sorted((samples[members[k]] for k in component), key=_sample_order)
        paths = tuple(s.image for s in group_samples)
        groups.append(
            DuplicateGroup(
                paths=paths,
                splits=tuple(s.split for s in group_samples),
                labels=tuple(s.label for s in group_samples),
                identical=len({_file_digest(p) for p in paths}) == 1,
            )
        )
    return sorted(groups, key=lambda g: g.paths)


def similar_pairs(
    hashes: np.ndarray, thumbs: np.ndarray, aspects: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` of images that are copies of each other.

    Parameters
    ----------
    hashes : np.ndarray
        ``(N,)`` uint64 perceptual hashes.
    thumbs : np.ndarray
        ``(N, THUMB_SIZE, THUMB_SIZE)`` grayscale thumbnails, 0-255.
    aspects : np.ndarray
        ``(N,)`` width / height of each image.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``i`` and ``j``: pairs within :data:`MAX_HASH_DISTANCE` hash bits, of the same
        shape, and whose thumbnails differ by at most :data:`MAX_THUMB_RMS`.
    """
    n = len(hashes)
    hashes = np.asarray(hashes, dtype=np.uint64)
    # Centred, so that the float32 expansion |a|² + |b|² - 2ab loses little to cancellation.
    flat = thumbs.reshape(n, -1).astype(np.float32) - 128.0
    norms = np.einsum("ij,ij->i", flat, flat)
    limit = MAX_THUMB_RMS**2 * flat.shape[1]
    log_aspect = np.log(np.asarray(aspects, dtype=np.float64))
    found_i, found_j = [], []
    for start, stop in _row_blocks(n):
        candidate = _hash_block(hashes, start, stop, MAX_HASH_DISTANCE)
        candidate &= np.abs(log_aspect[start:stop, None] - log_aspect[None, start:]) <= math.log(
            MAX_ASPECT_RATIO
        )
        rows = np.flatnonzero(candidate.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(candidate.any(axis=0))
        a, b = start + rows, start + cols
        distance = norms[a, None] + norms[None, b] - 2.0 * (flat[a] @ flat[b].T)
        bi, bj = np.nonzero(candidate[np.ix_(rows, cols)] & (distance <= limit))
        found_i.append(a[bi])
        found_j.append(b[bj])
    return _concat(found_i), _concat(found_j)


def candidate_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` whose 64-bit hashes differ in at most ``max_distance`` bits."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    found_i, found_j = [], []
    for start, stop in _row_blocks(len(hashes)):
        bi, bj = np.nonzero(_hash_block(hashes, start, stop, max_distance))
        found_i.append(bi + start)
        found_j.append(bj + start)
    return _concat(found_i), _concat(found_j)


def _row_blocks(n: int) -> Iterator[tuple[int, int]]:
    """Row ranges such that a block of rows against all later columns stays in memory."""
    rows = max(1, _PAIR_BLOCK // max(n, 1))
    for start in range(0, n, rows):
        yield start, min(start + rows, n)


def _hash_block(hashes: np.ndarray, start: int, stop: int, max_distance: int) -> np.ndarray:
    """``(stop - start, n - start)`` bool: rows' hashes near columns' (``j > i`` only).

    Column ``c`` is image ``start + c``; XOR + popcount on uint64, all pairs at once.
    """
    distance = np.bitwise_count(hashes[start:stop, None] ^ hashes[None, start:])
    return np.triu(distance <= max_distance, k=1)  # upper triangle: each pair once


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.intp) if parts else np.empty(0, np.intp)


def _connected(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """Connected components (size ≥ 2) of the graph with edges ``(i, j)``; union-find."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    components: dict[int, list[int]] = defaultdict(list)
    for node in {int(x) for x in np.concatenate([i, j])}:
        components[find(node)].append(node)
    return [sorted(c) for c in components.values() if len(c) > 1]


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:  # gone since it was decoded: then it is identical to nothing
        return f"unreadable:{path}"
    return digest.hexdigest()


def _duplicate_issue(
    group: DuplicateGroup, root: Path, errors: list[Issue], warnings: list[Issue]
) -> None:
    what = "identical files" if group.identical else "the same picture"
    listed = ", ".join(
        f"{_relative(p, root)} ({s or 'unsplit'}/{label})"
        for p, s, label in zip(group.paths, group.splits, group.labels, strict=True)
    )
    if group.cross_split:
        splits = "/".join(sorted({s for s in group.splits if s is not None}))
        errors.append(Issue(group.paths[0], "leakage", f"{what} in {splits}: {listed}"))
    elif len(set(group.labels)) > 1:
        errors.append(Issue(group.paths[0], "label_conflict", f"{what}, labels differ: {listed}"))
    else:
        warnings.append(Issue(group.paths[0], "duplicate", f"{what}: {listed}"))


# ---------------------------------------------------------------------------------------
# Summaries and printing


def _image_summary(infos: Sequence[ImageInfo]) -> dict[str, Any]:
    if not infos:
        return {"count": 0}
    heights = [i.height for i in infos]
    widths = [i.width for i in infos]
    return {
        "count": len(infos),
        "width": [min(widths), max(widths)],
        "height": [min(heights), max(heights)],
        "dtypes": dict(sorted(Counter(i.dtype for i in infos).items())),
        "channels": {str(k): v for k, v in sorted(Counter(i.channels for i in infos).items())},
    }


def _audio_summary(durations: Sequence[float]) -> dict[str, Any]:
    if not durations:
        return {"count": 0}
    return {"count": len(durations), "duration_s": [min(durations), max(durations)]}


def print_check_report(report: CheckReport, console: Console | None = None) -> None:
    """Print a check report as rich tables: counts, images, problems, verdict."""
    console = console or Console()
    layout = report.layout or "unknown layout"
    console.print(
        f"[bold]{report.root}[/bold]  {layout}, {report.n_samples} images, "
        f"checked in {report.seconds:.1f} s"
    )
    if report.counts:
        console.print(_counts_table(report.counts))
    if report.images.get("count"):
        console.print(_images_table(report))
    for title, issues, style in (
        ("Errors", report.errors, "red"),
        ("Warnings", report.warnings, "yellow"),
    ):
        if issues:
            console.print(_issues_table(title, issues, style, report.root))
    if report.ok:
        console.print(f"[green bold]OK[/]  {len(report.warnings)} warning(s)")
    else:
        kinds = ", ".join(f"{k}: {n}" for k, n in Counter(e.kind for e in report.errors).items())
        console.print(f"[red bold]{len(report.errors)} error(s)[/]  ({kinds})")


def _counts_table(counts: Mapping[str, Mapping[str, int]]) -> Table:
    splits = list(counts)
    labels = sorted({k for v in counts.values() for k in v}, key=lambda x: (x != GOOD, x))
    table = Table(title="Images per split and label")
    table.add_column("label")
    for split in splits:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right", style="bold")
    for label in labels:
        row = [counts[s].get(label, 0) for s in splits]
        table.add_row(label, *map(str, row), str(sum(row)))
    totals = [sum(counts[s].values()) for s in splits]
    table.add_row("[bold]total[/]", *map(str, totals), str(sum(totals)), end_section=True)
    return table


def _images_table(report: CheckReport) -> Table:
    images = report.images
    table = Table(title="Decoded files", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("images", str(images["count"]))
    table.add_row("width (px)", "{} – {}".format(*images["width"]))
    table.add_row("height (px)", "{} – {}".format(*images["height"]))
    table.add_row("dtypes", ", ".join(f"{k}: {v}" for k, v in images["dtypes"].items()))
    table.add_row("channels", ", ".join(f"{k}: {v}" for k, v in images["channels"].items()))
    if report.audio.get("count"):
        low, high = report.audio["duration_s"]
        table.add_row("audio clips", f"{report.audio['count']} ({low:.2f} – {high:.2f} s)")
    table.add_row(
        "duplicate groups", f"{len(report.duplicates)} ({len(report.leaks)} across splits)"
    )
    return table


def _issues_table(title: str, issues: Sequence[Issue], style: str, root: Path) -> Table:
    table = Table(title=f"{title} ({len(issues)})", title_style=style)
    table.add_column("kind", style=style, no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("message", overflow="fold")
    by_kind: dict[str, list[Issue]] = defaultdict(list)
    for issue in issues:
        by_kind[issue.kind].append(issue)
    # A few of each kind, so that one plentiful kind does not hide the rare ones.
    for kind, of_kind in by_kind.items():
        for issue in of_kind[:_MAX_PER_KIND]:
            table.add_row(kind, _relative(issue.path, root), issue.message)
        if len(of_kind) > _MAX_PER_KIND:
            more = f"{len(of_kind) - _MAX_PER_KIND} more"
            table.add_row(kind, f"… {more}", "see the JSON report for all", end_section=True)
        else:
            table.rows[-1].end_section = True
    return table


# ---------------------------------------------------------------------------------------
# Small helpers


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's decoder warnings: the checker reports those files itself."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _split_key(split: str | None) -> str:
    return split if split is not None else "unsplit"


def _sample_order(sample: Sample) -> tuple[int, str]:
    order = {"train": 0, "val": 1, "test": 2}
    return order.get(sample.split or "", 3), str(sample.image)


def _issue_order(issue: Issue) -> tuple[str, str]:
    return issue.kind, str(issue.path)


def _relative(path: Path, root: Path) -> str:
    base = root if root.is_dir() else root.parent
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _since(start: float) -> float:
    return time.perf_counter() - start
