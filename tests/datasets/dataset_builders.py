"""Small on-disk datasets for the loader and checker tests, built with cv2/numpy/soundfile.

Every image is an independent random texture, so no two are near-duplicates unless a test
makes them so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile as sf

SIZE = 64
SHARED_DATA_ENV = "INSPECTION_SHARED_DATA"


def texture(rng: np.random.Generator, size: int = SIZE, sigma: float = 2.0) -> np.ndarray:
    """Smoothed noise scaled to 0-255 uint8: a surface-like grey texture."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigma)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (40 + 180 * noise).astype(np.uint8)


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path
    return path


def blob_mask(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    x, y = (int(v) for v in rng.integers(10, size - 10, 2))
    cv2.circle(mask, (x, y), 5, 255, -1)
    return mask


def make_mvtec(root: Path, seed: int = 0) -> Path:
    """train/good ×4, test/good ×2, test/crack ×2 (``_mask`` masks), test/scratch ×1.

    The scratch image is a JPEG whose mask is named after the plain stem (no ``_mask``).
    """
    rng = np.random.default_rng(seed)
    for i in range(4):
        write(root / "train/good" / f"{i:03d}.png", texture(rng))
    for i in range(2):
        write(root / "test/good" / f"{i:03d}.png", texture(rng))
    for i in range(2):
        write(root / "test/crack" / f"{i:03d}.png", texture(rng))
        write(root / "ground_truth/crack" / f"{i:03d}_mask.png", blob_mask(rng))
    write(root / "test/scratch/000.jpg", texture(rng))
    write(root / "ground_truth/scratch/000.png", blob_mask(rng))
    return root


def make_folder(root: Path, seed: int = 1) -> Path:
    """good ×3, OK ×1 (also good), dent ×2 (masks in dent/masks/), scratch ×1 (masks/)."""
    rng = np.random.default_rng(seed)
    for i in range(3):
        write(root / "good" / f"g{i}.png", texture(rng))
    write(root / "OK" / "ok0.bmp", texture(rng))
    for i in range(2):
        write(root / "dent" / f"d{i}.png", texture(rng))
        write(root / "dent/masks" / f"d{i}_mask.png", blob_mask(rng))
    write(root / "scratch" / "s0.png", texture(rng))
    write(root / "masks/scratch" / "s0.png", blob_mask(rng))
    return root


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, subtype=subtype)
    return path


def synth_entry(index: int, split: str, label: str, **extra: Any) -> dict[str, Any]:
    """A manifest line shaped like the synthetic line generator's."""
    entry: dict[str, Any] = {
        "part_id": f"P{index:04d}",
        "split": split,
        "label": label,
        "image": f"images/P{index:04d}.png",
        "mask": f"masks/P{index:04d}.png" if label != "good" else None,
        "audio": f"audio/P{index:04d}.wav",
        "product": "tile",
        "surface": "glazed",
        "mm_per_px": 0.1,
        "reference_rgb": [200, 180, 160],
        "image_size": [SIZE, SIZE],
        "seed": 7,
        "index": index,
        "audio_anomaly": False,
        "defects": [{"class": label, "length_mm": 2.5}] if label != "good" else [],
    }
    entry.update(extra)
    return entry


def make_manifest(root: Path, seed: int = 2) -> Path:
    """manifest.jsonl: 3 train/good, 1 test/good, 2 test/crack, with masks and WAVs."""
    rng = np.random.default_rng(seed)
    plan = [("train", "good")] * 3 + [("test", "good")] + [("test", "crack")] * 2
    entries = []
    for index, (split, label) in enumerate(plan):
        entry = synth_entry(index, split, label)
        colour = np.dstack([texture(rng), texture(rng), texture(rng)])
        write(root / entry["image"], colour)
        if entry["mask"]:
            write(root / entry["mask"], blob_mask(rng))
        tap = 0.3 * np.sin(np.linspace(0, 400 * np.pi, 8000)) * np.exp(-np.linspace(0, 5, 8000))
        write_wav(root / entry["audio"], tap)
        entries.append(entry)
    write_manifest(root / "manifest.jsonl", entries)
    return root / "manifest.jsonl"


def write_manifest(path: Path, entries: list[dict[str, Any] | str]) -> Path:
    """One line per entry; a ``str`` entry is written verbatim (for malformed lines)."""
    lines = [e if isinstance(e, str) else json.dumps(e) for e in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def magnetic_tile_dir() -> Path:
    """Where the shared magnetic-tile data set lives (it is never copied into the repo).

    ``$INSPECTION_SHARED_DATA`` may name the shared data folder or the data set itself;
    by default it is ``shared/data/`` beside the repository.
    """
    shared = os.environ.get(SHARED_DATA_ENV)
    if not shared:
        return Path(__file__).resolve().parents[3] / "shared/data/magnetic-tile"
    base = Path(shared)
    return base if base.name == "magnetic-tile" else base / "magnetic-tile"
