"""A production run written as an MVTec AD dataset, with audio and a manifest.

Layout under ``out``::

    train/good/000000.png                 good parts only
    test/<label>/000612.png               label = good or a defect class
    ground_truth/<class>/000612_mask.png  0/255, for every defective test image
    audio/<split>/<label>/000612.wav      tap test, PCM16 16 kHz
    manifest.jsonl                        one row per part, in index order
    dataset.yaml                          run parameters and counts

File stems are the part index, so a file, its mask, its audio and its manifest row share
one number.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from inspection.io import write_audio, write_image
from inspection.synth.part import generate_part
from inspection.synth.products import get_product
from inspection.types import DEFECT_CLASSES

GENERATOR = "inspection.synth/1.0"
_OWN_ENTRIES = frozenset(
    {"train", "test", "ground_truth", "audio", "height", "manifest.jsonl", "dataset.yaml"}
)
_CHUNK = 8


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote.

    Attributes
    ----------
    out : Path
        Dataset root.
    n : int
        Number of parts.
    counts : dict[str, dict[str, int]]
        Parts per split and label, e.g. ``{"train": {"good": 500}, "test": {...}}``.
    seconds : float
        Wall time of the run.
    parts_per_second : float
    """

    out: Path
    n: int
    counts: dict[str, dict[str, int]]
    seconds: float
    parts_per_second: float


@dataclass(frozen=True)
class _Job:
    out: str
    product: str
    seed: int
    size: int
    index: int
    split: str
    label: str
    height: bool = False


def plan(
    n: int,
    seed: int,
    train_ratio: float = 0.5,
    defect_ratio: float = 0.7,
    train_defect_ratio: float = 0.0,
    classes: Sequence[str] = DEFECT_CLASSES,
) -> list[tuple[str, str]]:
    """``(split, label)`` of every part index.

    Train parts come first: all good by default (the normal-only setting), or with
    ``train_defect_ratio`` of them defective (labelled defects to learn from). Of the
    test parts ``defect_ratio`` are defective. Classes are taken round-robin over
    ``classes`` (all of :data:`DEFECT_CLASSES` by default; one class alone for a set of
    limit samples); good and defective parts of a split are interleaved by a permutation
    seeded from ``(seed, n)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    ratios = (train_ratio, defect_ratio, train_defect_ratio)
    if not all(0.0 <= r <= 1.0 for r in ratios):
        raise ValueError("train_ratio, defect_ratio and train_defect_ratio must lie in [0, 1]")
    classes = _checked_classes(classes)
    n_train = round(n * train_ratio)
    n_test = n - n_train
    test = _labels(n_test, defect_ratio, classes)
    order = np.random.default_rng([seed, n, 0x5EED]).permutation(n_test)
    if train_defect_ratio == 0.0:
        train = [("train", "good")] * n_train
    else:
        labels = _labels(n_train, train_defect_ratio, classes)
        train_order = np.random.default_rng([seed, n, 0x7A1]).permutation(n_train)
        train = [("train", labels[i]) for i in train_order]
    return train + [("test", test[i]) for i in order]


def _labels(count: int, defect_ratio: float, classes: Sequence[str]) -> list[str]:
    n_bad = round(count * defect_ratio)
    return [classes[i % len(classes)] for i in range(n_bad)] + ["good"] * (count - n_bad)


def _checked_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """``classes`` in :data:`DEFECT_CLASSES`' order, each once; ``ValueError`` naming an
    unknown one, or an empty list."""
    valid = ", ".join(DEFECT_CLASSES)
    unknown = sorted(set(classes) - set(DEFECT_CLASSES))
    if unknown:
        raise ValueError(f"unknown defect class {', '.join(map(repr, unknown))}; valid: {valid}")
    if not classes:
        raise ValueError(f"no defect class given; valid: {valid}")
    return tuple(c for c in DEFECT_CLASSES if c in classes)


def _paths(split: str, label: str, index: int) -> tuple[str, str | None, str]:
    stem = f"{index:06d}"
    image = f"{split}/{label}/{stem}.png"
    mask = f"ground_truth/{label}/{stem}_mask.png" if label != "good" else None
    audio = f"audio/{split}/{label}/{stem}.wav"
    return image, mask, audio


def _make(job: _Job) -> dict[str, Any]:
    """Generate one part, write its files and return its manifest row."""
    part = generate_part(
        job.product, job.index, job.seed, None if job.label == "good" else job.label, job.size
    )
    root = Path(job.out)
    image_rel, mask_rel, audio_rel = _paths(job.split, job.label, job.index)
    write_image(root / image_rel, part.image)
    if mask_rel is not None:
        write_image(root / mask_rel, part.mask)
    write_audio(root / audio_rel, part.audio)
    prod = get_product(job.product)
    extra = {}
    if job.height:  # float32 TIFF in mm, as profilers export them
        height_rel = f"height/{job.split}/{job.label}/{job.index:06d}.tiff"
        (root / height_rel).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(root / height_rel), part.height_map()):
            raise OSError(f"could not write {root / height_rel}")
        extra["height"] = height_rel
    return {
        "part_id": part.part_id,
        "split": job.split,
        "label": job.label,
        "image": image_rel,
        "mask": mask_rel,
        "audio": audio_rel,
        "product": job.product,
        "surface": prod.surface,
        "mm_per_px": part.mm_per_px,
        "reference_rgb": list(part.reference_rgb),
        "image_size": [int(part.image.shape[1]), int(part.image.shape[0])],
        "seed": job.seed,
        "index": job.index,
        "audio_anomaly": part.audio_anomaly,
        "defects": [d.to_json() for d in part.defects],
        **extra,
    }


def _init_worker() -> None:
    # Parallelism is across processes; OpenCV's own threads would only contend. 0 runs
    # OpenCV sequentially; in a forked worker any other value reconfigures the thread
    # pool inherited from the parent, which hangs.
    cv2.setNumThreads(0)


def _prepare(out: Path) -> None:
    """Make ``out`` ready: empty, or a previous synth output, whose files are removed."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    meta = out / "dataset.yaml"
    try:
        previous = yaml.safe_load(meta.read_text()) if meta.is_file() else None
    except yaml.YAMLError:
        previous = None
    if not isinstance(previous, dict) or not str(previous.get("generator", "")).startswith(
        "inspection.synth/"
    ):
        raise FileExistsError(
            f"{out} is not empty and is not a synth output (no dataset.yaml from "
            f"inspection.synth); refusing to write into it. Choose an empty or new folder."
        )
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN_ENTRIES)
    if foreign:
        raise FileExistsError(
            f"{out} holds a synth output plus other files ({', '.join(foreign[:5])}); "
            f"refusing to overwrite it. Move them away or choose another folder."
        )
    for name in _OWN_ENTRIES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _metadata(
    product: str,
    seed: int,
    n: int,
    size: int,
    train_ratio: float,
    defect_ratio: float,
    train_defect_ratio: float = 0.0,
    classes: Sequence[str] = DEFECT_CLASSES,
) -> dict[str, Any]:
    prod = get_product(product)
    return {
        "generator": GENERATOR,
        "layout": "mvtec_ad",
        "product": product,
        "surface": prod.surface,
        "seed": seed,
        "n": n,
        "size": size,
        "mm_per_px": prod.mm_per_px(size),
        "reference_rgb": list(prod.reference_rgb),
        "field_of_view_mm": prod.field_of_view_mm,
        "train_ratio": train_ratio,
        "defect_ratio": defect_ratio,
        "train_defect_ratio": train_defect_ratio,
        "defect_classes": list(classes),
        "standard": f"datasets/standards/{product}.yaml",
        "audio_sample_rate": 16000,
    }


def synthesize(
    out: Path,
    n: int,
    seed: int,
    product: str,
    size: int = 256,
    workers: int = 2,
    train_ratio: float = 0.5,
    defect_ratio: float = 0.7,
    progress: bool = True,
    train_defect_ratio: float = 0.0,
    height: bool = False,
    classes: Sequence[str] = DEFECT_CLASSES,
) -> SynthSummary:
    """Run the synthetic line and write an MVTec AD dataset with audio and a manifest.

    Parameters
    ----------
    out : Path
        Dataset root; must be empty, new, or a previous synth output (which is replaced).
    n : int
        Number of parts.
    seed : int
        Run seed; the output is a function of ``(seed, n, product, size, ratios)`` only,
        not of ``workers``.
    product : str
        Product name.
    size : int
        Image side in pixels.
    workers : int
        Processes; 1 runs in this process.
    train_ratio : float
        Fraction of parts in ``train``.
    defect_ratio : float
        Fraction of the test parts that are defective.
    train_defect_ratio : float
        Fraction of the train parts that are defective (labelled defects); 0 keeps the
        normal-only MVTec setting.
    progress : bool
        Show a tqdm progress bar.
    height : bool
        Also write each part's height map, as a 3D profiler registered to the camera
        would (:meth:`~inspection.synth.part.SynthPart.height_map`):
        ``height/<split>/<label>/<index>.tiff``, float32 mm, named in the manifest's
        ``height``. The photographs are the same with or without it.
    classes : sequence of str
        The defect classes drawn, round-robin (all of them by default). One class alone
        makes a station's limit samples: dents of known depth, say, to calibrate how a
        photograph's shading reads depth (``inspection evaluate`` on them).

    Returns
    -------
    SynthSummary

    Raises
    ------
    FileExistsError
        If ``out`` holds anything other than a previous synth output.
    ValueError
        For an unknown product or bad ratios.
    """
    out = Path(out)
    get_product(product)
    labels = plan(n, seed, train_ratio, defect_ratio, train_defect_ratio, classes)
    _prepare(out)
    meta = _metadata(product, seed, n, size, train_ratio, defect_ratio, train_defect_ratio, classes)
    # Written first, so an interrupted run is still recognised (and replaced) next time.
    (out / "dataset.yaml").write_text(yaml.safe_dump({**meta, "complete": False}, sort_keys=False))
    jobs = [
        _Job(str(out), product, seed, size, i, split, label, height)
        for i, (split, label) in enumerate(labels)
    ]
    start = time.perf_counter()
    counts: Counter[tuple[str, str]] = Counter()
    bar = tqdm(total=n, disable=not progress, unit="part", desc=f"synth {product}")
    with (out / "manifest.jsonl").open("w", encoding="utf-8") as manifest:
        for row in _run(jobs, workers):
            manifest.write(json.dumps(row) + "\n")
            counts[row["split"], row["label"]] += 1
            bar.update()
    bar.close()
    seconds = time.perf_counter() - start

    table: dict[str, dict[str, int]] = {}
    for split in ("train", "test"):
        table[split] = {
            label: counts[split, label]
            for label in ("good", *DEFECT_CLASSES)
            if counts[split, label]
        }
    meta = {**meta, "counts": table, "complete": True}
    (out / "dataset.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return SynthSummary(out, n, table, seconds, n / seconds if seconds > 0 else float("inf"))


def _run(jobs: list[_Job], workers: int):
    """Manifest rows in index order, made in this process or a pool."""
    if workers <= 1 or len(jobs) <= _CHUNK:
        threads = cv2.getNumThreads()
        _init_worker()
        try:
            yield from map(_make, jobs)
        finally:
            cv2.setNumThreads(threads)
        return
    # fork: workers start at once and scripts need no ``__main__`` guard. Each worker
    # turns OpenCV's threading off before its first call (see _init_worker).
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("fork" if "fork" in methods else None)
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_make, jobs, chunksize=_CHUNK)
