"""Where magnetic tile's pixel AUROC is lost, and four ways of reshaping the map (issue 23).

Pixel AUROC pools every pixel of every test image: the positives are the defect pixels,
the negatives the pixels of good images *and* the normal pixels of defective images. This
script splits the figure by where its negatives come from, on the product's default map
(PaDiM on EfficientNet-Lite0 stage 3, three frame-shape families) and with row context
(``padim-lite0-rows``), and then measures map transforms aimed at what it finds:

- ``anatomy``: pixel AUROC against the goods' pixels only and against each class's own
  normal pixels (within-image contrast), each image's map level (median) and mean grey
  level by class, the map level against the frame shape's distance from its family's
  goods (the squash's distortion), and the normal pixels' map by their distance from the
  defect (a halo decays with it; a level that does not is the whole tile's);
- ``shift``: each map minus a share of its own level above the goods' (median or lower
  quartile): a defective tile lit as a whole is brought down to the goods' level;
- ``contrast``: each map's deviation from its own median amplified (x 1.5 to x 5);
- ``classifier``: test-time refinement, a per-image linear classifier (logistic
  regression, or the cosine to two prototypes) fitted on the image's own positions, its
  top share of the map as positives and its lower half as negatives; its probability
  spreads the map's range over the positions that look like the lit ones;
- ``sigma``: the map's smoothing (the product's: 4 px at 320).

Features: the ``shape_clusters.py`` cache (``--cache``; filled by that script with
``--config padim-lite0`` when absent). Scoring as there (top 1 % of the smoothed map;
pixel AUROC on maps at each image's size, :func:`inspection.metrics.pixel_auroc`).

    python benchmarks/pixel_anatomy.py --data ../shared/data/magnetic-tile \\
        --cache runs/s38/s3-clusters.pt

Results: benchmarks/README.md, "Where magnetic tile's pixel AUROC is lost (issue 23)".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
import shape_clusters
from global_context import cached_test_set, families, family_padim
from shape_clusters import scores_and_maps

from inspection.evaluate import read_sample
from inspection.metrics import _pixels, _roc_auc

PIXEL_SIDE = 256  # pixel_auroc's own bound on the resolution it compares at
HALO_BINS = ((0, 8), (8, 24), (24, 48), (48, 96), (96, None))  # px of the 320 px frame


def anatomy(name: str, dist: torch.Tensor, test, masks, shapes) -> None:
    """Pixel AUROC by where the negatives come from."""
    _, maps = scores_and_maps(dist, shapes, 320)
    m, a = _pixels(masks, maps, PIXEL_SIDE)
    labels = np.array([s.label for s in test])
    classes = sorted(set(labels) - {"good"})
    positives = {
        c: np.concatenate([a[i][m[i]] for i in np.nonzero(labels == c)[0]]) for c in classes
    }
    normals = {
        c: np.concatenate([a[i][~m[i]] for i in np.nonzero(labels == c)[0]]) for c in classes
    }
    goods = np.concatenate([a[i].ravel() for i in np.nonzero(labels == "good")[0]])
    every = np.concatenate(list(positives.values()))

    def auroc(pos: np.ndarray, neg: np.ndarray) -> str:
        return f"{_roc_auc(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]):.3f}"

    level = dist.flatten(1).median(1).values.numpy()
    print(
        f"{name}: pixel AUROC {auroc(every, np.concatenate([goods, *normals.values()]))}; "
        f"against the goods' pixels only {auroc(every, goods)}",
        flush=True,
    )
    for c in classes:
        rest = np.concatenate([goods, *(v for k, v in normals.items() if k != c)])
        print(
            f"  {c}: {len(positives[c]) / len(every):.1%} of the defect pixels; its defect "
            f"pixels against its own normal pixels {auroc(positives[c], normals[c])}; all "
            f"defect pixels against its normal pixels {auroc(every, normals[c])}; the figure "
            f"without its images' normal pixels {auroc(every, rest)}; map median "
            f"{level[labels == c].mean():.1f} (goods {level[labels == 'good'].mean():.1f})",
            flush=True,
        )


def halo(dist: torch.Tensor, test, masks, shapes) -> None:
    """The median map value of defective images' normal pixels by their distance from the
    nearest defect pixel (in pixels of the squashed 320 px frame): a halo of the receptive
    field decays with it; a level that does not is the whole tile's."""
    _, maps = scores_and_maps(dist, shapes, 320)
    labels = np.array([s.label for s in test])
    goods = np.concatenate([maps[i].ravel() for i in np.nonzero(labels == "good")[0]])
    print(f"  normal pixels by distance from the defect (goods' median {np.median(goods):.1f}):")
    for c in sorted(set(labels) - {"good"}):
        values: dict[tuple, list] = {b: [] for b in HALO_BINS}
        for i in np.nonzero(labels == c)[0]:
            defect = np.asarray(masks[i]) > 0
            if not defect.any():
                continue
            away = cv2.distanceTransform((~defect).astype(np.uint8), cv2.DIST_L2, 5)
            away *= 320 / np.sqrt(defect.size)
            for lo, hi in HALO_BINS:
                sel = ~defect & (away >= lo) & (away < (hi or np.inf))
                values[(lo, hi)].append(maps[i][sel])
        medians = ", ".join(
            f"{lo}-{hi or ''} px {np.median(np.concatenate(v)):.1f}"
            for (lo, hi), v in values.items()
        )
        print(f"    {c}: {medians}", flush=True)


def shape_offsets(dist: torch.Tensor, test, fit_shapes, fit_of, shapes, test_of) -> str:
    """Each class's map level against how far its frames' shapes lie from their family's
    goods (log height and width): whether the squash's distortion explains the level."""
    from scipy.stats import spearmanr

    labels = np.array([s.label for s in test])
    fit_shapes, shapes = np.asarray(fit_shapes), np.asarray(shapes)
    centres = np.stack([fit_shapes[fit_of == f].mean(0) for f in np.unique(fit_of)])
    offset = np.linalg.norm(shapes - centres[test_of], axis=1)
    level = dist.flatten(1).median(1).values.numpy()
    out = []
    for c in sorted(set(labels)):
        kept = labels == c
        rho = spearmanr(offset[kept], level[kept]).correlation
        out.append(f"{c} offset {np.median(offset[kept]):.2f}, rank correlation {rho:+.2f}")
    return ", ".join(out)


def grey_levels(test) -> str:
    labels = np.array([s.label for s in test])
    out = []
    for c in sorted(set(labels)):
        means = [
            read_sample(test[i])[0].astype(np.float32).mean() for i in np.nonzero(labels == c)[0]
        ]
        out.append(f"{c} {np.mean(means):.1f} +- {np.std(means):.1f}")
    return ", ".join(out)


def shifted(dist: torch.Tensor, good: np.ndarray, quantile: float, share: float) -> torch.Tensor:
    """Each map minus ``share`` of its level (``quantile`` of its positions) above the
    goods' mean level."""
    level = dist.flatten(1).quantile(quantile, dim=1)  # (N,)
    excess = level - level[torch.from_numpy(good)].mean()
    return dist - share * excess[:, None, None]


def contrasted(dist: torch.Tensor, gain: float) -> torch.Tensor:
    median = dist.flatten(1).median(1).values[:, None, None]
    return median + gain * (dist - median)


def classified(dist: torch.Tensor, features: torch.Tensor, top: float, kind: str) -> torch.Tensor:
    """Each image's map range spread by a classifier of its own positions: the top share
    of its map against its lower half."""
    out = torch.empty_like(dist)
    n, h, w = dist.shape
    for i in tqdm(range(n), desc=f"classifier {kind} top {top}", mininterval=10.0):
        d = dist[i].flatten()
        x = features[i].float().flatten(1).T  # (P, D)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        order = d.argsort()
        low, high = order[: len(d) // 2], order[-max(1, round(len(d) * top)) :]
        if kind == "logistic":
            X = torch.cat([x[low], x[high]]).numpy()
            y = np.r_[np.zeros(len(low)), np.ones(len(high))]
            fit = LogisticRegression(C=0.1, max_iter=200).fit(X, y)
            p = torch.from_numpy(fit.predict_proba(x.numpy())[:, 1]).float()
        else:  # the cosine to the two prototypes, softmax at temperature 0.05
            unit = F.normalize(x, dim=1)
            prototypes = F.normalize(torch.stack([unit[low].mean(0), unit[high].mean(0)]), dim=1)
            p = torch.softmax(unit @ prototypes.T / 0.05, dim=1)[:, 1]
        lo, hi = d[low].mean(), d[high].mean()
        out[i] = (lo + p * (hi - lo)).reshape(h, w)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/shape-clusters.pt"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    (ftr, str_, fte, ste), test, masks, report = cached_test_set(args.cache, args.data)
    good = np.array([s.label == "good" for s in test])

    # The product's fit: every good image, the three frame-shape families.
    means_fit, means_test = ftr.float().mean((2, 3)).numpy(), fte.float().mean((2, 3)).numpy()
    fit_of, test_of, _ = families(str_, ste, means_fit, means_test, 1)
    padim = family_padim(ftr, fit_of, fte, test_of)
    rows = family_padim(
        ftr.float().mean(3, keepdim=True), fit_of, fte.float().mean(3, keepdim=True), test_of
    ).expand_as(padim)
    maps = {"padim": padim, "padim + rows": (padim + rows) / 2}

    print(f"mean grey level by class: {grey_levels(test)}", flush=True)
    offsets = shape_offsets(padim, test, str_, fit_of, ste, test_of)
    print(f"frame shape's offset from its family's goods, and the map level: {offsets}")
    for name, dist in maps.items():
        anatomy(name, dist, test, masks, ste)
        halo(dist, test, masks, ste)
    for name, dist in maps.items():
        report(name, dist)
        for quantile, label in ((0.5, "median"), (0.25, "lower quartile")):
            for share in (0.5, 1.0):
                report(
                    f"  minus {share} x its {label} above the goods'",
                    shifted(dist, good, quantile, share),
                )
        for gain in (1.5, 2.0, 5.0):
            report(f"  contrast x {gain}", contrasted(dist, gain))
        for kind, top in (("logistic", 0.1), ("logistic", 0.2), ("prototypes", 0.1)):
            refined = classified(dist, fte, top, kind)
            report(f"  classifier {kind}, top {top:.0%}, alone", refined)
            report(
                f"  classifier {kind}, top {top:.0%}, averaged with the map", (dist + refined) / 2
            )
    kernel = shape_clusters.gaussian_kernel
    for sigma in (1.0, 8.0, 12.0):  # 4, the product's, is above
        shape_clusters.gaussian_kernel = lambda _, sigma=sigma: kernel(sigma)
        for name, dist in maps.items():
            report(f"{name}, smoothed at sigma {sigma:g}", dist)
    shape_clusters.gaussian_kernel = kernel


if __name__ == "__main__":
    main()
