"""Thin scratches along a brushed grain: a directional residual check (issue 23 research).

Held out, bracket's wrong PASSes are mostly 1 px scratches that run with the brushing
(near horizontal): the heads' map stays logits under its pixel threshold on them, so
neither the part score nor the second look has a region to measure. This benchmark asks
whether the image itself shows them once the grain is taken out: each row of the part's
surface (turned so that the grain runs along the rows) minus its running median along the
row (``--window`` px: the grain is long, a scratch is thin across it), averaged over
``--run`` px along the row (a stroke continues, speckle does not), in robust standard
deviations of that residual over the part's surface. A part's score is its largest
absolute value (scratches are dark or specular; the ``bright`` and ``dark`` rows take
its largest value of one sign only). The level is set on good parts only, at
``--target-frr`` (as the image threshold and the second look are), then applied to other
parts.

For each product: the level, the share of good (and of standard-passing) parts it flags,
and of the scratches the standard rejects: how many the heads' map does not reach at
all (no pixel over its pixel threshold on the scratch), and how many of those the check
finds (a pixel over the level on the scratch).

    python benchmarks/streak_check.py --calibrate runs/val-PRODUCT --data runs/heldout-PRODUCT

(each a folder from ``inspection synth --train-ratio 0``; several ``--product`` sets
with ``--sets product:calibrate:data``).
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from inspection.metrics import threshold_for_frr


def surface_mask(gray: np.ndarray, erode_px: int = 2) -> np.ndarray:
    """The part's surface: the largest Otsu-bright component, its holes left out."""
    _, bright = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright)
    if count < 2:
        return np.zeros(gray.shape, bool)
    part = (labels == 1 + stats[1:, cv2.CC_STAT_AREA].argmax()).astype(np.uint8)
    kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
    return cv2.erode(part, kernel) > 0


def grain_angle(gray: np.ndarray, surface: np.ndarray) -> tuple[float, float]:
    """The surface's dominant streak direction (degrees, image x axis) and its
    coherence (0: no direction, 1: pure streaks), from the gradient structure tensor."""
    g = gray.astype(np.float32)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
    jxx, jyy, jxy = ((a * b)[surface].mean() for a, b in ((gx, gx), (gy, gy), (gx, gy)))
    coherence = float(np.hypot(jxx - jyy, 2 * jxy) / max(jxx + jyy, 1e-9))
    gradient = 0.5 * np.degrees(np.arctan2(2 * jxy, jxx - jyy))
    return float(gradient + 90.0), coherence  # streaks run across the gradient


def row_residual_z(gray: np.ndarray, surface: np.ndarray, window: int, run: int) -> np.ndarray:
    """Each surface pixel minus the median of its row's surface pixels within ``window``,
    averaged over ``run`` px of the row, in robust standard deviations."""
    g = np.where(surface, gray.astype(np.float32), np.nan)
    padded = np.pad(g, ((0, 0), (window // 2, window // 2)), constant_values=np.nan)
    with warnings.catch_warnings():  # all-NaN windows off the part
        warnings.simplefilter("ignore", RuntimeWarning)
        background = np.nanmedian(sliding_window_view(padded, window, axis=1), axis=-1)
    residual = np.where(surface, g - background, 0.0).astype(np.float32)
    share = cv2.blur(surface.astype(np.float32), (run, 1))
    line = cv2.blur(residual, (run, 1)) / np.maximum(share, 1e-3)
    values = line[surface]
    if values.size == 0:
        return np.zeros_like(line)
    spread = 1.4826 * np.median(np.abs(values - np.median(values))) + 1e-6
    return np.where(surface, (line - np.median(values)) / spread, 0.0)


def streak_z(image_bgr: np.ndarray, window: int = 41, run: int = 9) -> np.ndarray:
    """The directional residual (robust z) of an image, in the image's own frame."""
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    surface = surface_mask(gray)
    if not surface.any():
        return np.zeros(gray.shape, np.float32)
    angle, _ = grain_angle(gray, surface)
    h, w = gray.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)  # grain onto the rows
    back = cv2.invertAffineTransform(turn)
    flags = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    gray_t = cv2.warpAffine(gray, turn, (w, h), **flags)
    surface_t = cv2.warpAffine(surface.astype(np.uint8), turn, (w, h), flags=cv2.INTER_NEAREST)
    z = row_residual_z(gray_t, surface_t > 0, window, run)
    z = cv2.warpAffine(z.astype(np.float32), back, (w, h), **flags)
    return np.where(surface, z, 0.0)


@dataclass
class Part:
    label: str
    scores: dict[str, float]  # each check's largest value over the part
    scratches: list[tuple[float, dict[str, float]]]  # (length_mm, each check's max on it)


def heads_map(detector, shift: float, image_rgb: np.ndarray, scale: float) -> np.ndarray:
    """The heads' anomaly logit over their pixel threshold, detected on the image
    resized by ``scale`` (tiled at the model's native size) and brought back."""
    h, w = image_rgb.shape[:2]
    if scale != 1:
        image_rgb = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    logits = detector.detect(image_rgb).maps[0, 0] - shift
    return cv2.resize(logits, (w, h), interpolation=cv2.INTER_AREA) if scale != 1 else logits


def scan(folder: Path, args, detector=None, shift: float = 0.0) -> list[Part]:
    records = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    parts = []
    for record in tqdm(records[: args.limit], desc=folder.name):
        image = cv2.imread(str(folder / record["image"]))
        z = streak_z(image, args.window, args.run)
        maps = {"streak": np.abs(z), "streak bright": z, "streak dark": -z}
        for scale in args.scales if detector is not None else ():
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            maps[f"heads x{scale:g}"] = heads_map(detector, shift, rgb, scale)
        scratches = []
        if record.get("mask"):
            mask = cv2.imread(str(folder / record["mask"]), cv2.IMREAD_GRAYSCALE) > 0
            for defect in record["defects"]:
                if defect["defect_class"] != "scratch":
                    continue
                x0, y0, x1, y1 = defect["bbox"]
                own = np.zeros_like(mask)
                own[y0 : y1 + 1, x0 : x1 + 1] = mask[y0 : y1 + 1, x0 : x1 + 1]
                near = cv2.dilate(own.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                on = {k: float(m[near].max()) if near.any() else -np.inf for k, m in maps.items()}
                scratches.append((defect["attributes"]["length_mm"], on))
        parts.append(Part(record["label"], {k: float(m.max()) for k, m in maps.items()}, scratches))
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", required=True, help="product:calibrate:data")
    parser.add_argument("--window", type=int, default=41)
    parser.add_argument("--run", type=int, default=9)
    parser.add_argument("--target-frr", type=float, default=0.01)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--model", type=Path, default=None, help="heads model to compare")
    parser.add_argument("--scales", type=lambda s: [float(x) for x in s.split(",")], default=[1.0])
    args = parser.parse_args()
    detector, shift = None, 0.0
    if args.model is not None:
        from inspection.models.fusion import threshold_logit
        from inspection.pipeline import load_detector, thresholds_of

        detector, metadata = load_detector(args.model)
        shift = threshold_logit(thresholds_of(metadata).pixel)
    print(
        "| product | check | level | good parts over it | scratches > 2 mm over it "
        "| of them unseen by the heads (x1), over it |"
    )
    print("|---|---|---|---|---|---|")
    for spec in args.sets:
        product, calibrate, data = spec.split(":")
        calibration = scan(Path(calibrate), args, detector, shift)
        parts = scan(Path(data), args, detector, shift)
        long = [on for p in parts for length, on in p.scratches if length > 2.0]
        unseen = [on for on in long if on.get("heads x1", 0.0) < 0]  # no heads pixel on it
        for check in parts[0].scores:
            goods = [p.scores[check] for p in calibration if p.label == "good"]
            level = threshold_for_frr(goods, args.target_frr)
            good = [p.scores[check] >= level for p in parts if p.label == "good"]
            found = sum(on[check] >= level for on in long)
            found_unseen = sum(on[check] >= level for on in unseen)
            print(
                f"| {product} | {check} | {level:.1f} | {sum(good)} / {len(good)} "
                f"| {found} / {len(long)} | {found_unseen} / {len(unseen)} |"
            )


if __name__ == "__main__":
    main()
