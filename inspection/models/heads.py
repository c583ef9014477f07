"""Detection heads: pixel maps from patch tokens plus a full-resolution stem, image-level
scores, and the image + audio fusion that gives the part's logit.

Map channel 0 is "anomalous" (any defect), channel ``1 + k`` is defect class ``k``. Every
output is an independent logit (multi-label: a part, or a pixel, can carry two classes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
    """Shallow convolutions on the raw image at strides 1, 2 and 4.

    The ViT sees 16 px patches; a 1-4 px scratch is a sub-patch detail. These skips give
    the decoder the pixel-accurate edges (U-Net style) so the maps stay sharp.
    """

    def __init__(self, in_chans: int, widths: tuple[int, int, int]):
        super().__init__()
        w1, w2, w4 = widths
        self.s1 = nn.Sequential(conv_block(in_chans, w1), conv_block(w1, w1))
        self.s2 = nn.Sequential(conv_block(w1, w2, stride=2), conv_block(w2, w2))
        self.s4 = nn.Sequential(conv_block(w2, w4, stride=2), conv_block(w4, w4))

    def forward(self, x: Tensor) -> list[Tensor]:
        f1 = self.s1(x)  # (B, w1, H, W)
        f2 = self.s2(f1)  # (B, w2, H/2, W/2)
        f4 = self.s4(f2)  # (B, w4, H/4, W/4)
        return [f1, f2, f4]


class SegmentationHead(nn.Module):
    """Per-patch logits from tokens, refined to pixel maps through the stem's skips.

    ``maps = upsample(patch_logits) + decoder(tokens, skips)``: the tokens decide *what*
    (per patch), the decoder adds *where exactly* at full resolution.
    """

    def __init__(self, token_width: int, width: int, stem_widths: tuple[int, int, int], n_out: int):
        super().__init__()
        w1, w2, w4 = stem_widths
        self.proj = nn.Sequential(
            nn.LayerNorm(token_width), nn.Linear(token_width, width), nn.GELU()
        )
        self.patch = nn.Conv2d(width, n_out, 1)
        self.up4 = conv_block(width + w4, w4)
        self.up2 = conv_block(w4 + w2, w2)
        self.up1 = conv_block(w2 + w1, w1)
        self.out = nn.Conv2d(w1, n_out, 1)
        nn.init.constant_(self.patch.bias, PRIOR_LOGIT)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, tokens: Tensor, grid: tuple[int, int], skips: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Return pixel maps ``(B, n_out, H, W)`` and patch logits ``(B, n_out, gh, gw)``."""
        B = tokens.shape[0]
        x = self.proj(tokens).transpose(1, 2).reshape(B, -1, *grid)  # (B, D, gh, gw)
        patch_logits = self.patch(x)  # (B, n_out, gh, gw)
        f1, f2, f4 = skips
        for block, skip in ((self.up4, f4), (self.up2, f2), (self.up1, f1)):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))  # (B, w_s, H/s, W/s), s = skip stride
        coarse = F.interpolate(
            patch_logits, size=f1.shape[-2:], mode="bilinear", align_corners=False
        )
        return coarse + self.out(x), patch_logits  # (B, n_out, H, W), (B, n_out, gh, gw)


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
