"""Model configuration: the shape of a detection model, as a frozen dataclass.

A model is a name that resolves to a :class:`ModelConfig` (``models/<name>.yaml``), the
way open_clip resolves ``"ViT-B-16"``. The config is also stored inside every
checkpoint, like whisper's ``ModelDimensions``, so a checkpoint rebuilds its own model.

This module imports no torch: the edge runtime reads configs too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inspection.fields import kind_problems, missing_fields, unknown_fields
from inspection.types import DEFECT_CLASSES as DEFAULT_CLASSES

"""Defect classes of the synthetic line and the example standards."""

# CLIP's normalisation: right for pretrained open_clip towers, harmless from scratch.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

IMAGE_TOWERS = ("vit", "timm")
METHODS = ("heads", "padim", "patchcore")
NORMALITY_METHODS = ("padim", "patchcore")  # fitted on a frozen pretrained backbone
RESIZES = ("tile", "squash")
SUPPORTED_N_MELS = (80, 128)  # the filter banks whisper ships
# Tower sizes a layer is built from: 0 would build an empty layer, or divide by zero
POSITIVE_SIZES = (
    "width", "heads", "patch_size", "n_audio_ctx", "audio_width", "audio_heads",
    "head_width", "pyramid_width", "fine_width",
)  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a detection model's architecture and input contract.

    Attributes
    ----------
    name : str
        Registry name (``tiny``, ``small``, ``base`` ...).
    image_size : int
        Side ``S`` of the square input the image tower sees, in pixels.
    in_chans : int
        Input channels, 3 (RGB, gray replicated) or 1 (``vit`` tower only).
    image_tower : str
        ``"vit"``: open_clip ``VisionTransformer`` built from ``width``, ``layers``,
        ``heads``, ``patch_size``. ``"timm"``: open_clip's timm-backed tower
        ``timm_model``, a conv net read at strides 4, 8 and 16; its stride-16 features
        become the patch tokens through ``layers`` transformer layers of ``width``.
    width, layers, heads, patch_size, mlp_ratio : int, int, int, int, float
        ViT shape (for ``"timm"``: the token width and the context layers over the conv
        features); ``width // heads`` is open_clip's ``head_width``.
    quick_gelu : bool
        True for towers trained by OpenAI (their checkpoints use QuickGELU).
    timm_model : str | None
        timm architecture name for ``image_tower="timm"``; never downloaded.
    classes : tuple[str, ...]
        Defect classes ``K``; map channel 0 is "anomalous", channel ``1 + k`` class k.
    n_mels, n_audio_ctx : int, int
        Log-mel bins and audio tokens; the clip is ``2 * n_audio_ctx`` mel frames
        (10 ms hop), so 50 tokens are 1 s at 16 kHz.
    audio_width, audio_layers, audio_heads : int
        whisper ``AudioEncoder`` shape (``n_state``, ``n_layer``, ``n_head``).
    head_width : int
        Width of the score and audio heads.
    stem_widths : tuple[int, ...]
        Channels of a convolutional stem on the image at strides 2, 4, ... (one level per
        width): the fine levels a ViT's patch grid lacks. Empty for a conv tower.
    pyramid_width, fine_width : int, int
        Channels of the pyramid head's top-down path, and of its full-resolution
        refinement (which keeps 1-2 px scratches sharp in the maps).
    topk_fraction : float
        Fraction of a map's pixels averaged for the image-level score (top-k pooling).
    image_mean, image_std : tuple[float, ...]
        Per-channel normalisation of ``[0, 1]`` pixels, one value per input channel.
    pretrained_image, pretrained_audio : str | None
        Local files for the towers (an open_clip checkpoint or timm weights; a whisper
        ``.pt``). Read at build time; never downloaded. ``None``: random weights.
    method : str
        ``"heads"``: the trained towers and heads above. ``"padim"`` / ``"patchcore"``: a
        feature normality model (:mod:`inspection.models.normality`) fitted on good
        images over the frozen pretrained ``backbone``; the tower fields are unused.
    backbone : str | None
        Pretrained backbone name (:mod:`inspection.models.backbones`). A normality model
        reads its features; trained heads (``image_tower: timm``) take it as their image
        tower, its ImageNet weights loaded from the package at build time.
    freeze_backbone : bool
        Trained heads on a ``backbone``: keep its weights and batch-norm statistics as
        shipped and train only what sits on top (the heads learn on ImageNet features
        instead of bending them to a few thousand synthetic parts).
    feature_stages : tuple[int, ...]
        Backbone stages read, finest first (EfficientNet-Lite: 2 = stride 8, 3 = 16).
    feature_dims : int
        PaDiM: channels kept (a fixed random subset, as the PaDiM paper); 0 keeps all.
    context_dims : int
        The last of ``feature_stages`` (the coarsest: context) reduced to its
        ``context_dims`` leading principal directions, fitted on good images, before it
        joins the others; 0 keeps all its channels. Context without the covariance of all
        of them (benchmarks/README.md, stage-4 PCA).
    bank_size : int
        PatchCore: patch features kept in the memory bank (greedy coreset).
    smooth_sigma : float
        Gaussian smoothing of a normality model's map, in input pixels (0: none).
    affinity_share : float
        A normality model's distance at each map position replaced by the mean over the
        positions of the same input it is most alike (feature cosine among the
        ``affinity_share`` most alike pairs of positions of the input, itself always
        included): a region of one texture takes the region's score, a defect's halo that
        of the normal surface it resembles, a unique speck keeps its own (0: off;
        benchmarks/README.md, "Feature-affinity refinement of the map").
    row_context : bool
        PaDiM: beside each position's Gaussian, one of each map row's features averaged
        over the row, and the map the mean of the two distances: a band of another
        texture across the frame lights as a whole, where the positions' Gaussians light
        its edge. For surfaces whose process marks run across the frame (grinding,
        rolling); benchmarks/README.md, "Row context in the product".
    shape_clusters : int
        PaDiM: families of frame shapes (clustered on log height and width), one set of
        per-position statistics each; a frame is scored by its nearest family's (set by
        the fit; benchmarks/README.md, "PaDiM per family of frame shapes").
    resize : str
        How a frame becomes model inputs: ``"tile"`` (native-resolution tiles, see
        :mod:`inspection.models.preprocess`) or ``"squash"`` (the whole frame resized to
        one ``S x S`` input, so that every map position is the same place on the part:
        what a per-position model such as PaDiM needs).
    """

    name: str
    image_size: int
    in_chans: int = 3
    image_tower: str = "vit"
    width: int = 768
    layers: int = 12
    heads: int = 12
    patch_size: int = 16
    mlp_ratio: float = 4.0
    quick_gelu: bool = False
    timm_model: str | None = None
    classes: tuple[str, ...] = DEFAULT_CLASSES
    n_mels: int = 80
    n_audio_ctx: int = 50
    audio_width: int = 512
    audio_layers: int = 6
    audio_heads: int = 8
    head_width: int = 64
    stem_widths: tuple[int, ...] = (16, 32)
    pyramid_width: int = 48
    fine_width: int = 8
    topk_fraction: float = 0.01
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    pretrained_image: str | None = None
    pretrained_audio: str | None = None
    method: str = "heads"
    backbone: str | None = None
    freeze_backbone: bool = False
    feature_stages: tuple[int, ...] = (2, 3)
    feature_dims: int = 0
    context_dims: int = 0
    bank_size: int = 10000
    smooth_sigma: float = 4.0
    affinity_share: float = 0.0
    row_context: bool = False
    shape_clusters: int = 1
    resize: str = "tile"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        # A YAML file's field of the wrong kind is named here, before a range check
        # compares text with a number (or turns the text "scratch" into six classes).
        problems = kind_problems(self)
        if problems:
            raise ValueError(f"model config {self.name!r}: " + "; ".join(problems))
        # YAML and JSON give lists; a frozen, hashable config wants tuples.
        for name in ("classes", "stem_widths", "image_mean", "image_std", "feature_stages"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        problems = self._problems()
        if problems:
            raise ValueError(f"model config {self.name!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        p = []
        if self.method not in METHODS:
            p.append(f"method must be one of {METHODS}, not {self.method!r}")
        if self.resize not in RESIZES:
            p.append(f"resize must be one of {RESIZES}, not {self.resize!r}")
        if self.image_size < 1 or min(self.image_std, default=1.0) <= 0:
            p.append("image_size must be >= 1 and image_std > 0")
        if self.is_normality:
            return p + self._normality_problems()
        if self.image_tower not in IMAGE_TOWERS:
            p.append(f"image_tower must be one of {IMAGE_TOWERS}, not {self.image_tower!r}")
        if self.image_tower == "timm" and not self.timm_model:
            p.append("image_tower 'timm' needs timm_model")
        if (
            min(getattr(self, n) for n in POSITIVE_SIZES) < 1
            or min(self.stem_widths, default=1) < 1
        ):
            p.append(f"{', '.join(POSITIVE_SIZES)} and stem_widths must be >= 1")
        if min(self.layers, self.audio_layers) < 0 or self.mlp_ratio <= 0:
            p.append("layers and audio_layers must be >= 0, mlp_ratio > 0")
        p += self._heads_backbone_problems()
        if self.in_chans not in (1, 3):
            p.append(f"in_chans must be 1 or 3, not {self.in_chans}")
        if self.image_tower == "timm" and self.in_chans != 3:
            p.append("the timm tower takes 3 channels (gray is replicated by preprocessing)")
        if self.image_tower == "vit":
            if self.image_size % self.patch_size:
                p.append(f"image_size {self.image_size} not a multiple of {self.patch_size}")
            if not self.stem_widths:
                p.append("a vit tower needs stem_widths (its patch grid has no fine levels)")
        elif self.image_size % 16:
            p.append(f"image_size {self.image_size} not a multiple of 16 (the conv tower's grid)")
        if self.layers and self.width % self.heads:
            p.append(f"width {self.width} not divisible by heads {self.heads}")
        if self.image_size % 2 ** len(self.stem_widths):
            p.append("image_size must be divisible by the stem's deepest stride")
        if self.audio_width % self.audio_heads:
            p.append(f"audio_width {self.audio_width} not divisible by {self.audio_heads}")
        if self.n_mels not in SUPPORTED_N_MELS:
            p.append(f"n_mels must be one of {SUPPORTED_N_MELS} (whisper's filter banks)")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            p.append("classes must be non-empty and unique")
        if len(self.image_mean) != self.in_chans or len(self.image_std) != self.in_chans:
            p.append("image_mean and image_std need one value per input channel")
        if not 0.0 < self.topk_fraction <= 1.0:
            p.append("topk_fraction must be in (0, 1]")
        return p

    def _heads_backbone_problems(self) -> list[str]:
        from inspection.models.backbones import BACKBONES

        if self.backbone is None:
            return ["freeze_backbone needs a backbone"] if self.freeze_backbone else []
        spec = BACKBONES.get(self.backbone)
        if spec is None:
            return [f"unknown backbone {self.backbone!r}, known: {sorted(BACKBONES)}"]
        if self.image_tower != "timm" or self.timm_model != spec.timm_model:
            return [
                f"backbone {self.backbone!r} under trained heads needs image_tower 'timm' "
                f"and timm_model {spec.timm_model!r}"
            ]
        return []

    def _normality_problems(self) -> list[str]:
        from inspection.models.backbones import BACKBONES

        p = []
        spec = BACKBONES.get(self.backbone or "")
        if spec is None:
            p.append(f"method {self.method!r} needs a backbone, one of {sorted(BACKBONES)}")
        elif not self.feature_stages or not all(
            0 <= s < len(spec.strides) for s in self.feature_stages
        ):
            p.append(f"feature_stages must be within 0-{len(spec.strides) - 1}")
        elif self.image_size % spec.strides[max(self.feature_stages)]:
            p.append(f"image_size must be a multiple of {spec.strides[max(self.feature_stages)]}")
        elif self.context_dims and (
            len(self.feature_stages) < 2
            or not 0 < self.context_dims <= spec.channels[self.feature_stages[-1]]
        ):
            p.append(
                "context_dims needs two or more feature_stages and at most the last stage's "
                f"{spec.channels[self.feature_stages[-1]]} channels"
            )
        if self.in_chans != 3:
            p.append("a pretrained backbone takes 3 channels (gray is replicated)")
        if not 0.0 <= self.affinity_share <= 1.0:
            p.append("affinity_share must be in [0, 1]")
        if min(self.feature_dims, self.context_dims, self.smooth_sigma) < 0 or self.bank_size < 1:
            p.append("feature_dims, context_dims, smooth_sigma must be >= 0, bank_size >= 1")
        if self.shape_clusters < 1 or (self.shape_clusters > 1 and self.method != "padim"):
            p.append("shape_clusters must be >= 1, and 1 for any method but padim")
        if self.row_context and self.method != "padim":
            p.append("row_context is for padim")
        return p

    @property
    def is_normality(self) -> bool:
        """A feature normality model (PaDiM / PatchCore) rather than trained heads."""
        return self.method in NORMALITY_METHODS

    @property
    def num_classes(self) -> int:
        """Defect classes ``K`` (the maps have ``1 + K`` channels)."""
        return len(self.classes)

    @property
    def map_channels(self) -> tuple[str, ...]:
        """Names of the map channels: ``("anomalous", *classes)``."""
        return ("anomalous", *self.classes)

    @property
    def n_audio_frames(self) -> int:
        """Mel frames the audio encoder takes (whisper asserts ``2 * n_audio_ctx``)."""
        return 2 * self.n_audio_ctx

    @property
    def n_audio_samples(self) -> int:
        """Samples of 16 kHz audio one clip is cropped or padded to."""
        return self.n_audio_frames * 160

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON- and YAML-ready dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error, not ignored."""
        unknown = unknown_fields(cls, data)
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        missing = missing_fields(cls, data)
        if missing:
            raise ValueError(f"a model config needs {', '.join(missing)}")
        return cls(**dict(data))
