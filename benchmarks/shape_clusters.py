"""PaDiM per family of frame shapes: the good images clustered by their size (k-means on
log height and log width, unscaled: a distance is a ratio of sizes), one per-position
Gaussian fitted per cluster, a test image scored by its nearest cluster's. PaDiM squashes
every frame to one square input, so a position is the same place of the part only among
frames of one shape; a set of crops of several shapes (magnetic tile's: heights 221-388 px,
widths 103-617 px) mixes places.

Features are the product's (``--config``, default ``padim-lite0-fine``: EfficientNet-Lite0
stages 2+3, 3x3 pooled, 320 px squashed, the product's default when this was measured;
``padim-lite0`` is stage 3 alone now), extracted once (``--cache``); the Gaussians
are fitted as the product fits them (ridge 0.01); ``--shrink T`` pulls each cluster's mean
and covariance towards those of all the good images, with weight T images (0: none);
``--ridge`` and ``--diagonal A`` (a share A of the way to the isotropic covariance of the
same mean variance) regularise them otherwise. Image score: mean of the top 1 % of the
map smoothed at sigma 4 (the product's); pixel AUROC: :func:`inspection.metrics.pixel_auroc`
on maps resized to each image's size. Each k's
silhouette is over the training images' shapes alone (no test image chooses anything).

    python benchmarks/shape_clusters.py --data ../shared/data/magnetic-tile --ks 1,2,3,4,5 \
        --shrink 0,50 [--holdout 0.1]

``--holdout F`` leaves a seeded share of the goods out of the fit, as ``inspection train``
keeps one back to calibrate on. ``--affinity S`` (shares, 0: none) replaces each position's
distance by the mean over the share ``S`` of its own image's positions nearest it in feature
cosine (:func:`affinity_refined`); ``--affinity-pairs S`` by the product's own refinement
instead (:func:`inspection.models.normality.affinity_mean`: over the positions it forms one
of the image's share ``S`` most alike pairs with; config ``affinity_share``).

Results: benchmarks/README.md, sections "PaDiM per family of frame shapes" and
"Feature-affinity refinement of the map".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from tqdm import tqdm

from inspection.datasets import load_dataset
from inspection.evaluate import read_sample
from inspection.io import read_image
from inspection.metrics import image_auroc, pixel_auroc
from inspection.models import create_model, get_config
from inspection.models.normality import affinity_mean, gaussian_kernel, smooth
from inspection.models.preprocess import PreprocessOptions, preprocess

RIDGE = 0.01  # the product's (inspection.train.normality.COVARIANCE_EPS): --ridge


FLIPS = {"h": (1,), "v": (0,), "hv": (0, 1)}  # --flips: axes of the frame each one mirrors


def extract(model, samples, prep: PreprocessOptions, desc: str, flip: tuple[int, ...] = ()):
    """Each image's features ``(N, D, h, w)`` (float16) and its ``(height, width)``;
    ``flip``: the frame's axes mirrored first."""
    features, shapes = [], []
    with torch.inference_mode():
        for sample in tqdm(samples, desc=desc, unit="img", mininterval=5.0):
            image = read_image(sample.image)
            if flip:
                image = np.ascontiguousarray(np.flip(image, flip))
            shapes.append(image.shape[:2])
            x = torch.from_numpy(preprocess(image, prep).images)
            features.append(model.embed(x)[0].half())
    return torch.stack(features), np.log(np.asarray(shapes, np.float64))


def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-position mean ``(P, D)`` and covariance ``(P, D, D)`` (float64) of ``(n, D, h, w)``."""
    v = x.float().flatten(2).permute(2, 0, 1).double()  # (P, n, D)
    mean = v.mean(1)
    centred = v - mean[:, None]
    return mean, centred.transpose(1, 2) @ centred / max(v.shape[1] - 1, 1), v.shape[1]


def gaussian(mean, cov, ridge: float = RIDGE, diagonal: float = 0.0):
    """Mean and precision; ``diagonal`` pulls the covariance towards its mean variance."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype)
    if diagonal > 0:
        variance = torch.diagonal(cov, dim1=1, dim2=2).mean(-1)[:, None, None]  # (P, 1, 1)
        cov = (1 - diagonal) * cov + diagonal * variance * eye
    ridge = ridge * eye
    return mean.float(), torch.cholesky_inverse(torch.linalg.cholesky(cov + ridge)).float()


def distances(x: torch.Tensor, mean, precision) -> torch.Tensor:
    """Mahalanobis distance map ``(n, h, w)`` of features ``(n, D, h, w)``."""
    n, _, h, w = x.shape
    out = []
    for chunk in x.split(32):
        d = chunk.float().flatten(2).permute(0, 2, 1) - mean  # (b, P, D)
        out.append(torch.einsum("bpd,pde,bpe->bp", d, precision, d).clamp_min(0).sqrt())
    return torch.cat(out).reshape(n, h, w)


def scores_and_maps(dist: torch.Tensor, shapes: np.ndarray, side: int):
    """Part scores (top 1 % of the smoothed map) and maps at each image's own size."""
    kernel = gaussian_kernel(4.0)
    up = F.interpolate(dist[:, None], size=(side, side), mode="bilinear", align_corners=False)
    scores, maps = [], []
    for i, one in enumerate(up):
        smoothed = smooth(one[None], kernel)[0, 0]  # (S, S)
        scores.append(float(smoothed.flatten().topk(max(1, side * side // 100)).values.mean()))
        h, w = np.exp(shapes[i]).round().astype(int)
        maps.append(cv2.resize(smoothed.numpy(), (int(w), int(h)), interpolation=cv2.INTER_LINEAR))
    return np.asarray(scores), maps


def affinity_refined(dist: torch.Tensor, features: torch.Tensor, share: float) -> torch.Tensor:
    """Each position's distance replaced by the mean over the ``share`` of its own image's
    positions whose features are nearest to its own (cosine): a texture region takes the
    score of the whole region, a defect's halo that of the normal surface it resembles."""
    n, h, w = dist.shape
    k = max(1, round(share * h * w))
    out = []
    for one, d in zip(features, dist.flatten(1), strict=True):
        f = F.normalize(one.float().flatten(1).T, dim=-1)  # (P, D)
        nearest = (f @ f.T).topk(k, dim=1).indices  # (P, k)
        out.append(d[nearest].mean(1))
    return torch.stack(out).reshape(n, h, w)


def affinity_pairs(dist: torch.Tensor, features: torch.Tensor, share: float) -> torch.Tensor:
    """The product's refinement (:func:`~inspection.models.normality.affinity_mean`), an
    chunk of images at a time."""
    return torch.cat(
        [
            affinity_mean(d, f.float(), share)
            for d, f in zip(dist.split(32), features.split(32), strict=True)
        ]
    )


def class_aurocs(test, scores: np.ndarray, classes: list[str]) -> str:
    """Each defect class's image AUROC against the good test images."""
    out = []
    for name in classes:
        kept = [
            (s.label == name, v)
            for s, v in zip(test, scores, strict=True)
            if s.label in (name, "good")
        ]
        out.append(f"{name} {image_auroc([k for k, _ in kept], [v for _, v in kept]):.3f}")
    return ", ".join(out)


def class_pixel_aurocs(test, masks: list, maps: list, classes: list[str]) -> str:
    """Each defect class's pixel AUROC over its own images and the good test images."""
    out = []
    for name in classes:
        kept = [i for i, s in enumerate(test) if s.label in (name, "good")]
        out.append(f"{name} {pixel_auroc([masks[i] for i in kept], [maps[i] for i in kept]):.3f}")
    return ", ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", default="padim-lite0-fine")
    parser.add_argument("--ks", default="1,2,3,4", help="numbers of shape clusters")
    parser.add_argument("--shrink", default="0", help="weights (images) towards all goods")
    parser.add_argument("--ridge", type=float, default=RIDGE, help="added to each variance")
    parser.add_argument("--diagonal", type=float, default=0.0, help="share towards isotropic")
    parser.add_argument("--holdout", type=float, default=0.0, help="share of goods not fitted")
    parser.add_argument("--cache", type=Path, default=Path("runs/shape-clusters.pt"))
    parser.add_argument("--flips", default="", help="mirrored goods fitted too: h,v,hv")
    parser.add_argument(
        "--affinity", default="0", help="shares of an image's positions averaged (0: none)"
    )
    parser.add_argument(
        "--affinity-pairs", default="", help="shares of an image's pairs (the product's)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = get_config(args.config)
    dataset = load_dataset(args.data)
    train = [s for s in dataset.samples if s.split == "train" and s.label == "good"]
    test = [s for s in dataset.samples if s.split == "test"]
    if args.cache.exists():
        ftr, str_, fte, ste = torch.load(args.cache, weights_only=False)
    else:
        model = create_model(config).eval()
        prep = PreprocessOptions.from_config(config)
        ftr, str_ = extract(model, train, prep, "train/good")
        fte, ste = extract(model, test, prep, "test")
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save((ftr, str_, fte, ste), args.cache)
    if args.holdout > 0:  # as `inspection train` keeps a seeded share back to calibrate on
        order = np.random.default_rng(0).permutation(len(train))
        fitted = torch.from_numpy(np.sort(order[round(args.holdout * len(train)) :]))
        ftr, str_ = ftr[fitted], str_[fitted.numpy()]
    for name in filter(None, args.flips.split(",")):  # the fitted goods mirrored, cached apart
        cache = args.cache.with_name(f"{args.cache.stem}-flip-{name}{args.cache.suffix}")
        if not cache.exists():
            model = create_model(config).eval()
            prep = PreprocessOptions.from_config(config)
            every = [s for s in dataset.samples if s.split == "train" and s.label == "good"]
            torch.save(extract(model, every, prep, f"train/good {name}", FLIPS[name]), cache)
        mirrored, _ = torch.load(cache, weights_only=False)
        if args.holdout > 0:
            mirrored = mirrored[fitted]
        ftr, str_ = torch.cat([ftr, mirrored]), np.concatenate([str_, str_[: len(mirrored)]])
    labels = [s.label != "good" for s in test]
    masks = [read_sample(s)[2] for s in test]
    classes = sorted({s.label for s in test} - {"good"})
    pooled = moments(ftr)
    print(
        f"{len(ftr)} good training images fitted, {len(test)} test images; h x w from "
        f"{np.exp(str_).min(0).astype(int)} to {np.exp(str_).max(0).astype(int)}"
    )
    for k in (int(v) for v in args.ks.split(",")):
        z_train, z_test = str_, ste  # log pixels on both axes: a distance is a size ratio
        if k == 1:
            train_of, test_of, silhouette = np.zeros(len(ftr), int), np.zeros(len(test), int), None
        else:
            km = KMeans(k, n_init=10, random_state=0).fit(z_train)
            train_of, test_of = km.labels_, km.predict(z_test)
            silhouette = silhouette_score(z_train, train_of)
        for shrink in (float(v) for v in args.shrink.split(",")):
            dist = torch.zeros(len(test), *fte.shape[-2:])
            for c in range(k):
                mean, cov, n = moments(ftr[torch.from_numpy(train_of == c)])
                if shrink > 0:  # towards every good image's statistics, weight `shrink` images
                    mean = (n * mean + shrink * pooled[0]) / (n + shrink)
                    cov = (n * cov + shrink * pooled[1]) / (n + shrink)
                idx = torch.from_numpy(np.nonzero(test_of == c)[0])
                if len(idx):
                    dist[idx] = distances(fte[idx], *gaussian(mean, cov, args.ridge, args.diagonal))
            sizes = "/".join(str(int((train_of == c).sum())) for c in range(k))
            sil = "-" if silhouette is None else f"{silhouette:.2f}"
            variants = [
                (f"affinity {v}", float(v), affinity_refined) for v in args.affinity.split(",")
            ]
            pairs = filter(None, args.affinity_pairs.split(","))
            variants += [(f"affinity pairs {v}", float(v), affinity_pairs) for v in pairs]
            for name, share, refine in variants:
                refined = refine(dist, fte, share) if share > 0 else dist
                scores, maps = scores_and_maps(refined, ste, config.image_size)
                print(
                    f"k {k} (train {sizes}, silhouette {sil}) shrink {shrink:g} {name}"
                    f": image AUROC {image_auroc(labels, scores):.4f}, pixel AUROC "
                    f"{pixel_auroc(masks, maps):.4f} ({class_aurocs(test, scores, classes)}; "
                    f"pixel against goods: {class_pixel_aurocs(test, masks, maps, classes)})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
