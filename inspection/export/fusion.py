"""Export the report decoder's fusion resampler to ONNX (``fusion.onnx``).

The edge runs the resampler once per part on the merged detection, so that it sends
the cloud the fused tokens (a few KB) rather than the raw tokens and maps. The graph
takes the maps already pooled (:func:`inspection.edge.fusion.pool_maps`, numpy on the
edge): an adaptive max pool over a dynamic full-image size exports badly.

Inputs: ``patch_tokens (B, P, C)``, ``map_tokens (B, g*g, 1+K)`` and ``audio_tokens
(B, T, C_a)`` (``T`` may be 0: no audio). Output: ``fused (B, N, D)`` float32. Batch,
``P`` and ``T`` are dynamic; one self-contained file (``external_data=False``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from inspection.decoder.fusion import FusionResampler
from inspection.edge.fusion import FUSION_FORMAT, OnnxFusion
from inspection.models.outputs import Detection

# Largest |onnx - torch| accepted on the float32 fused tokens (LayerNorm output, O(1)).
FUSION_TOLERANCE = 1e-3
_EXAMPLE = {"batch": 2, "patches": 20, "frames": 6}  # > 1 each: a 0/1 would be specialised


class FusionGraph(nn.Module):
    """``FusionResampler`` on pooled map tokens; zero audio tokens mean no audio."""

    def __init__(self, fusion: FusionResampler):
        super().__init__()
        self.fusion = fusion

    def forward(self, patch_tokens: Tensor, map_tokens: Tensor, audio_tokens: Tensor) -> Tensor:
        f = self.fusion
        maps = f.map_proj(map_tokens) + f.map_pos + f.modality[2]  # (B, g*g, D)
        keys = [
            f.image_proj(patch_tokens) + f.modality[0],  # (B, P, D)
            f.audio_proj(audio_tokens) + f.modality[1],  # (B, T, D); T = 0 adds no key
            maps,
        ]
        kv = torch.cat(keys, dim=1)  # (B, S, D)
        q = f.queries.expand(kv.shape[0], -1, -1)  # (B, N, D)
        for block in f.blocks:
            q = block(q, kv)
        return f.ln_out(q)  # (B, N, D)


def export_fusion(fusion: FusionResampler, path: str | Path, opset: int | None = None) -> Path:
    """Write ``fusion`` (a float32 CPU copy in eval mode) to one ONNX file.

    Parameters
    ----------
    fusion : FusionResampler
        ``ReportDecoder.fusion``.
    path : str | Path
        The ``.onnx`` file (parent folders are created).
    opset : int | None
        ONNX opset; ``None`` takes the exporter's default.

    Returns
    -------
    Path
        The written file; its metadata carries the resampler's config.
    """
    import copy

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = fusion.config
    graph = FusionGraph(copy.deepcopy(fusion).float().cpu().eval()).eval()
    b, p, t = _EXAMPLE["batch"], _EXAMPLE["patches"], _EXAMPLE["frames"]
    args = (
        torch.randn(b, p, config.image_dim),
        torch.rand(b, config.map_grid**2, config.map_channels),
        torch.randn(b, t, config.audio_dim),
    )
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = {
        "patch_tokens": {0: batch, 1: torch.export.Dim("patches", min=1, max=1 << 20)},
        "map_tokens": {0: batch},
        "audio_tokens": {0: batch, 1: torch.export.Dim.DYNAMIC},
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*The axis name: batch will not be used")
        torch.onnx.export(
            graph,
            args,
            str(path),
            input_names=["patch_tokens", "map_tokens", "audio_tokens"],
            output_names=["fused"],
            dynamic_shapes=dynamic,
            opset_version=opset,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in {"format": FUSION_FORMAT, "config": json.dumps(config.to_dict())}.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


@dataclass(frozen=True)
class FusionParity:
    """How far ``fusion.onnx`` is from the torch resampler on the same detections.

    Attributes
    ----------
    max_abs_diff : float
        Largest ``|onnx - torch|`` over the float32 fused tokens.
    max_abs_diff_float16 : float
        The same over the float16 payloads (one float16 step apart at most when the
        float32 values agree).
    cases : int
        Detections compared.
    """

    max_abs_diff: float
    max_abs_diff_float16: float
    cases: int
    tolerance: float = FUSION_TOLERANCE

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def check_fusion_parity(
    fusion: FusionResampler, path: str | Path, detections: list[Detection]
) -> FusionParity:
    """Compare ``fusion.onnx`` at ``path`` with ``fusion`` on real detections.

    Parameters
    ----------
    fusion : FusionResampler
        The resampler the graph was exported from.
    path : str | Path
        ``fusion.onnx``.
    detections : list[Detection]
        Merged detections (any number of tiles, with or without audio).
    """
    import copy

    onnx_fusion = OnnxFusion(path)
    fusion = copy.deepcopy(fusion).float().cpu().eval()
    worst = worst16 = 0.0
    for det in detections:

        def t(a: np.ndarray | None) -> Tensor | None:
            return None if a is None else torch.as_tensor(a, dtype=torch.float32)

        with torch.no_grad():
            want = fusion(t(det.patch_tokens), t(det.maps), t(det.audio_tokens)).numpy()
        got = onnx_fusion.run(det.patch_tokens, det.maps, det.audio_tokens)
        worst = max(worst, float(np.abs(got - want).max()))
        half = got.astype(np.float16).astype(np.float32) - want.astype(np.float16)
        worst16 = max(worst16, float(np.abs(half).max()))
    return FusionParity(worst, worst16, len(detections))
