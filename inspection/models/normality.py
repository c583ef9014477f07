"""Feature normality models: what good parts look like, in a pretrained backbone's
features, fitted in minutes on good images alone.

``NormalityModel(image) -> DetectionOutput``, the same output as the trained
:class:`~inspection.models.model.DefectModel`, so the detectors, the decision function,
``evaluate`` and the ONNX export take either. The statistics of good features are
buffers, saved with the checkpoint and constants of the exported graph.

- **PaDiM** (Defard et al. 2020): a Gaussian per map position over the concatenated,
  3x3 average-pooled features of two backbone stages (optionally a fixed random subset of
  the channels); the map is the Mahalanobis distance. Every input must show the same
  place of the part at the same position: frames are squashed to one input
  (``config.resize == "squash"``).
- **PatchCore** (Roth et al. 2022): a position-free memory bank of good patch features
  (a greedy k-center coreset); the map is the distance to the nearest bank patch. Works
  on native-resolution tiles.

The statistics are rounded to float16 values when fitted (:meth:`NormalityModel.round_statistics`):
checkpoints and ONNX graphs store them in half the bytes, losslessly.

The map is upsampled to the input, smoothed (Gaussian, ``config.smooth_sigma``) and
turned into a logit, ``(distance - shift) / scale``, with ``shift`` and ``scale`` set on
held-out good images at fit time, so that a pixel's probability crosses 0.5 where good
surfaces stop, as the trained heads' does. The part's logit is the mean of the top
``topk_fraction`` of the map's logits. A normality model knows no defect classes: its
one class is ``anomaly``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspection.models.backbones import create_backbone, get_backbone
from inspection.models.config import ModelConfig
from inspection.models.model import DetectionOutput

ANOMALY_CLASS = "anomaly"


class NormalityModel(nn.Module):
    """A frozen pretrained backbone and the statistics of good parts' features.

    Parameters
    ----------
    config : ModelConfig
        ``method`` ``"padim"`` or ``"patchcore"``, ``backbone``, ``feature_stages`` ...
    load_pretrained : bool
        Read the backbone's weights from its package (``False`` when a checkpoint brings
        every weight).

    Attributes
    ----------
    model_version : str | None
        Hash of the weights file this model was loaded from (``None`` when fresh).
    metadata : dict
        Thresholds, provenance of the backbone weights, fit statistics.
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True):
        super().__init__()
        if not config.is_normality:
            raise ValueError(f"model {config.name!r} is not a normality model ({config.method})")
        self.config = config
        spec = get_backbone(config.backbone)
        self.backbone = create_backbone(config.backbone, config.feature_stages, load_pretrained)
        self.backbone.requires_grad_(False)
        stride = spec.strides[config.feature_stages[0]]
        self.grid = (config.image_size // stride, config.image_size // stride)
        *fine, last = (spec.channels[s] for s in config.feature_stages)
        width = sum(fine) + (config.context_dims or last)
        if config.context_dims:  # fitted on good images (train.normality.fit_context)
            self.register_buffer("context_mean", torch.zeros(last))
            self.register_buffer("context_basis", torch.zeros(last, config.context_dims))
        dims = min(config.feature_dims or width, width)
        positions = self.grid[0] * self.grid[1]
        # Fixed per config (a seeded permutation), so a checkpoint needs only its config.
        generator = torch.Generator().manual_seed(0)
        kept = torch.randperm(width, generator=generator)[:dims].sort().values
        self.register_buffer("kept_channels", kept, persistent=False)
        if config.method == "padim":
            C = config.shape_clusters
            self.register_buffer("mean", torch.zeros(C, positions, dims))
            self.register_buffer("precision", torch.zeros(C, positions, dims, dims))
            if config.row_context:  # one Gaussian per map row (of the row's mean)
                self.register_buffer("row_mean", torch.zeros(C, self.grid[0], dims))
                self.register_buffer("row_precision", torch.zeros(C, self.grid[0], dims, dims))
            # Each family's centre in (log height, log width) of the frame.
            self.register_buffer("shape_centroids", torch.zeros(C, 2))
        else:
            self.register_buffer("bank", torch.zeros(config.bank_size, dims))
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("smoothing", gaussian_kernel(config.smooth_sigma), persistent=False)
        self.model_version: str | None = None
        self.metadata: dict[str, Any] = {}
        # Set by the fit while it scores images it fitted on (PaDiM): each family's image
        # count, so that a distance is the image's leave-one-out one. Never saved.
        self.fitted_counts: Tensor | None = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints from before shape families hold one family's statistics, unbatched.
        mean = state_dict.get(prefix + "mean")
        if self.config.method == "padim" and mean is not None and mean.ndim == 2:
            for name in ("mean", "precision"):
                state_dict[prefix + name] = state_dict[prefix + name][None]
            state_dict.setdefault(prefix + "shape_centroids", torch.zeros(1, 2))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def round_statistics(self) -> None:
        """Round the good parts' statistics (PaDiM's means and precisions, PatchCore's
        bank) to float16 values, which checkpoints and ONNX graphs then store in half the
        bytes without loss. Measured on magnetic tile: image and pixel AUROC unchanged to
        four decimals (benchmarks/README.md). A statistic float16 cannot hold (beyond its
        range) stays as it is."""
        for name in ("mean", "precision", "row_mean", "row_precision", "bank"):
            stat = getattr(self, name, None)
            if stat is not None and torch.isfinite(stat.half()).all():
                stat.copy_(stat.half().float())

    def embed(self, image: Tensor) -> Tensor:
        """Pooled, upsampled and concatenated backbone features ``(B, D, gh, gw)``."""
        levels = self.pooled_levels(image)
        if self.config.context_dims:
            levels[-1] = self.reduce_context(levels[-1])
        size = levels[0].shape[-2:]
        upsampled = [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in levels
        ]
        return torch.cat(upsampled, 1).index_select(1, self.kept_channels)  # (B, D, gh, gw)

    def pooled_levels(self, image: Tensor) -> list[Tensor]:
        """Each stage's map, 3 x 3 average pooled, at its own resolution."""
        return [
            F.avg_pool2d(f, 3, 1, 1, count_include_pad=False)  # (B, C_i, h_i, w_i)
            for f in self.backbone(image)
        ]

    def reduce_context(self, last: Tensor) -> Tensor:
        """The last stage's ``(B, C, h, w)`` map projected on its principal directions."""
        x = last.permute(0, 2, 3, 1) - self.context_mean  # (B, h, w, C)
        return (x @ self.context_basis).permute(0, 3, 1, 2)  # (B, K, h, w)

    def shape_family(self, frame_shape: Tensor | None, batch: int) -> Tensor:
        """Each frame's family of shapes, ``(B,)``: the nearest centroid to its
        ``(height, width)`` in log pixels (family 0 with one family).

        Raises
        ------
        ValueError
            No ``frame_shape`` for a model with several families: guessing one would
            score the frame against another shape's good parts.
        """
        if self.config.shape_clusters == 1:
            return torch.zeros(batch, dtype=torch.long, device=self.shift.device)
        if frame_shape is None:
            raise ValueError(
                f"model {self.config.name!r} has {self.config.shape_clusters} families of "
                "frame shapes: give each input's frame_shape (height, width)"
            )
        logs = frame_shape.float().log()  # (B, 2)
        gaps = logs[:, None] - self.shape_centroids  # (B, C, 2); no cdist: ONNX has none
        return (gaps * gaps).sum(-1).argmin(-1)  # (B,)

    def distance(self, features: Tensor, frame_shape: Tensor | None = None) -> Tensor:
        """Distance of each position's features from good ones, ``(B, gh, gw)``;
        ``frame_shape`` ``(B, 2)``, each frame's height and width before the squash,
        chooses PaDiM's family of statistics (see ``config.shape_clusters``)."""
        B, _, h, w = features.shape
        x = features.flatten(2).transpose(1, 2)  # (B, P, D)
        if self.config.method == "padim":
            family = self.shape_family(frame_shape, B)  # (B,)
            dist = self._mahalanobis(x, self.mean, self.precision, family).reshape(B, h, w)
            if self.config.row_context:
                rows = features.mean(3).transpose(1, 2)  # (B, h, D)
                along = self._mahalanobis(rows, self.row_mean, self.row_precision, family)
                dist = (dist + along[:, :, None]) / 2  # (B, h, w)
            return dist
        bank = self.bank  # (M, D)
        cross = x @ bank.T  # (B, P, M)
        squared = (x * x).sum(-1, keepdim=True) - 2 * cross + (bank * bank).sum(-1)
        return squared.min(-1).values.clamp_min(0).sqrt().reshape(B, h, w)

    def _mahalanobis(self, x: Tensor, mean: Tensor, precision: Tensor, family: Tensor) -> Tensor:
        """Distance ``(B, P)`` of ``x`` ``(B, P, D)`` from each frame's family's Gaussians
        (``mean`` ``(C, P, D)``, ``precision`` ``(C, P, D, D)``), leave-one-out while the
        fit scores its own images."""
        B = x.shape[0]
        C, P, D = mean.shape
        # Every family's distance, then each frame's own: no (B, P, D, D) copy of the
        # precisions, and one graph for any batch (the family is data, not control).
        d = (x[None] - mean[:, None]).transpose(1, 2).reshape(C * P, B, D)
        squared = (torch.bmm(d, precision.reshape(C * P, D, D)) * d).sum(-1)
        squared = squared.reshape(C, P, B).permute(2, 0, 1)  # (B, C, P)
        squared = squared.gather(1, family[:, None, None].expand(B, 1, P))[:, 0]  # (B, P)
        if self.fitted_counts is not None:
            n = self.fitted_counts.to(squared)[family][:, None]  # (B, 1)
            squared = leave_one_out(squared, n)
        return squared.clamp_min(0).sqrt()

    def distance_map(self, image: Tensor, frame_shape: Tensor | None = None) -> Tensor:
        """The smoothed distance at input resolution, ``(B, 1, S, S)``, before ``shift``."""
        return self._distance_map(self.embed(image), image.shape[-1], frame_shape)

    def _distance_map(self, features: Tensor, S: int, frame_shape: Tensor | None) -> Tensor:
        dist = self.distance(features, frame_shape)  # (B, gh, gw)
        if self.config.affinity_share > 0:
            dist = affinity_mean(dist, features, self.config.affinity_share)
        dist = dist[:, None]  # (B, 1, gh, gw)
        up = F.interpolate(dist, size=(S, S), mode="bilinear", align_corners=False)
        return smooth(up, self.smoothing)  # (B, 1, S, S)

    def forward(
        self, image: Tensor, mel: Tensor | None = None, frame_shape: Tensor | None = None
    ) -> DetectionOutput:
        """Detect anomalies; ``mel`` is accepted and ignored (no audio branch);
        ``frame_shape`` ``(B, 2)``: each input's frame height and width before the
        squash, which chooses its family of statistics (``config.shape_clusters``)."""
        self._check_image(image)
        return self.detect_features(self.embed(image), image.shape[-1], frame_shape)

    def detect_features(
        self, features: Tensor, S: int, frame_shape: Tensor | None = None
    ) -> DetectionOutput:
        """:meth:`forward` from the backbone's features ``(B, D, gh, gw)`` of ``S`` px
        inputs (:meth:`embed`): the fit scores images whose features it already has."""
        B = features.shape[0]
        dist = self._distance_map(features, S, frame_shape)  # (B, 1, S, S)
        logit = (dist - self.shift) / self.scale  # (B, 1, S, S)
        k = max(1, int(self.config.topk_fraction * S * S))
        image_logit = logit.flatten(1).topk(k, dim=-1).values.mean(-1)  # (B,)
        K = self.config.num_classes
        # One class known: every defect pixel is an "anomaly" (a softmax over one channel).
        maps = torch.cat([logit, torch.zeros_like(logit).expand(B, K, S, S)], 1)  # (B, 1+K, S, S)
        return DetectionOutput(
            maps=maps,
            image_logit=image_logit,
            class_logits=image_logit[:, None].expand(B, K),
            audio_logit=None,
            part_logit=image_logit,
            patch_tokens=features.flatten(2).transpose(1, 2),  # (B, P, D)
            audio_tokens=None,
            grid=(features.shape[-2], features.shape[-1]),
        )

    def _check_image(self, image: Tensor) -> None:
        s = self.config.image_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, s, s):
            raise ValueError(
                f"model {self.config.name!r} takes images (B, 3, {s}, {s}), "
                f"got {tuple(image.shape)}: tile or resize with inspection.models.preprocess"
            )

    def num_params(self, part: str | None = None) -> int:
        """Parameters and statistics (buffers) of the model, or of one part."""
        module = self if part is None else getattr(self, part)
        return sum(t.numel() for t in [*module.parameters(), *module.buffers()])

    def param_summary(self) -> dict[str, int]:
        """Parameters by part: the backbone, and the good parts' statistics."""
        stats = sum(b.numel() for name, b in self.named_buffers() if "." not in name)
        return {"backbone": self.num_params("backbone"), "statistics": stats}


def leave_one_out(squared: Tensor, n: Tensor) -> Tensor:
    """Squared Mahalanobis distances of a fitted image from the Gaussian fitted without it,
    from its ``squared`` distances from the Gaussian fitted on all ``n`` images.

    Removing one image is a rank-one downdate of the scatter, so Sherman-Morrison gives
    the result in closed form; exact but for the ridge, taken to scale with the scatter
    (it changes by a factor (n - 2) / (n - 1)): within 0.1 % of a refit on magnetic tile.
    Calibrating on these distances calibrates the model fitted on every good image as if
    its calibration images were new. Where ``n < 3`` the in-sample distance is kept: it is
    lower, so thresholds set on it err towards REJECT.
    """
    m = n.clamp_min(3)
    downdated = 1 - m * squared / (m - 1) ** 2
    loo = (m / (m - 1)) ** 2 * (m - 2) / (m - 1) * squared / downdated.clamp_min(1e-6)
    return torch.where(n >= 3, loo, squared)


def affinity_mean(dist: Tensor, features: Tensor, share: float) -> Tensor:
    """Each position's distance ``(B, gh, gw)`` averaged over the positions of its own
    input whose features ``(B, D, gh, gw)`` it is most alike: those it forms one of the
    input's ``share`` most alike pairs with (feature cosine), itself always among them.
    One threshold per input, not a count per position: a position like many others (a
    texture) is averaged over many, a unique one (a speck) over few."""
    B, h, w = dist.shape
    P = h * w
    f = F.normalize(features.flatten(2).transpose(1, 2), dim=-1)  # (B, P, D)
    alike = f @ f.transpose(1, 2)  # (B, P, P)
    k = max(1, round(share * P * P))
    cut = alike.flatten(1).topk(k, dim=-1).values[:, -1]  # (B,) the k-th most alike pair
    itself = torch.eye(P, dtype=torch.bool, device=dist.device)
    near = ((alike >= cut[:, None, None]) | itself).to(dist.dtype)  # (B, P, P)
    d = dist.reshape(B, P, 1)
    return (torch.bmm(near, d) / near.sum(-1, keepdim=True)).reshape(B, h, w)


def gaussian_kernel(sigma: float) -> Tensor:
    """A normalised 1-D Gaussian, ``(2 * ceil(3 sigma) + 1,)``; ``[1.]`` for sigma 0."""
    if sigma <= 0:
        return torch.ones(1)
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def smooth(maps: Tensor, kernel: Tensor) -> Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` maps, edges replicated."""
    r = kernel.numel() // 2
    if r == 0:
        return maps
    x = F.pad(maps, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))  # (B, 1, H + 2r, W)
    return F.conv2d(x, kernel.view(1, 1, -1, 1))  # (B, 1, H, W)
