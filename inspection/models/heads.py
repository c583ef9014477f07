"""Detection heads: pixel maps from a feature pyramid refined at full resolution,
image-level scores, and the image + audio fusion that gives the part's logit.

Map channel 0 is "anomalous" (any defect, a sigmoid logit); channels ``1 + k`` say which
class ``k`` a defect pixel shows (softmax logits over the K classes). The image-level
class logits are independent (multi-label: a part can carry two classes).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from open_clip.transformer import Transformer
from torch import Tensor, nn

# Defects are rare: start every map logit at a 1 % prior, so the first steps of training
# are not spent unlearning "everything is a defect" (the RetinaNet prior).
PRIOR_LOGIT = math.log(0.01 / 0.99)


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, GroupNorm (batch-size independent, for small CPU batches), GELU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(math.gcd(8, c_out), c_out),
        nn.GELU(),
    )


class ConvStem(nn.Module):
    """Shallow convolutions on the raw image at strides 2, 4, ... (one per width).

    A ViT sees 16 px patches; a 1-4 px scratch is a sub-patch detail. These levels give
    the pyramid head the fine edges (U-Net style) a patch grid lacks. A conv tower has
    its own fine levels and needs no stem.
    """

    def __init__(self, in_chans: int, widths: tuple[int, ...]):
        super().__init__()
        chans = (in_chans, *widths)
        self.levels = nn.ModuleList(
            nn.Sequential(conv_block(c_in, c_out, stride=2), conv_block(c_out, c_out))
            for c_in, c_out in itertools.pairwise(chans)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for level in self.levels:
            x = level(x)  # (B, w_i, H / 2^(i+1), W / 2^(i+1))
            out.append(x)
        return out


class TokenContext(nn.Module):
    """Transformer layers over a conv tower's deepest features: every patch token sees the
    whole part (a missing hole is only missing relative to where the others are).

    Projects ``(B, N, C_in)`` to ``(B, N, width)`` and adds learned positions first.
    """

    def __init__(self, c_in: int, width: int, layers: int, heads: int, n_tokens: int):
        super().__init__()
        self.proj = nn.Linear(c_in, width)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = Transformer(width, layers, heads) if layers else None

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.proj(tokens) + self.pos  # (B, N, width)
        return x if self.blocks is None else self.blocks(x)  # (B, N, width)


class PyramidHead(nn.Module):
    """Pixel maps from a feature pyramid (FPN top-down), refined at full resolution.

    The levels (finest first) are merged top-down into ``width`` channels at the finest
    level, whose logits are upsampled; a thin full-resolution path on the image itself
    adds the pixel-exact edges of 1-2 px scratches: ``maps = up(coarse) + fine(image, up(x))``.
    """

    def __init__(
        self, channels: tuple[int, ...], width: int, fine_width: int, n_out: int, in_chans: int
    ):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.smooth = nn.ModuleList(conv_block(width, width) for _ in channels[:-1])
        self.coarse = nn.Conv2d(width, n_out, 1)
        self.squeeze = nn.Conv2d(width, fine_width, 1)
        self.fine = nn.Sequential(
            nn.Conv2d(in_chans + fine_width, fine_width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(fine_width, fine_width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(fine_width, n_out, 1),
        )
        nn.init.constant_(self.coarse.bias, PRIOR_LOGIT)
        nn.init.zeros_(self.fine[-1].bias)

    def forward(self, levels: list[Tensor], image: Tensor) -> Tensor:
        """Return pixel logits ``(B, n_out, H, W)`` at the image's size."""
        x = self.lateral[-1](levels[-1])  # (B, D, gh, gw)
        for i in range(len(levels) - 2, -1, -1):
            x = _resize(x, levels[i].shape[-2:]) + self.lateral[i](levels[i])
            x = self.smooth[i](x)  # (B, D, H / s_i, W / s_i)
        size = image.shape[-2:]
        fine = self.fine(torch.cat([image, _resize(self.squeeze(x), size)], dim=1))
        return _resize(self.coarse(x), size) + fine  # (B, n_out, H, W)


def _resize(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ScoreHead(nn.Module):
    """Image-level logits ``(B, 1 + K)``: top-k pooled map logits, scaled per channel, plus
    a correction from the mean patch token (global cues such as an overall colour shift
    that no single pixel shows)."""

    def __init__(self, token_width: int, hidden: int, n_out: int, topk_fraction: float):
        super().__init__()
        self.topk_fraction = topk_fraction
        self.map_scale = nn.Parameter(torch.ones(n_out))
        self.mlp = nn.Sequential(
            nn.LayerNorm(token_width),
            nn.Linear(token_width, hidden),
            nn.GELU(),
            nn.Linear(hidden, n_out),
        )
        # Zero correction at the start: the image score is its map's top-k until the tokens
        # have learned something the maps do not show.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, maps: Tensor, tokens: Tensor) -> Tensor:
        H, W = maps.shape[-2:]
        k = max(1, int(self.topk_fraction * H * W))
        topk = maps.flatten(2).topk(k, dim=-1).values.mean(-1)  # (B, 1+K)
        return topk * self.map_scale + self.mlp(tokens.mean(1))  # (B, 1+K)


class PartFusion(nn.Module):
    """The part's logit from the image logit and, when there is audio, the audio logit.

    A learned noisy-OR: the part is defective if the image *or* the (calibrated) audio
    says so, because some cracks are audible but not visible and must reject on their
    own. Without audio the part logit *is* the image logit; with a confidently clean
    tap (audio logit to -inf) it tends to the image logit too.
    """

    def __init__(self):
        super().__init__()
        self.audio_scale = nn.Parameter(torch.ones(()))
        self.audio_bias = nn.Parameter(torch.zeros(()))

    def forward(self, image_logit: Tensor, audio_logit: Tensor | None) -> Tensor:
        if audio_logit is None:
            return image_logit  # (B,)
        return noisy_or_logit(image_logit, audio_logit * self.audio_scale + self.audio_bias)


def noisy_or_logit(a: Tensor, b: Tensor) -> Tensor:
    """``logit(1 - (1 - sigmoid(a)) * (1 - sigmoid(b)))``, stable for any logits.

    With ``p = pa + pb * (1 - pa)`` and ``-log(1 - p) = softplus(a) + softplus(b)``:
    ``logit(p) = logaddexp(log pa, log pb + log(1 - pa)) + softplus(a) + softplus(b)``.
    """
    log_p = torch.logaddexp(F.logsigmoid(a), F.logsigmoid(b) - F.softplus(a))  # log p
    return log_p + F.softplus(a) + F.softplus(b)  # log p - log(1 - p)
