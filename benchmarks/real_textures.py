"""Normality models on real surfaces other than magnetic tile (issue 23).

python benchmarks/real_textures.py [--out runs/bench-textures] [--methods padim,patchcore]
    [--max-minutes 5] [--sets brick,grass,gravel,moon,ihc]

The only real defect photographs here are magnetic tile's. To judge the normality models
on other materials, colours and sizes with no constant tuned to magnetic tile, this
builds one MVTec-layout set per real photograph that ships inside scikit-image (brick,
grass and gravel textures, the lunar surface: grayscale; immunohistochemistry tissue:
colour), each at its own crop size: good crops from the photograph's top half for
``train/good``, crops from its bottom half for ``test`` (no test pixel was ever seen in
training), and on half of the test crops one synthesised defect with its mask:

- ``scratch``: a thin anti-aliased line, darker or brighter than the surface;
- ``stain``: a smooth blob that darkens, lightens or (colour) tints the surface;
- ``foreign``: a patch of another of the photographs pasted in (contamination);
- ``cutpaste``: a patch of the same surface from elsewhere, rotated (a structural fault).

The defects are synthesised, so these sets say how the models generalise across
surfaces, not what they score on a plant's real defects. Each set then goes through
:mod:`normality_methods` (the product's own ``inspection train --normal-only`` fit, its
``evaluate``, the ONNX export with parity, ONNX Runtime p50), all in one process.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

DEFECTS = ("scratch", "stain", "foreign", "cutpaste")


@dataclass(frozen=True)
class Source:
    """A photograph in ``skimage.data`` and the crop size its set uses."""

    name: str
    crop: int
    colour: bool
    loader: str = ""  # the skimage.data function, when not ``name``


SOURCES = {
    s.name: s
    for s in (
        Source("brick", 160, False),
        Source("grass", 128, False),
        Source("gravel", 192, False),
        Source("moon", 224, False),
        Source("ihc", 200, True, "immunohistochemistry"),
    )
}


def photograph(source: Source) -> np.ndarray:
    """The photograph as float32 ``(H, W, 3)`` in 0..1 (grayscale repeated)."""
    from skimage import data

    img = np.asarray(getattr(data, source.loader or source.name)(), dtype=np.float32)
    img = img / 255.0 if img.max() > 1.0 else img
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def crops(img: np.ndarray, rows: slice, size: int, n: int, rng) -> list[np.ndarray]:
    """``n`` random ``size`` square crops whose rows lie in ``rows``."""
    y0, y1 = rows.start, rows.stop - size
    x1 = img.shape[1] - size
    out = []
    for _ in range(n):
        y, x = int(rng.integers(y0, y1 + 1)), int(rng.integers(0, x1 + 1))
        out.append(img[y : y + size, x : x + size].copy())
    return out


def blob_mask(size: int, rng, radius: tuple[float, float]) -> np.ndarray:
    """A soft irregular blob ``(size, size)`` in 0..1 away from the border."""
    r = rng.uniform(*radius) * size
    cy, cx = rng.uniform(r + 4, size - r - 4, size=2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.25 * np.sin(3 * angle + rng.uniform(0, 6.3)) * rng.uniform(0.3, 1)
    dist = np.hypot(yy - cy, xx - cx) / (r * wobble)
    return np.clip((1.15 - dist) / 0.3, 0, 1)


def add_scratch(crop: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    size = crop.shape[0]
    length = rng.uniform(0.3, 0.7) * size
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, size=2)
    dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
    p0 = (int(cx - dx), int(cy - dy))
    p1 = (int(cx + dx), int(cy + dy))
    line = np.zeros((size, size), np.float32)
    cv2.line(line, p0, p1, 1.0, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    sign = rng.choice([-1.0, 1.0])
    contrast = rng.uniform(0.15, 0.35)
    out = np.clip(crop + sign * contrast * line[..., None], 0, 1)
    return out, line > 0.25


def add_stain(crop: np.ndarray, rng, colour: bool) -> tuple[np.ndarray, np.ndarray]:
    soft = blob_mask(crop.shape[0], rng, (0.08, 0.2))
    if colour:
        tint = 1 + rng.uniform(0.15, 0.3) * rng.choice([-1, 1], size=3)
    else:
        tint = np.full(3, 1 + rng.uniform(0.2, 0.35) * rng.choice([-1, 1]))
    out = crop * (1 + (tint - 1) * soft[..., None])
    return np.clip(out, 0, 1), soft > 0.5


def add_patch(crop: np.ndarray, patch: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    soft = blob_mask(crop.shape[0], rng, (0.08, 0.18))[..., None]
    out = crop * (1 - soft) + patch * soft
    return out, soft[..., 0] > 0.5


def make_set(source: Source, out: Path, n_train: int, n_test: int, seed: int) -> Path:
    """Write ``out/<source>`` in MVTec layout; returns its folder."""
    rng = np.random.default_rng(seed)
    img = photograph(source)
    h = img.shape[0]
    top, bottom = slice(0, h // 2), slice(h // 2, h)
    others = [photograph(s) for s in SOURCES.values() if s != source]
    root = out / source.name
    train = crops(img, top, source.crop, n_train, rng)
    good = crops(img, bottom, source.crop, n_test, rng)
    for i, c in enumerate(train):
        _save(root / "train" / "good" / f"{i:03d}.png", c, source.colour)
    for i, c in enumerate(good):
        _save(root / "test" / "good" / f"{i:03d}.png", c, source.colour)
    per_defect = max(1, n_test // len(DEFECTS))
    for kind in DEFECTS:
        for i, c in enumerate(crops(img, bottom, source.crop, per_defect, rng)):
            if kind == "scratch":
                bad, mask = add_scratch(c, rng)
            elif kind == "stain":
                bad, mask = add_stain(c, rng, source.colour)
            elif kind == "foreign":
                other = others[int(rng.integers(len(others)))]
                if not source.colour:  # a grayscale surface stays grayscale
                    other = np.repeat(other.mean(axis=2, keepdims=True), 3, axis=2)
                (patch,) = crops(other, slice(0, len(other)), source.crop, 1, rng)
                bad, mask = add_patch(c, patch, rng)
            else:
                patch = crops(img, bottom, source.crop, 1, rng)[0]
                bad, mask = add_patch(c, np.rot90(patch, int(rng.integers(1, 4))), rng)
            _save(root / "test" / kind / f"{i:03d}.png", bad, source.colour)
            mask_path = root / "ground_truth" / kind / f"{i:03d}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
    return root


def _save(path: Path, crop: np.ndarray, colour: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.clip(crop, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(pixels if colour else pixels[..., 0]).save(path)


def main() -> None:
    import normality_methods as nm
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench-textures"))
    ap.add_argument("--sets", default=",".join(SOURCES))
    ap.add_argument("--methods", default="padim,patchcore")
    ap.add_argument("--max-minutes", type=float, default=5.0)
    ap.add_argument("--train", type=int, default=200, help="good training crops a set")
    ap.add_argument("--test", type=int, default=80, help="good test crops (as many defective)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.sets.split(","):
        source = SOURCES[name]
        data = make_set(source, args.out / "data", args.train, args.test, args.seed)
        for method in args.methods.split(","):
            out = args.out / name
            fitted = nm.fit(method, data, out, args.max_minutes, 0.0)
            row = {"set": name, "crop": source.crop, "colour": source.colour}
            row |= nm.measure(method, [fitted], data, out)
            print(json.dumps(row), flush=True)
            rows.append(row)
    for r in rows:
        r["surface"] = f"{r['set']} ({'colour' if r['colour'] else 'gray'})"
    nm.print_table(rows, {"set": "surface", "crop px": "crop"})


if __name__ == "__main__":
    main()
