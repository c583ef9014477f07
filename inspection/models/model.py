"""The detection model: image encoder + heads, audio encoder + head, fusion.

``DefectModel(image, mel=None) -> DetectionOutput``; the numpy twin of the output,
:class:`~inspection.models.outputs.Detection`, is what everything downstream consumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from inspection.models.audio_encoder import AudioEncoder
from inspection.models.config import ModelConfig
from inspection.models.heads import ConvStem, PartFusion, PyramidHead, ScoreHead, TokenContext
from inspection.models.image_encoder import ImageEncoder
from inspection.models.outputs import Detection


@dataclass(frozen=True)
class DetectionOutput:
    """The model's output for a batch: logits and tokens, as tensors.

    Attributes
    ----------
    maps : Tensor
        ``(B, 1 + K, H, W)`` pixel logits at input resolution; channel 0 "anomalous",
        channel ``1 + k`` class ``config.classes[k]``.
    image_logit : Tensor
        ``(B,)`` the image is anomalous (``image_logits[:, 0]``).
    class_logits : Tensor
        ``(B, K)`` the image shows class k (multi-label).
    audio_logit : Tensor | None
        ``(B,)`` the audio is anomalous; ``None`` when no mel was given.
    part_logit : Tensor
        ``(B,)`` the part is defective: image and audio fused; equal to ``image_logit``
        when no mel was given.
    patch_tokens : Tensor
        ``(B, N, C)`` image patch tokens.
    audio_tokens : Tensor | None
        ``(B, T, C_a)`` audio tokens, or ``None``.
    grid : tuple[int, int]
        ``(gh, gw)``, ``N == gh * gw``.
    """

    maps: Tensor
    image_logit: Tensor
    class_logits: Tensor
    audio_logit: Tensor | None
    part_logit: Tensor
    patch_tokens: Tensor
    audio_tokens: Tensor | None
    grid: tuple[int, int]

    def numpy(self, classes: tuple[str, ...] = ()) -> Detection:
        """The torch-free :class:`Detection` (same fields, float32 numpy arrays)."""

        def arr(t: Tensor | None) -> Any:
            return None if t is None else t.detach().float().cpu().numpy()

        return Detection(
            maps=arr(self.maps),
            image_logit=arr(self.image_logit),
            class_logits=arr(self.class_logits),
            audio_logit=arr(self.audio_logit),
            part_logit=arr(self.part_logit),
            patch_tokens=arr(self.patch_tokens),
            audio_tokens=arr(self.audio_tokens),
            grid=tuple(self.grid),
            classes=tuple(classes),
        )


class DefectModel(nn.Module):
    """Defect segmentation and scoring on an open_clip image tower, with a whisper audio
    encoder for tap tests.

    Parameters
    ----------
    config : ModelConfig
        The architecture.
    load_pretrained : bool
        Read the pretrained tower files the config names (local paths only).

    Attributes
    ----------
    model_version : str | None
        Hash of the weights file this model was loaded from (``None`` when fresh).
    metadata : dict
        Extra metadata stored with the checkpoint (e.g. ``image_threshold``).
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True):
        super().__init__()
        self.config = config
        n_out = 1 + config.num_classes
        self.image_encoder = ImageEncoder(config, load_pretrained=load_pretrained)
        self.stem = ConvStem(config.in_chans, config.stem_widths) if config.stem_widths else None
        self.context = None
        if config.image_tower != "vit":  # a conv tower's tokens get global context here
            grid = config.image_size // self.image_encoder.strides[-1]
            self.context = TokenContext(
                self.image_encoder.width, config.width, config.layers, config.heads, grid * grid
            )
        channels = (*config.stem_widths, *self.image_encoder.channels[:-1], config.width)
        self.seg_head = PyramidHead(
            channels, config.pyramid_width, config.fine_width, n_out, config.in_chans
        )
        self.score_head = ScoreHead(config.width, config.head_width, n_out, config.topk_fraction)
        self.audio_encoder = AudioEncoder(config, load_pretrained=load_pretrained)
        self.fusion = PartFusion()
        self.model_version: str | None = None
        self.metadata: dict[str, Any] = {}

    def forward(self, image: Tensor, mel: Tensor | None = None) -> DetectionOutput:
        """Detect defects.

        Parameters
        ----------
        image : Tensor
            ``(B, in_chans, S, S)`` normalised (see :mod:`inspection.models.preprocess`).
        mel : Tensor | None
            ``(B, n_mels, F)`` log-mel (see :mod:`inspection.models.audio`); ``F`` is
            cropped or padded to ``2 * n_audio_ctx``. ``None``: no audio.
        """
        self._check_image(image)
        levels = self.image_encoder.pyramid(image)  # finest first, (B, C_i, S/s_i, S/s_i)
        B, _, gh, gw = levels[-1].shape
        tokens = levels[-1].flatten(2).transpose(1, 2)  # (B, N, C)
        if self.context is not None:
            tokens = self.context(tokens)  # (B, N, width)
        levels[-1] = tokens.transpose(1, 2).reshape(B, -1, gh, gw)  # (B, width, gh, gw)
        if self.stem is not None:
            levels = self.stem(image) + levels
        maps = self.seg_head(levels, image)  # (B, 1+K, S, S)
        logits = self.score_head(maps, tokens)  # (B, 1+K)
        audio_tokens = audio_logit = None
        if mel is not None:
            audio_tokens, audio_logit = self.audio_encoder(mel)  # (B, T, Ca), (B,)
        return DetectionOutput(
            maps=maps,
            image_logit=logits[:, 0],
            class_logits=logits[:, 1:],
            audio_logit=audio_logit,
            part_logit=self.fusion(logits[:, 0], audio_logit),
            patch_tokens=tokens,
            audio_tokens=audio_tokens,
            grid=(gh, gw),
        )

    def _check_image(self, image: Tensor) -> None:
        c, s = self.config.in_chans, self.config.image_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (c, s, s):
            raise ValueError(
                f"model {self.config.name!r} takes images (B, {c}, {s}, {s}), "
                f"got {tuple(image.shape)}: tile or resize with inspection.models.preprocess"
            )

    def num_params(self, part: str | None = None) -> int:
        """Parameters of the model, or of one part (``"image_encoder"``, ``"audio_encoder"``...)."""
        module = self if part is None else getattr(self, part)
        return sum(p.numel() for p in module.parameters())

    def param_summary(self) -> Mapping[str, int]:
        """Parameters by part."""
        return {name: self.num_params(name) for name, _ in self.named_children()}
