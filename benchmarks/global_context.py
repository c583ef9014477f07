"""Whole-image context for PaDiM's map on magnetic tile (issue 23): three ways tried.

An ``uneven`` tile carries two grinding textures and the mask marks the minority one; each
texture alone is normal at its position, so the per-position Gaussian lights only their
boundary (pixel AUROC of ``uneven`` against good pixels 0.92; 71 % of the set's defect
pixels). Both variants below give the map knowledge of the whole image:

- ``style``: families by appearance within the families by frame shape. Each shape
  family's goods are clustered (k-means) on their mean feature, one PaDiM per family,
  and a test image is scored by its nearest family's Gaussians: a tile of mostly one
  texture is judged against tiles of that texture, so the other one lights as a region.
- ``autoencoder``: a small convolutional autoencoder of the standardised feature map
  through a 64-d bottleneck (the whole map in one code), fitted on 599 goods; its
  per-position reconstruction error, alone and summed with PaDiM's distance (each
  standardised on 67 held-out goods), since an image-wide code cannot carry two
  textures.
- ``rows`` / ``columns``: each row's features averaged over the width (or each column's
  over the height), one Gaussian per row (column) and shape family, the distance spread
  along the row: a band of the other texture across the tile lights as a whole. Rows
  assume the bands run across the frame, as magnetic tile's grinding does; columns are
  the same assumption turned 90 degrees, and both together assume neither.

Features: the ``shape_clusters.py`` cache (the product's default, EfficientNet-Lite0 stage
3 at 320 px, 20 x 20 positions; ``--cache``, filled by that script when absent). Scoring
as there (top 1 % of the map smoothed at sigma 4; pixel AUROC on maps at each image's size).

    python benchmarks/global_context.py --data ../shared/data/magnetic-tile \\
        --cache runs/s35/s3-clusters.pt

Results: benchmarks/README.md, "Whole-image context for the map: appearance families, a
feature autoencoder, row and column context (issue 23; tried)".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from shape_clusters import (
    class_aurocs,
    class_pixel_aurocs,
    distances,
    gaussian,
    moments,
    scores_and_maps,
)

from inspection.datasets import load_dataset
from inspection.evaluate import read_sample
from inspection.metrics import image_auroc, pixel_auroc

SHAPE_FAMILIES = 3  # the product's (frame-shape families of magnetic tile's goods)
BOTTLENECK = 64
EPOCHS = 150
HELD_OUT = 67  # goods not fitted, to standardise the two maps on (as `inspection train`)


def family_padim(ftr, fit_of, fte, test_of) -> torch.Tensor:
    """Distance maps ``(N, h, w)``: each test image against its family's Gaussians."""
    dist = torch.zeros(len(fte), *fte.shape[-2:])
    for family in np.unique(fit_of):
        idx = torch.from_numpy(np.nonzero(test_of == family)[0])
        if len(idx):
            mean, cov, _ = moments(ftr[torch.from_numpy(fit_of == family)])
            dist[idx] = distances(fte[idx], *gaussian(mean, cov))
    return dist


def families(str_, ste, gtr, gte, n_styles: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Family of each good and test image: its shape family, then within that family its
    appearance family (k-means on the family's own goods)."""
    shape = KMeans(SHAPE_FAMILIES, n_init=10, random_state=0).fit(str_)
    fit_of, test_of = shape.labels_ * n_styles, shape.predict(ste) * n_styles
    if n_styles > 1:
        for family in range(SHAPE_FAMILIES):
            goods, tests = shape.labels_ == family, test_of == family * n_styles
            style = KMeans(n_styles, n_init=10, random_state=0).fit(gtr[goods])
            fit_of[goods] += style.labels_
            if tests.any():
                test_of[tests] += style.predict(gte[tests])
    return fit_of, test_of, np.bincount(fit_of, minlength=SHAPE_FAMILIES * n_styles).tolist()


class FeatureAutoencoder(nn.Module):
    """The whole ``(D, 20, 20)`` map through one ``BOTTLENECK``-d code and back."""

    def __init__(self, channels: int):
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(channels, 64, 3, 2, 1),  # (B, 64, 10, 10)
            nn.ReLU(),
            nn.Conv2d(64, 32, 3, 2, 1),  # (B, 32, 5, 5)
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 25, BOTTLENECK),  # (B, BOTTLENECK)
        )
        self.decode = nn.Sequential(
            nn.Linear(BOTTLENECK, 32 * 25),
            nn.ReLU(),
            nn.Unflatten(1, (32, 5, 5)),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 64, 3, 1, 1),  # (B, 64, 10, 10)
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(64, 64, 3, 1, 1),  # (B, 64, 20, 20)
            nn.ReLU(),
            nn.Conv2d(64, channels, 1),  # (B, D, 20, 20)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def error(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position reconstruction error ``(B, h, w)``."""
        with torch.no_grad():
            return (self(x) - x).pow(2).sum(1).sqrt()


def fit_autoencoder(maps: torch.Tensor) -> FeatureAutoencoder:
    torch.manual_seed(0)
    model = FeatureAutoencoder(maps.shape[1])
    optimiser = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=1e-5)
    for _ in tqdm(range(EPOCHS), desc="autoencoder", unit="epoch", mininterval=5.0):
        for batch in torch.randperm(len(maps)).split(32):
            loss = (model(maps[batch]) - maps[batch]).pow(2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model


def cached_test_set(cache: Path, data: Path):
    """The ``shape_clusters.py`` cache ``(ftr, str_, fte, ste)`` and the test images it
    was extracted from, with a ``report(name, dist)`` that prints a map's image and pixel
    AUROC, overall and by class."""
    if not cache.exists():
        sys.exit(f"{cache}: run benchmarks/shape_clusters.py --config padim-lite0 first")
    ftr, str_, fte, ste = torch.load(cache, weights_only=False)
    test = [s for s in load_dataset(data).samples if s.split == "test"]
    labels = [s.label != "good" for s in test]
    masks = [read_sample(s)[2] for s in test]
    classes = sorted({s.label for s in test} - {"good"})

    def report(name: str, dist: torch.Tensor) -> None:
        scores, maps = scores_and_maps(dist, ste, 320)
        print(
            f"{name}: image AUROC {image_auroc(labels, scores):.4f}, pixel AUROC "
            f"{pixel_auroc(masks, maps):.4f} ({class_aurocs(test, scores, classes)}; pixel "
            f"against goods: {class_pixel_aurocs(test, masks, maps, classes)})",
            flush=True,
        )

    return (ftr, str_, fte, ste), test, masks, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/shape-clusters.pt"))
    parser.add_argument("--styles", default="1,2", help="appearance families per shape family")
    args = parser.parse_args()
    torch.set_num_threads(2)
    (ftr, str_, fte, ste), _, _, report = cached_test_set(args.cache, args.data)

    means = ftr.float().mean((2, 3))  # (N, D): each good's appearance
    centre, spread = means.mean(0), means.std(0) + 1e-6
    gtr = ((means - centre) / spread).numpy()
    gte = ((fte.float().mean((2, 3)) - centre) / spread).numpy()
    for n_styles in (int(v) for v in args.styles.split(",")):
        fit_of, test_of, sizes = families(str_, ste, gtr, gte, n_styles)
        report(
            f"PaDiM, {n_styles} appearance families a shape {sizes}",
            family_padim(ftr, fit_of, fte, test_of),
        )

    # The autoencoder beside PaDiM, both fitted on the same 599 goods.
    order = np.random.default_rng(0).permutation(len(ftr))
    held, fitted = np.sort(order[:HELD_OUT]), np.sort(order[HELD_OUT:])
    fit_of, test_of, _ = families(str_[fitted], ste, gtr[fitted], gte, 1)
    held_of = (
        KMeans(SHAPE_FAMILIES, n_init=10, random_state=0).fit(str_[fitted]).predict(str_[held])
    )
    padim_test = family_padim(ftr[fitted], fit_of, fte, test_of)
    padim_held = family_padim(ftr[fitted], fit_of, ftr[held], held_of)
    x = ftr[fitted].float()
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True) + 1e-6
    start = time.perf_counter()
    model = fit_autoencoder((x - mean) / std)
    print(f"autoencoder fitted in {time.perf_counter() - start:.0f} s", flush=True)
    ae_test = model.error((fte.float() - mean) / std)
    ae_held = model.error((ftr[held].float() - mean) / std)

    def standardised(test_map, held_map):
        return (test_map - held_map.mean()) / held_map.std()

    report("PaDiM fitted on 599", padim_test)
    report("autoencoder", ae_test)
    z_padim, z_ae = standardised(padim_test, padim_held), standardised(ae_test, ae_held)
    for weight in (0.25, 0.5):
        report(f"PaDiM + autoencoder, weight {weight}", (1 - weight) * z_padim + weight * z_ae)

    # Row and column context: each row's (column's) features averaged over the width
    # (height), one Gaussian per row (column) and family, its distance spread along it.
    z_lines = {}
    for name, axis in (("rows", 3), ("columns", 2)):
        lines = [x.float().mean(axis, keepdim=True) for x in (ftr[fitted], fte, ftr[held])]
        line_test = family_padim(lines[0], fit_of, lines[1], test_of).expand_as(padim_test)
        line_held = family_padim(lines[0], fit_of, lines[2], held_of).expand_as(padim_held)
        report(f"{name} alone", line_test)
        z_lines[name] = standardised(line_test, line_held)
        report(f"PaDiM + {name}", (z_padim + z_lines[name]) / 2)
    report("PaDiM + rows + columns", (z_padim + z_lines["rows"] + z_lines["columns"]) / 3)


if __name__ == "__main__":
    main()
