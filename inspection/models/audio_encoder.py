"""Audio encoder: whisper's ``AudioEncoder`` sized to the clip, and an audio anomaly head.

Whisper's encoder asserts that it sees exactly ``2 * n_ctx`` mel frames and is normally
fed 30 s; here ``n_ctx`` is sized to the clip (50 tokens for 1 s), so a tap test costs
1/30 of a whisper pass. Pretrained weights come from a local whisper ``.pt`` file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from whisper.model import AudioEncoder as WhisperAudioEncoder

from inspection.models.config import ModelConfig


class AudioEncoder(nn.Module):
    """Log-mel ``(B, n_mels, 2 * n_ctx)`` to audio tokens ``(B, n_ctx, C)`` and a logit ``(B,)``.

    Parameters
    ----------
    config : ModelConfig
        ``n_mels``, ``n_audio_ctx``, ``audio_width``, ``audio_heads``, ``audio_layers``.
    load_pretrained : bool
        Read ``config.pretrained_audio`` if it is set.
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True):
        super().__init__()
        self.n_frames = config.n_audio_frames
        self.encoder = WhisperAudioEncoder(
            config.n_mels,
            config.n_audio_ctx,
            config.audio_width,
            config.audio_heads,
            config.audio_layers,
        )
        self.head = AudioHead(config.audio_width, config.head_width)
        self.width = config.audio_width
        if load_pretrained and config.pretrained_audio:
            self.load_pretrained(config.pretrained_audio, config)

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """Encode ``mel`` ``(B, n_mels, F)``; any ``F`` is cropped or padded to fit."""
        mel = fit_frames(mel.float(), self.n_frames)  # (B, n_mels, 2*n_ctx); whisper asserts it
        tokens = self.encoder(mel)  # (B, T, C)
        return tokens, self.head(tokens)  # (B, T, C), (B,)

    def load_pretrained(self, path: str | Path, config: ModelConfig) -> None:
        """Load the encoder of a whisper checkpoint (``.pt`` with ``dims`` and
        ``model_state_dict``, or a bare encoder state dict) from a local file.

        Whisper's position embedding is sinusoidal and position ``t`` does not depend on
        the length, so the first ``n_ctx`` rows of the 30 s table are exactly ours.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained audio encoder {path}: no such file")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        _check_dims(checkpoint.get("dims"), config, path)
        state = checkpoint.get("model_state_dict", checkpoint)
        if any(k.startswith("encoder.") for k in state):
            state = {
                k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")
            }
        n_ctx = self.encoder.positional_embedding.shape[0]
        state["positional_embedding"] = state["positional_embedding"][:n_ctx]
        try:
            result = self.encoder.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(
                f"{path}: not a whisper encoder of the configured shape: {exc}"
            ) from exc
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{path}: not a whisper encoder of the configured shape; "
                f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )


class AudioHead(nn.Module):
    """Audio anomaly logit from mean- and max-pooled tokens (a short click and a changed
    ring-down both count)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(2 * width)
        self.fc = nn.Linear(2 * width, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, tokens: Tensor) -> Tensor:
        pooled = torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)  # (B, 2C)
        return self.out(F.gelu(self.fc(self.norm(pooled)))).squeeze(-1)  # (B,)


def fit_frames(mel: Tensor, n_frames: int) -> Tensor:
    """Crop or pad ``mel`` ``(B, n_mels, F)`` to ``n_frames`` along time.

    Padding uses each clip's minimum, the log-mel floor that zero-padded audio maps to.
    """
    frames = mel.shape[-1]
    if frames > n_frames:
        return mel[..., :n_frames]
    if frames < n_frames:
        floor = mel.amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        pad = floor.expand(mel.shape[0], mel.shape[1], n_frames - frames)
        return torch.cat([mel, pad], dim=-1)  # (B, n_mels, n_frames)
    return mel


def _check_dims(dims: dict | None, config: ModelConfig, path: Path) -> None:
    if not dims:
        return
    want = {
        "n_mels": config.n_mels,
        "n_audio_state": config.audio_width,
        "n_audio_head": config.audio_heads,
        "n_audio_layer": config.audio_layers,
    }
    wrong = {k: (dims.get(k), v) for k, v in want.items() if dims.get(k) != v}
    if wrong:
        found = ", ".join(f"{k}={a} (config {b})" for k, (a, b) in wrong.items())
        raise ValueError(f"{path}: whisper checkpoint does not fit the config: {found}")
