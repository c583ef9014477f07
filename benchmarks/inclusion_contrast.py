"""Can an image search find the inclusions tile's line misses? Their colour and size
against the glaze's own speckle.

Held-out tile 000123, 000243 and 000271 hold two to four inclusions on the functional
face (clause T51: two or more go to review) and the line finds none of them. Each
inclusion is a spot of oil, dust or residue; the glaze is speckled with grey-brown dots.
For every part of the sets given, against the surface around it (a 15 px median of each
CIELAB channel), this measures over the part's face:

- the chroma shift ``hypot(a* - a*_surface, b* - b*_surface)`` (3 x 3 mean): residue is
  yellow-brown, oil and dust grey;
- the area of each 8-connected piece darker than the surface by 8 L* (3 x 3 mean).

and prints, for the faces away from any true defect (7 px around its mask), the most of
each a part reaches, and for every true inclusion, its own. A search could only take
what lies beyond every good face's most.

    python benchmarks/inclusion_contrast.py runs/heldout-tile runs/val-tile

Results: benchmarks/README.md, "Inclusions on a speckled glaze".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from skimage.color import rgb2lab

BACKGROUND_PX = 15  # the median window the surface is read over
DARK_LSTAR = 8.0  # how much darker than the surface a piece is taken
FACE_LSTAR = 60.0  # the part's face is brighter than this (the belt is darker)


def surface(channel: np.ndarray) -> np.ndarray:
    """The channel's 15 px median (through 8 bits: OpenCV's median takes larger windows
    only there), scaled back."""
    lo, hi = np.percentile(channel, [1, 99.9])
    scale = 250.0 / max(float(hi - lo), 1e-3)
    quantised = np.clip((channel - lo) * scale, 0, 255).astype(np.uint8)
    return cv2.medianBlur(quantised, BACKGROUND_PX).astype(np.float32) / scale + lo


def face_of(lightness: np.ndarray) -> np.ndarray:
    """The part's face: bright, its dark spots closed in, 4 px in from its edge."""
    bright = (lightness > FACE_LSTAR).astype(np.uint8)
    closed = cv2.morphologyEx(bright, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    return cv2.erode(closed, np.ones((9, 9), np.uint8)) > 0


def contrasts(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(chroma shift, darkening in L*, face)`` of a frame."""
    lab = rgb2lab(image_bgr[:, :, ::-1].astype(np.float32) / 255).astype(np.float32)
    delta = [lab[:, :, i] - surface(lab[:, :, i]) for i in range(3)]  # L*, a*, b*
    chroma = cv2.blur(np.hypot(delta[1], delta[2]), (3, 3))
    dark = -cv2.blur(delta[0], (3, 3))
    return chroma, dark, face_of(lab[:, :, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, nargs="+", help="synthetic tile sets")
    args = parser.parse_args()
    faces, inclusions = [], []  # (chroma most, dark piece most) per face; per inclusion
    for root in args.data:
        for line in (root / "manifest.jsonl").read_text().splitlines():
            part = json.loads(line)
            image = cv2.imread(str(root / part["image"]))
            chroma, dark, face = contrasts(image)
            near = np.zeros(face.shape, bool)
            if part.get("mask"):
                truth = (cv2.imread(str(root / part["mask"]), cv2.IMREAD_GRAYSCALE) > 0).astype(
                    np.uint8
                )
                near = cv2.dilate(truth, np.ones((7, 7), np.uint8)) > 0
            n, pieces, stats, _ = cv2.connectedComponentsWithStats(
                ((dark > DARK_LSTAR) & face).astype(np.uint8), connectivity=8
            )
            away = [i for i in range(1, n) if not near[pieces == i].any()]
            faces.append(
                (
                    float(np.where(face & ~near, chroma, 0).max()),
                    max((int(stats[i, cv2.CC_STAT_AREA]) for i in away), default=0),
                    part["label"] == "good",
                )
            )
            for defect in part.get("defects") or []:
                if defect["defect_class"] != "contamination":
                    continue
                x0, y0, x1, y1 = defect["bbox"]
                box = (slice(max(0, y0 - 1), y1 + 2), slice(max(0, x0 - 1), x1 + 2))
                touched = set(np.unique(pieces[box])) - {0}
                area = max((int(stats[i, cv2.CC_STAT_AREA]) for i in touched), default=0)
                inclusions.append((float(chroma[box].max()), area, defect["attributes"]))
    most = np.array(faces, dtype=np.float64)  # (parts, 3): chroma, dark piece, good
    print(f"{len(faces)} faces away from their defects, {len(inclusions)} inclusions")
    for name, column in (("chroma shift", 0), ("dark piece (px)", 1)):
        q = np.percentile(most[:, column], [50, 90, 99, 100])
        over = sum(inc[column] > q[-1] for inc in inclusions)
        values = np.array([inc[column] for inc in inclusions])
        print(
            f"  {name:16s} faces' most: median {q[0]:.1f}, 90th {q[1]:.1f}, 99th {q[2]:.1f}, "
            f"max {q[3]:.1f}; inclusions: median {np.median(values):.1f}, "
            f"{over} of {len(inclusions)} beyond every face; good parts' faces alone: max "
            f"{most[most[:, 2] > 0, column].max():.1f}, "
            f"{sum(inc[column] > most[most[:, 2] > 0, column].max() for inc in inclusions)} beyond"
        )
    beyond = [i for i in inclusions if i[0] > most[:, 0].max() or i[1] > most[:, 1].max()]  # either
    rejectable = [i for i in inclusions if i[2].get("area_mm2", 0) > 1.5]
    print(
        f"  either: {len(beyond)} of {len(inclusions)}; of the {len(rejectable)} over 1.5 mm² "
        f"(T50), {sum(i in beyond for i in rejectable)}"
    )


if __name__ == "__main__":
    main()
