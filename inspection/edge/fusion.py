"""The fusion resampler on the edge: ONNX Runtime, numpy, no torch.

The edge graph runs per tile; the fusion runs once per part on the merged detection
(the patch tokens of every tile, the full-size maps), so it is a graph of its own,
``fusion.onnx`` (:mod:`inspection.export.fusion` writes it). Pooling the maps to the
resampler's ``g x g`` key grid happens here in numpy, before the graph: an adaptive max
pool over a full image of any size does not export well, and it is cheap.

>>> fusion = OnnxFusion("bundle/fusion.onnx")  # doctest: +SKIP
>>> fusion.fuse(detection).shape  # (B, N, D) float16, the payload  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from inspection.errors import ModelError
from inspection.export.runtime import open_session
from inspection.models.outputs import Detection

FUSION_FORMAT = "inspection.fusion-graph/1"


def _starts_ends(size: int, grid: int) -> list[tuple[int, int]]:
    # torch's adaptive pooling windows: [floor(i * size / g), ceil((i + 1) * size / g)).
    return [(i * size // grid, -(-(i + 1) * size // grid)) for i in range(grid)]


def pool_maps(maps: np.ndarray, grid: int) -> np.ndarray:
    """The resampler's map tokens: ``sigmoid`` then adaptive max pool to ``grid x grid``.

    Matches ``FusionResampler.map_tokens`` before its projection
    (``F.adaptive_max_pool2d(torch.sigmoid(maps), grid)``, flattened row-major).

    Parameters
    ----------
    maps : np.ndarray
        ``(B, 1 + K, H, W)`` map logits.
    grid : int
        Output grid side ``g``.

    Returns
    -------
    np.ndarray
        ``(B, g * g, 1 + K)`` float32 probabilities.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4:
        raise ValueError(f"maps must be (B, 1 + K, H, W), got shape {maps.shape}")
    batch, channels, height, width = maps.shape
    pooled = np.empty((batch, channels, grid, grid), dtype=np.float32)
    for i, (r0, r1) in enumerate(_starts_ends(height, grid)):
        for j, (c0, c1) in enumerate(_starts_ends(width, grid)):
            # sigmoid is monotonic: the max of the logits, then one sigmoid per cell.
            pooled[:, :, i, j] = maps[:, :, r0:r1, c0:c1].max(axis=(2, 3))
    pooled = 1.0 / (1.0 + np.exp(-pooled))
    return np.ascontiguousarray(pooled.reshape(batch, channels, grid * grid).transpose(0, 2, 1))


class OnnxFusion:
    """``fusion.onnx`` under ONNX Runtime: a detection in, the fused tokens out.

    Parameters
    ----------
    path : str | Path
        The graph written by :func:`inspection.export.fusion.export_fusion`.
    providers : list[str] | None
        Execution providers; default CPU.
    threads : int | None
        Intra-op threads; ``None`` lets ONNX Runtime decide.

    Attributes
    ----------
    config : dict
        The resampler's ``FusionConfig`` as a dict (``queries``, ``dim``, ``map_grid`` ...).

    Raises
    ------
    ModelError
        A missing file, or one that is not an exported fusion graph.
    """

    def __init__(
        self, path: str | Path, providers: list[str] | None = None, threads: int | None = None
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such ONNX file")
        self.session = open_session(self.path, providers, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != FUSION_FORMAT or "config" not in meta:
            raise ModelError(f"{self.path}: not a fusion graph (no {FUSION_FORMAT} metadata)")
        try:
            self.config: dict[str, Any] = json.loads(meta["config"])
            self.grid = int(self.config["map_grid"])
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"{self.path}: unusable fusion metadata ({exc})") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(
        self,
        patch_tokens: np.ndarray,
        maps: np.ndarray,
        audio_tokens: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fused tokens ``(B, N, D)`` as float32.

        Parameters
        ----------
        patch_tokens : np.ndarray
            ``(B, P, C)`` patch tokens (any number of patches or tiles).
        maps : np.ndarray
            ``(B, 1 + K, H, W)`` map logits at any size.
        audio_tokens : np.ndarray | None
            ``(B, T, C_a)``, or ``None`` without audio (no audio keys, as in torch).
        """
        patch_tokens = np.ascontiguousarray(patch_tokens, dtype=np.float32)
        batch = patch_tokens.shape[0]
        if audio_tokens is None:
            # Zero audio tokens add no keys: the same attention as the torch fusion without
            # audio (the graph concatenates an empty block).
            audio_tokens = np.zeros((batch, 0, self.config["audio_dim"]), dtype=np.float32)
        feeds = {
            "patch_tokens": patch_tokens,
            "map_tokens": pool_maps(maps, self.grid),
            "audio_tokens": np.ascontiguousarray(audio_tokens, dtype=np.float32),
        }
        return self.session.run(["fused"], feeds)[0]

    def fuse(self, detection: Detection) -> np.ndarray:
        """The float16 payload ``(B, N, D)`` of a detection, as ``ReportDecoder.fuse_detection``
        gives it in torch."""
        fused = self.run(detection.patch_tokens, detection.maps, detection.audio_tokens)
        return fused.astype(np.float16)
