"""The fusion resampler: a few learned queries read image, audio and defect maps.

Perceiver / Q-Former style: ``N`` learned queries cross-attend to the keys of every
modality at once (image patch tokens, audio frame tokens when there are any, and the
defect maps pooled to a small grid), then refine by self-attention. Whatever the number
of patches (tiles) or audio frames, the output is ``(B, N, D)``: a fixed payload of a
few KB that the edge sends to the cloud decoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inspection.fields import kind_problems, unknown_fields

PAYLOAD_DTYPE_BYTES = 2  # float16 on the wire


@dataclass(frozen=True)
class FusionConfig:
    """Shape of the resampler.

    Attributes
    ----------
    image_dim, audio_dim : int
        Width ``C`` of the detection model's patch tokens and ``C_a`` of its audio tokens.
    map_channels : int
        ``1 + K`` channels of the defect maps.
    dim : int
        Width ``D`` of the fused tokens.
    queries : int
        Number ``N`` of fused tokens.
    layers, heads : int
        Resampler blocks and attention heads.
    map_grid : int
        The maps are pooled to ``map_grid x map_grid`` key tokens.
    """

    image_dim: int = 32
    audio_dim: int = 32
    map_channels: int = 7
    dim: int = 64
    queries: int = 8
    layers: int = 1
    heads: int = 4
    map_grid: int = 4

    def __post_init__(self) -> None:
        problems = kind_problems(self)
        if not problems:
            sizes = {k: v for k, v in asdict(self).items() if k != "layers"}
            problems = [f"{k} must be >= 1" for k, v in sizes.items() if v < 1]
            problems += ["layers must be >= 0"] if self.layers < 0 else []
        if not problems and self.dim % self.heads:
            problems.append(f"dim {self.dim} not divisible by heads {self.heads}")
        if problems:
            raise ValueError("fusion config: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        unknown = unknown_fields(cls, data)
        if unknown:
            raise ValueError(f"unknown fusion config fields: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def payload_bytes(config: FusionConfig, batch: int = 1) -> int:
    """Bytes of the fused tokens of ``batch`` parts sent as float16."""
    return batch * config.queries * config.dim * PAYLOAD_DTYPE_BYTES


class ResamplerBlock(nn.Module):
    """Cross-attention to the inputs, self-attention among queries, MLP; pre-norm."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln_q = nn.LayerNorm(dim)
        self.ln_kv = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_self = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, q: Tensor, kv: Tensor) -> Tensor:
        kv = self.ln_kv(kv)  # (B, S, D)
        x = self.ln_q(q)
        q = q + self.cross(x, kv, kv, need_weights=False)[0]  # (B, N, D)
        x = self.ln_self(q)
        q = q + self.attn(x, x, x, need_weights=False)[0]  # (B, N, D)
        return q + self.mlp(self.ln_mlp(q))  # (B, N, D)


class FusionResampler(nn.Module):
    """``N`` learned queries over image, audio and map tokens -> ``(B, N, D)``."""

    def __init__(self, config: FusionConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.queries = nn.Parameter(torch.randn(config.queries, d) * 0.02)
        self.image_proj = nn.Linear(config.image_dim, d)
        self.audio_proj = nn.Linear(config.audio_dim, d)
        self.map_proj = nn.Linear(config.map_channels, d)
        # Patch and audio tokens carry their encoders' positions; pooled maps need theirs.
        self.map_pos = nn.Parameter(torch.randn(config.map_grid**2, d) * 0.02)
        self.modality = nn.Parameter(torch.randn(3, d) * 0.02)  # image, audio, map
        self.blocks = nn.ModuleList(ResamplerBlock(d, config.heads) for _ in range(config.layers))
        self.ln_out = nn.LayerNorm(d)

    def forward(
        self, patch_tokens: Tensor, maps: Tensor, audio_tokens: Tensor | None = None
    ) -> Tensor:
        """Fuse one batch.

        Parameters
        ----------
        patch_tokens : Tensor
            ``(B, N_p, C)`` image patch tokens (any number of patches or tiles).
        maps : Tensor
            ``(B, 1 + K, H, W)`` defect-map logits.
        audio_tokens : Tensor | None
            ``(B, T, C_a)`` audio tokens, or ``None`` without audio.

        Returns
        -------
        Tensor
            ``(B, N, D)`` fused tokens.
        """
        keys = [self.image_proj(patch_tokens) + self.modality[0]]  # (B, N_p, D)
        if audio_tokens is not None:
            keys.append(self.audio_proj(audio_tokens) + self.modality[1])  # (B, T, D)
        keys.append(self.map_tokens(maps))  # (B, g*g, D)
        kv = torch.cat(keys, dim=1)  # (B, S, D)
        q = self.queries.expand(kv.shape[0], -1, -1)  # (B, N, D)
        for block in self.blocks:
            q = block(q, kv)
        return self.ln_out(q)  # (B, N, D)

    def map_tokens(self, maps: Tensor) -> Tensor:
        g = self.config.map_grid
        # Max-pool probabilities: a 2 px scratch must survive pooling to a 4x4 grid.
        pooled = F.adaptive_max_pool2d(torch.sigmoid(maps), g)  # (B, 1+K, g, g)
        tokens = pooled.flatten(2).transpose(1, 2)  # (B, g*g, 1+K)
        return self.map_proj(tokens) + self.map_pos + self.modality[2]  # (B, g*g, D)
