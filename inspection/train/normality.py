"""Fit a feature normality model (PaDiM or PatchCore) on good images: ``inspection train
--method padim|patchcore``.

No gradient step: the pretrained backbone's features of every good image are extracted
once (a progress bar, within ``--max-minutes``), their statistics fitted, the map's
logit scale set on held-out good images, and the thresholds calibrated as for trained
heads (:func:`inspection.train.trainer.calibrate`). Minutes on a CPU.

The fit also learns whether the good frames show one part on a background, the part's
silhouette (:mod:`inspection.silhouette`), and records the rule in the model: fused, the
normality model's regions on the belt beside the part are then not the part's. So too
whether the parts' faces have a grain the line searches for scratches along
(:func:`inspection.grain.learn_grain`), and how far off the surface around it a box of a
good face reads, past which the line takes a colour patch the map missed
(:func:`inspection.patches.learn_patches`).

PaDiM fits on the held-out images too and scores them leave-one-out
(:func:`inspection.models.normality.leave_one_out`, closed form): its Gaussians, one per
position and family of frame shapes, are short of images (magnetic tile: 175-256 a
family), and fitting the 10 % it used to hold back raised image AUROC 0.969 -> 0.979 on
stages 2+3 (benchmarks/README.md). Its image threshold is then set on every good
image whose features the fit kept (up to :data:`KEPT_FEATURES_BYTES`), scored the same
way from them: split conformal cannot promise a 1 % false-reject rate below the largest
of fewer than 199 good scores. PatchCore keeps the held-out images out: a bank that holds
an image's patches scores it near zero.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from inspection.datasets import load_dataset
from inspection.errors import ModelError
from inspection.grain import GRAIN_KEY, GrainTally
from inspection.io import InputError, read_header, read_image
from inspection.metrics import threshold_for_frr
from inspection.models import create_model, get_config, save_model
from inspection.models.backbones import get_backbone
from inspection.models.config import ModelConfig
from inspection.models.normality import ANOMALY_CLASS, NormalityModel
from inspection.models.preprocess import MAX_SIDE, PreprocessOptions, frame_size, preprocess
from inspection.patches import PATCH_KEY, PatchTally
from inspection.silhouette import SILHOUETTE_KEY, learn_silhouette
from inspection.train.data import Item, load_items, training_samples
from inspection.train.trainer import (
    TrainError,
    TrainOptions,
    TrainResult,
    _jsonable,
    calibrate,
    plan_calibration,
    seconds_per_detection,
    split_holdout,
)

DEFAULT_BACKBONE = "efficientnet-lite0"
COVARIANCE_EPS = 0.01  # PaDiM's ridge on each position's covariance (the paper's value)
PATCH_POOL = 200_000  # PatchCore: patches sampled from the good images before the coreset
PROJECTION_DIMS = 32  # PatchCore: the coreset is chosen on a random projection; the paper's
# 128 dims ran at 10 steps/s over 200,000 patches on the loaded CPU (16 min for a 10k bank);
# benchmarks/pretrained_normality.py measured PatchCore with 32
CORESET_SHARE_SPLIT = 0.5  # PatchCore: share of the fit's time for extraction, the rest coreset
SHIFT_QUANTILE = 0.999  # a pixel's logit is 0 at this quantile of held-out good distances
EXTRACT_SHARE = 0.8  # of a --max-minutes budget, at most this for feature extraction
CONTEXT_FIT_IMAGES = 64  # good images whose context maps fit the principal directions
TILE_BATCH = 8
PADIM_CHUNK = 64
MAX_SHAPE_FAMILIES = 4  # PaDiM: families of frame shapes tried (benchmarks/README.md)
KEPT_FEATURES_BYTES = 1 << 30  # PaDiM: features kept to set the image threshold on
STATION_FRAMES = 200  # good frames the part's silhouette and grain are learned on


def normality_config(options: TrainOptions) -> ModelConfig:
    """The model a normality run fits: ``--config`` (a normality config) if given, else
    the ``--method`` default on ``--backbone`` (EfficientNet-Lite0 when not given)."""
    if options.config is not None:
        config = _asked_config(options.config)
        if not config.is_normality:
            raise TrainError(
                f"--method {options.method} fits a normality model; --config {options.config} "
                f"is a {config.method!r} model (leave --config out, or use --method heads)"
            )
        if config.method != options.method:
            config = config.replace(method=options.method)
    else:
        config = _asked_config(f"{options.method}-lite0")
    if options.backbone is not None:
        try:
            spec = get_backbone(options.backbone)
        except ModelError as exc:
            raise TrainError(str(exc)) from exc
        config = config.replace(backbone=spec.name, image_mean=spec.mean, image_std=spec.std)
    return config.replace(classes=(ANOMALY_CLASS,))


def _asked_config(name: str) -> ModelConfig:
    try:
        return get_config(name)
    except FileNotFoundError as exc:
        raise TrainError(f"--config {name}: no such file") from exc
    except (KeyError, ValueError) as exc:
        raise TrainError(str(exc.args[0])) from exc


def fit_normality(
    options: TrainOptions,
    begun: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Fit, calibrate and save a normality model to ``options.out`` (see the module)."""
    begun = clock() if begun is None else begun
    if options.resume or options.init is not None:
        raise TrainError(f"--method {options.method} fits in one pass: no --resume or --init")
    torch.manual_seed(options.seed)
    # One core left to the rest of the machine: on a 2-core box with the other core busy,
    # two torch threads extracted features 15x slower than one (benchmarks/README.md).
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    config = normality_config(options)
    try:
        model = create_model(config, device=options.device)
    except ModelError as exc:
        raise TrainError(str(exc)) from exc
    prep = PreprocessOptions.from_config(config, max_side=options.max_side)
    if options.max_side is not None:
        model.metadata[MAX_SIDE] = options.max_side

    dataset = load_dataset(options.data)
    good_samples, _ = training_samples(dataset, normal_only=True)
    if not good_samples:
        raise TrainError(f"{options.data}: no good images to fit on (none in its train split)")
    fit_samples, held_samples = split_holdout(good_samples, options)
    keep = 0
    if config.method == "padim":  # the held-out images first: fitted whatever the deadline
        keep = len(held_samples)
        held_ids = {id(s) for s in held_samples}  # tiny sets hold out what they fit on
        fit_samples = held_samples + [s for s in fit_samples if id(s) not in held_ids]
    held = load_items(held_samples, prep, "loading held-out images")
    if not held:
        raise TrainError(f"{options.data}: too few readable good images to fit and calibrate")

    started = clock()
    budget = None if options.max_minutes is None else options.max_minutes * 60
    deadline = None
    if budget is not None:
        left = budget - (started - begun)
        n_calibrate, reserve = plan_calibration(
            len(held), seconds_per_detection(model, held[0], clock), left
        )
        held = held[:n_calibrate]
        deadline = started + min(EXTRACT_SHARE * left, left - reserve)
    model.eval()  # timing a detection leaves a model in train mode (batch norm!)
    context_kept = None
    if config.context_dims:
        context_kept = fit_context(model, fit_samples[:CONTEXT_FIT_IMAGES], prep)
    fitted = _fit_statistics(model, fit_samples, prep, options, deadline, clock, keep)
    counts = fitted.counts
    model.round_statistics()  # before calibrating: the thresholds are the saved model's
    model.eval()
    as_new = nullcontext if counts is None else (lambda: scoring_fitted(model, counts))
    with as_new():
        _set_logit_scale(model, held, prep)
    thresholds, auroc = calibrate(model, held, options, as_new)
    until = None if budget is None else begun + budget
    # Whether the station shows its parts on a background, and what their silhouettes
    # cover; whether their faces' grain is searched for lines, and how far off a good
    # face's boxes read (the colour patches' search): one reading of the frames
    tally, patches = GrainTally(), PatchTally()
    frames = tally.passing(_station_frames(held, good_samples, options, until, clock))
    if options.colour_patches:
        frames = patches.passing(frames)
    silhouette = learn_silhouette(frames) if options.silhouette else None
    deque(frames, maxlen=0)  # the rest, where the silhouette was not learned
    if silhouette is not None:
        model.metadata[SILHOUETTE_KEY] = silhouette.to_dict()
    grain = tally.rule()
    if grain is not None:
        model.metadata[GRAIN_KEY] = grain.to_dict()
    patch_rule = patches.rule() if options.colour_patches else None
    if patch_rule is not None:
        model.metadata[PATCH_KEY] = patch_rule.to_dict()
    if len(fitted.kept) > thresholds["held_out_good"]:
        # Every good image the fit kept the features of, scored leave-one-out: a 1 %
        # target needs 99 goods before any order statistic but the largest can promise it.
        with as_new():
            scores = _image_scores(model, fitted.kept, prep.image_size)
        thresholds["image"] = threshold_for_frr(scores, options.target_frr)
        thresholds["image_good"] = len(scores)
    model.metadata.update(
        {
            "thresholds": thresholds,
            "holdout_auroc": auroc,
            "train": _jsonable(asdict(options)),
            "fit": {
                "method": config.method,
                "images": fitted.images,
                "of": len(fit_samples),
                "calibrated_on": "leave-one-out" if counts is not None else "held-out",
                "context_variance_kept": context_kept,
            },
            "backbone": get_backbone(config.backbone).provenance,
            "products": dataset.products,
        }
    )
    options.out.mkdir(parents=True, exist_ok=True)
    save_model(model, options.out, extra=model.metadata)
    seconds = clock() - started
    return TrainResult(
        out=options.out,
        steps=0,
        seconds=seconds,
        images_per_second=fitted.images / max(seconds, 1e-9),
        final_loss=float("nan"),
        thresholds=thresholds,
        holdout_auroc=auroc,
        stopped_by_deadline=fitted.stopped,
        started_from=None,
        silhouette=None if silhouette is None else silhouette.to_dict(),
        grain=None if grain is None else grain.to_dict(),
        colour_patches=None if patch_rule is None else patch_rule.to_dict(),
    )


def _fit_statistics(
    model: NormalityModel,
    samples,
    prep: PreprocessOptions,
    options: TrainOptions,
    deadline: float | None,
    clock: Callable[[], float],
    keep: int = 0,
) -> Fitted:
    """Extract the good images' features (until ``deadline``, past the first ``keep``)
    and fit the statistics; PaDiM keeps the features of up to
    :data:`KEPT_FEATURES_BYTES` of the images, to calibrate on.

    PatchCore's coreset takes time of its own: its extraction stops halfway to the
    deadline, and the coreset stops growing at the deadline (a smaller bank)."""
    families, shapes = np.zeros(len(samples), int), None
    if model.config.method == "padim":
        shapes = [frame_size(_frame_shape(s), prep) for s in samples]
        centroids, families = shape_families(shapes, model.mean.shape[-1])
        _use_families(model, centroids)
        fitters: list[PadimFit] | list[PatchCoreFit] = [
            PadimFit(model, c) for c in range(len(centroids))
        ]
    else:
        fitters = [PatchCoreFit(model, options.seed, len(samples))]
    extract_until = deadline
    if deadline is not None and isinstance(fitters[0], PatchCoreFit):
        now = clock()
        extract_until = now + CORESET_SHARE_SPLIT * max(deadline - now, 0.0)
    used, stopped, kept = 0, False, []
    bar = tqdm(samples, desc="good-image features", unit="img", disable=not options.progress)
    for i, (sample, family) in enumerate(zip(bar, families, strict=True)):
        if extract_until is not None and clock() >= extract_until and used >= 2 and i >= keep:
            stopped = True
            break
        items = load_items([sample], prep, "")
        if not items:
            continue
        features = _tile_features(model, items[0], prep)
        fitters[family].add(features)
        # A squashed frame is one input; tiled frames keep the held-out calibration.
        squashed = shapes is not None and len(features) == 1
        if squashed and (len(kept) + 1) * features.nbytes <= KEPT_FEATURES_BYTES:
            kept.append((features, shapes[i]))
        used += 1
    bar.close()
    if used < 2:
        raise TrainError(f"{options.data}: fewer than 2 readable good images to fit on")
    short = [c for c, f in enumerate(fitters) if isinstance(f, PadimFit) and f.images < 2]
    if short:
        raise TrainError(
            f"{options.data}: the time ran out before frame-shape family {short[0]} had 2 "
            "good images; give --max-minutes more"
        )
    cut = [f.finish(deadline, clock) for f in fitters]
    counts = None
    if isinstance(fitters[0], PadimFit):
        counts = torch.tensor([f.n for f in fitters], dtype=torch.float32)
    return Fitted(used, any(cut) or stopped, counts, kept)


class Fitted(NamedTuple):
    """What :func:`_fit_statistics` did."""

    images: int  # good images fitted
    stopped: bool  # the deadline cut extraction or the coreset short
    counts: torch.Tensor | None  # PaDiM: images in each family
    kept: list[tuple[torch.Tensor, tuple[int, int]]]  # PaDiM: (features, frame size) kept


@torch.inference_mode()
def _image_scores(model: NormalityModel, kept, size: int) -> list[float]:
    """Image scores, as the detector gives them, of images from their kept features."""
    scores = []
    for i in range(0, len(kept), TILE_BATCH):
        features = torch.cat([f for f, _ in kept[i : i + TILE_BATCH]])  # (B, D, gh, gw)
        frames = torch.tensor([s for _, s in kept[i : i + TILE_BATCH]], dtype=torch.float32)
        logit = model.detect_features(features.to(model.shift.device), size, frames).image_logit
        scores += torch.sigmoid(logit).cpu().tolist()
    return scores


@contextmanager
def scoring_fitted(model: NormalityModel, counts: torch.Tensor) -> Iterator[None]:
    """Within it, ``model`` scores images it fitted on leave-one-out: as the model
    fitted on the ``counts`` images of each family less that one would."""
    model.fitted_counts = counts
    try:
        yield
    finally:
        model.fitted_counts = None


def _frame_shape(sample) -> tuple[int, int]:
    """A good image's ``(H, W)`` as read, from its header when Pillow can parse it."""
    header = read_header(sample.image)
    if header is not None:
        return header.height, header.width
    return read_image(sample.image).shape[:2]


def _use_families(model: NormalityModel, centroids: np.ndarray) -> None:
    """Give ``model`` one set of PaDiM statistics per family of frame shapes."""
    C = len(centroids)
    _, P, D = model.mean.shape
    device = model.mean.device
    if C > 1:
        model.config = model.config.replace(shape_clusters=C)
        model.mean = torch.zeros(C, P, D, device=device)
        model.precision = torch.zeros(C, P, D, D, device=device)
        if model.config.row_context:
            h = model.grid[0]
            model.row_mean = torch.zeros(C, h, D, device=device)
            model.row_precision = torch.zeros(C, h, D, D, device=device)
    model.shape_centroids = torch.as_tensor(centroids, dtype=torch.float32, device=device)


@torch.inference_mode()
def fit_context(model: NormalityModel, samples, prep: PreprocessOptions) -> float:
    """Set the model's context reduction: the mean and the ``context_dims`` leading
    principal directions of the last stage's pooled features, over every position of
    ``samples`` (good images). Returns the share of the variance the directions keep.

    Raises
    ------
    TrainError
        When no sample is readable.
    """
    device = model.shift.device
    vectors = []
    for item in load_items(samples, prep, "context directions"):
        tiles = torch.from_numpy(preprocess(item.image, prep).images)  # (T, 3, S, S)
        for i in range(0, len(tiles), TILE_BATCH):
            last = model.pooled_levels(tiles[i : i + TILE_BATCH].to(device))[-1]
            vectors.append(last.permute(0, 2, 3, 1).reshape(-1, last.shape[1]).cpu())
    if not vectors:
        raise TrainError("no readable good image to fit the context directions on")
    x = torch.cat(vectors).double()  # (N, C)
    mean = x.mean(0)
    centred = x - mean
    values, directions = torch.linalg.eigh(centred.T @ centred / max(len(x) - 1, 1))
    k = model.config.context_dims
    model.context_mean.copy_(mean.float().to(device))
    model.context_basis.copy_(directions[:, -k:].flip(1).float().to(device))  # largest first
    return float(values[-k:].sum() / values.sum().clamp_min(1e-12))


@torch.inference_mode()
def _tile_features(model: NormalityModel, item: Item, prep: PreprocessOptions) -> torch.Tensor:
    tiles = torch.from_numpy(preprocess(item.image, prep).images)  # (T, 3, S, S)
    device = model.shift.device
    batches = (tiles[i : i + TILE_BATCH] for i in range(0, len(tiles), TILE_BATCH))
    return torch.cat([model.embed(b.to(device)) for b in batches]).cpu()  # (T, D, gh, gw)


def shape_families(shapes: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Families of frame shapes among the good images, and each image's family.

    k-means on ``(log height, log width)`` (unscaled: a distance is a ratio of sizes), for
    the most families, up to :data:`MAX_SHAPE_FAMILIES`, whose smallest still holds more
    images than the features have ``channels`` (a full-rank covariance at every position).
    One family where the frames share one size, or too few images to split.

    Returns
    -------
    centroids : np.ndarray
        ``(C, 2)`` each family's centre, log pixels.
    families : np.ndarray
        ``(N,)`` each image's family.
    """
    logs = np.log(np.asarray(shapes, np.float64))  # (N, 2)
    best = logs.mean(0, keepdims=True), np.zeros(len(logs), int)
    distinct = len(np.unique(logs, axis=0))
    for k in range(2, min(MAX_SHAPE_FAMILIES, distinct) + 1):
        from sklearn.cluster import KMeans  # a second to import: only fits that split pay it

        fitted = KMeans(k, n_init=10, random_state=0).fit(logs)
        if np.bincount(fitted.labels_, minlength=k).min() <= channels:
            break
        best = fitted.cluster_centers_, fitted.labels_
    return best


class PadimFit:
    """Running sums of each position's features and their outer products (float64), so
    memory does not grow with the number of images; features are added in chunks of
    :data:`PADIM_CHUNK` tiles (one 300 MB update a tile cost more than extracting it).
    One per family of frame shapes: ``family`` is the statistics it fits. With
    ``config.row_context``, each map row's mean features get their own sums."""

    def __init__(self, model: NormalityModel, family: int = 0):
        self.model = model
        self.family = family
        _, P, D = model.mean.shape
        self.positions = RunningMoments(P, D)
        self.rows = RunningMoments(model.grid[0], D) if model.config.row_context else None
        self.pending: list[torch.Tensor] = []

    @property
    def n(self) -> int:
        return self.positions.n

    @property
    def images(self) -> int:
        """Tiles added so far (one an image for a squashed model)."""
        return self.n + sum(len(f) for f in self.pending)

    def add(self, features: torch.Tensor) -> None:
        self.pending.append(features)
        if sum(len(f) for f in self.pending) >= PADIM_CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        features = torch.cat(self.pending)  # (T, D, h, w)
        self.pending = []
        self.positions.add(features.flatten(2).permute(2, 0, 1))  # (P, T, D)
        if self.rows is not None:
            self.rows.add(features.mean(3).permute(2, 0, 1))  # (h, T, D)

    def finish(self, _deadline: float | None = None, _clock: Callable | None = None) -> bool:
        self._flush()
        device = self.model.mean.device
        stats = [(self.positions, self.model.mean, self.model.precision)]
        if self.rows is not None:
            stats.append((self.rows, self.model.row_mean, self.model.row_precision))
        for moments, mean_buffer, precision_buffer in stats:
            mean, precision = moments.gaussian()
            mean_buffer[self.family].copy_(mean.float().to(device))
            precision_buffer[self.family].copy_(precision.float().to(device))
        return False


class RunningMoments:
    """Sums of ``(P, T, D)`` vectors and their outer products at each of ``P`` places."""

    def __init__(self, places: int, dims: int):
        self.n = 0
        self.total = torch.zeros(places, dims, dtype=torch.float64)
        self.outer = torch.zeros(places, dims, dims, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.double()  # (P, T, D)
        self.n += x.shape[1]
        self.total += x.sum(1)
        self.outer.baddbmm_(x.transpose(1, 2), x)  # (P, D, D)

    def gaussian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each place's mean ``(P, D)`` and precision ``(P, D, D)``, with the ridge."""
        n = self.n
        mean = self.total / n  # (P, D)
        cov = (self.outer - n * mean[:, :, None] * mean[:, None, :]) / max(n - 1, 1)
        cov += COVARIANCE_EPS * torch.eye(cov.shape[-1], dtype=cov.dtype)
        # Batched torch.linalg.inv fails on some MKL builds; the Cholesky route does not.
        return mean, torch.cholesky_inverse(torch.linalg.cholesky(cov))


class PatchCoreFit:
    """A random sample of good patches, then a greedy k-center coreset of them."""

    def __init__(self, model: NormalityModel, seed: int, n_images: int):
        self.model = model
        self.generator = torch.Generator().manual_seed(seed)
        self.patches: list[torch.Tensor] = []
        # an even share of the pool from every image bounds memory on large sets
        self.per_image = -(-PATCH_POOL // max(n_images, 1))

    def add(self, features: torch.Tensor) -> None:
        x = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])  # (T * P, D)
        keep = torch.randperm(len(x), generator=self.generator)[: self.per_image]
        self.patches.append(x[keep])

    def finish(self, deadline: float | None, clock: Callable[[], float]) -> bool:
        """Choose the bank; True when the deadline cut the coreset short."""
        x = torch.cat(self.patches)  # (N, D)
        if len(x) > PATCH_POOL:
            x = x[torch.randperm(len(x), generator=self.generator)[:PATCH_POOL]]
        size = self.model.config.bank_size
        bank = greedy_coreset(x, size, self.generator, deadline, clock)
        if len(bank) < self.model.bank.shape[0]:  # fewer patches than the bank holds
            self.model.config = self.model.config.replace(bank_size=len(bank))
        self.model.bank = bank.to(self.model.bank.device)
        return len(bank) < min(size, len(x))


def greedy_coreset(
    x: torch.Tensor,
    size: int,
    generator: torch.Generator,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> torch.Tensor:
    """``size`` rows of ``x`` chosen by greedy k-center on a random projection (PatchCore:
    each next row is the one farthest from those chosen); fewer when ``clock()`` reaches
    ``deadline`` (the rows chosen first are the most spread out)."""
    if len(x) <= size:
        return x.clone()
    dims = min(PROJECTION_DIMS, x.shape[1])
    r = torch.randn(x.shape[1], dims, generator=generator) / dims**0.5
    p = x @ r  # (N, dims)
    sq = (p * p).sum(1)
    chosen = [int(torch.randint(len(p), (1,), generator=generator))]
    nearest = sq - 2 * p @ p[chosen[0]] + sq[chosen[0]]
    for _ in tqdm(range(size - 1), desc="coreset", unit="patch", leave=False, mininterval=2.0):
        if deadline is not None and clock() >= deadline:
            break
        i = int(torch.argmax(nearest))
        chosen.append(i)
        torch.minimum(nearest, sq - 2 * p @ p[i] + sq[i], out=nearest)
    return x[chosen].clone()


def _station_frames(
    held: list[Item],
    good_samples: list,
    options: TrainOptions,
    until: float | None,
    clock: Callable[[], float],
) -> Iterator[np.ndarray]:
    """Up to :data:`STATION_FRAMES` good frames: the held-out ones (in memory), then others
    read while the clock is short of ``until`` (the run's budget). (Working resolution or
    as read: what is learned on them, shares of the frame and lines measured in the
    face's own deviations, does not change when a frame is scaled.)"""
    yield from (item.image for item in held[:STATION_FRAMES])
    held_paths = {item.path for item in held}
    more = [s for s in good_samples if str(s.image) not in held_paths]
    for sample in more[: max(0, STATION_FRAMES - len(held))]:
        if until is not None and clock() >= until:
            return
        try:
            yield read_image(sample.image, max_side=options.max_side)
        except InputError:
            continue  # the fit skipped it too, and said so


@torch.inference_mode()
def _set_logit_scale(model: NormalityModel, held: list[Item], prep: PreprocessOptions) -> None:
    """``shift``: the :data:`SHIFT_QUANTILE` of held-out good pixels' distances (a pixel
    beyond every good surface's is past 0.5); ``scale``: a quarter of its distance from
    their median, so a typical good pixel sits at logit -4."""
    values = []
    device = model.shift.device
    for item in held:
        tiles = torch.from_numpy(preprocess(item.image, prep).images).to(device)
        frame = torch.tensor([frame_size(item.frame_shape or item.image.shape[:2], prep)])
        for i in range(0, len(tiles), TILE_BATCH):
            batch = tiles[i : i + TILE_BATCH]
            shapes = frame.expand(len(batch), 2).to(device)  # (B, 2)
            dist = model.distance_map(batch, shapes).flatten().cpu().numpy()
            values.append(dist[:: max(1, dist.size // 20000)])
    pixels = np.concatenate(values)
    shift = float(np.quantile(pixels, SHIFT_QUANTILE))
    scale = max((shift - float(np.median(pixels))) / 4.0, 1e-6)
    model.shift.fill_(shift)
    model.scale.fill_(scale)
