"""Gaussian AD (Rippel et al., 2020) as an image score on magnetic tile, alone and fused
with PaDiM's, on ImageNet EfficientNet-Lite0 from the `pretrained` extra's wheel.

Gaussian AD pools each of the network's nine levels (stem, seven block groups, head) over
the whole image and fits one multivariate Gaussian per level (Ledoit-Wolf shrinkage) on
good images; the image score is the sum of the levels' Mahalanobis distances. PaDiM's
image score (max of its full-resolution map, stages 2+3) comes from the same forward pass.
The two are fused by standardising each (log score) on a seeded 10 % of ``train/good``
held out of both fits, then adding them; PaDiM fitted on the same 90 % is the baseline.

    python benchmarks/gaussian_ad.py --cache /tmp/gauss-cache.pt

Results: benchmarks/README.md, section "Gaussian AD: an image-level Gaussian beside PaDiM".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
import pretrained_normality as pn

# (name, levels): 0 = stem, 1-7 = block groups, 8 = head (1280 channels)
LEVEL_SETS = [("all 9", range(9)), ("5-8", range(5, 9)), ("3-6", range(3, 7))]


@torch.no_grad()
def levels(model: torch.nn.Module, batch: torch.Tensor) -> list[torch.Tensor]:
    """(1, 1, H, W) gray in [0, 1] -> the nine levels' maps."""
    x = (batch.expand(-1, 3, -1, -1) - 0.5) / 0.5
    x = model.bn1(model.conv_stem(x))
    out = [x]
    for block in model.blocks:
        x = block(x)
        out.append(x)
    out.append(model.bn2(model.conv_head(x)))
    return out


def extract(model, paths: list[Path], v: pn.Variant, desc: str) -> dict:
    """PaDiM maps (stages 2+3, pooled as the research script) and pooled level vectors."""
    padim, mean, peak = [], [], []
    for p in tqdm(paths, desc=desc):
        maps = levels(model, pn.prepare(pn.read_gray(p), v, None))
        s2, s3 = maps[3], maps[5]  # stride 8 and 16: timm's stages 2 and 3
        padim.append(torch.cat([pn.resize(pn.pooled(m, 3), s2.shape[-2:]) for m in (s2, s3)], 1)[0])
        mean.append([m.mean((2, 3))[0] for m in maps])
        peak.append([m.amax((2, 3))[0] for m in maps])
    return {"padim": padim, "mean": mean, "max": peak}


def gaussian_scores(train: list, fit_idx, scored: list[list]) -> list[np.ndarray]:
    """Sum over levels of each scored image's Mahalanobis distance to the fitted levels."""
    totals = [np.zeros(len(s)) for s in scored]
    for level in range(len(train[0])):
        lw = LedoitWolf().fit(torch.stack([train[i][level] for i in fit_idx]).double().numpy())
        for total, s in zip(totals, scored, strict=True):
            total += lw.mahalanobis(torch.stack([f[level] for f in s]).double().numpy())
    return totals


def padim_scores(train: list, fit_idx, scored: list[tuple[list, list]]) -> list[np.ndarray]:
    """PaDiM image scores (max of the smoothed full-resolution map) of each scored set."""
    model = pn.Padim(0)
    model.fit([train[i] for i in fit_idx])
    return [
        np.array(
            [
                pn.image_score(pn.full_map(model.score(f).float(), shape), "max")
                for f, shape in zip(feats, shapes, strict=True)
            ]
        )
        for feats, shapes in scored
    ]


def standardised(test: np.ndarray, held: np.ndarray) -> np.ndarray:
    return (np.log(test) - np.log(held).mean()) / np.log(held).std()


def report(name: str, scores: np.ndarray, classes: np.ndarray) -> None:
    per_class = []
    for c in sorted(set(classes) - {"good"}):
        sel = (classes == "good") | (classes == c)
        per_class.append(f"{c} {roc_auc_score(classes[sel] == c, scores[sel]):.3f}")
    auroc = roc_auc_score(classes != "good", scores)
    print(f"| {name} | {auroc:.3f} | {', '.join(per_class)} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/magnetic-tile"))
    ap.add_argument("--backbone", choices=["lite0", "lite1", "lite2"], default="lite0")
    ap.add_argument("--side", type=int, default=320)
    ap.add_argument("--cache", type=Path, default=None, help="features file (.pt)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    v = pn.Variant(method="padim", side=args.side, backbone=args.backbone)
    train, test = pn.load_split(args.data, None)
    test_paths = [p for p, _, _ in test]
    if args.cache and args.cache.exists():
        feats = torch.load(args.cache, weights_only=False)
    else:
        model = pn.pretrained_network(args.backbone)
        feats = {
            "train": extract(model, train, v, "train"),
            "test": extract(model, test_paths, v, "test"),
        }
        if args.cache:
            torch.save(feats, args.cache)
    tr, te = feats["train"], feats["test"]
    classes = np.array([c for _, c, _ in test])
    fit_idx, hold_idx = pn.holdout_split(len(train), 0.1)
    every = list(range(len(train)))
    shapes_te = [Image.open(p).size[::-1] for p in test_paths]
    shapes_ho = [Image.open(train[i]).size[::-1] for i in hold_idx]
    t0 = time.perf_counter()
    print("| image score | image AUROC | per class |\n|---|---|---|")
    (padim_all,) = padim_scores(tr["padim"], every, [(te["padim"], shapes_te)])
    report("PaDiM, fitted on all 666", padim_all, classes)
    padim_te, padim_ho = padim_scores(
        tr["padim"],
        fit_idx,
        [(te["padim"], shapes_te), ([tr["padim"][i] for i in hold_idx], shapes_ho)],
    )
    report("PaDiM, fitted on 599 (the fused rows' baseline)", padim_te, classes)
    for pooling in ("mean", "max"):
        for name, lv in LEVEL_SETS:
            sub = [[f[i] for i in lv] for f in tr[pooling]]
            sub_te = [[f[i] for i in lv] for f in te[pooling]]
            (alone,) = gaussian_scores(sub, every, [sub_te])
            report(f"Gaussian AD, {pooling} pooled, levels {name}", alone, classes)
            g_te, g_ho = gaussian_scores(sub, fit_idx, [sub_te, [sub[i] for i in hold_idx]])
            fused = standardised(padim_te, padim_ho) + standardised(g_te, g_ho)
            report(f"PaDiM + Gaussian AD ({pooling}, {name}), fitted on 599", fused, classes)
    print(f"scoring seconds: {time.perf_counter() - t0:.0f}")


if __name__ == "__main__":
    main()
