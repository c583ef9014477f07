"""Detectors: one full image (any size) and its clip in, one full-size Detection out.

:class:`TiledDetector` holds what every backend shares and imports no torch: cut the
image into model tiles, run them in batches, stitch the maps back. A backend only says
how to run one batch (:class:`TorchDetector` here; the ONNX Runtime one lives in
:mod:`inspection.export.runtime`).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from inspection.models.audio import audio_to_mel
from inspection.models.config import ModelConfig
from inspection.models.outputs import Detection, concat_detections
from inspection.models.preprocess import MAX_SIDE, PreprocessOptions, preprocess
from inspection.types import AudioClip


class TiledDetector(abc.ABC):
    """Runs a model over the tiles of one image.

    Subclasses set ``config`` and ``version`` and implement :meth:`run`.
    """

    config: ModelConfig
    version: str
    metadata: dict[str, Any]
    batch_size: int = 8
    reduce: str = "max"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    @property
    def preprocess_options(self) -> PreprocessOptions:
        """The config's, with the ``max_side`` the model was trained at (if any)."""
        return PreprocessOptions.from_config(self.config, max_side=self.metadata.get(MAX_SIDE))

    @abc.abstractmethod
    def run(self, images: np.ndarray, mel: np.ndarray | None = None) -> Detection:
        """One batch: ``images`` ``(B, C, S, S)`` normalised, ``mel`` ``(n_mels, F)`` or None."""

    def detect(self, image: np.ndarray, audio: AudioClip | np.ndarray | None = None) -> Detection:
        """Detect on one full image and its optional clip; maps at the image's size."""
        tiles = preprocess(image, self.preprocess_options)
        mel = None
        if audio is not None:
            mel = audio_to_mel(audio, self.config.n_mels, self.config.n_audio_frames)
        chunks = [
            self.run(tiles.images[i : i + self.batch_size], mel)
            for i in range(0, len(tiles.images), self.batch_size)
        ]
        return concat_detections(chunks).merge_tiles(tiles.layout, reduce=self.reduce)


class TorchDetector(TiledDetector):
    """A :class:`~inspection.models.model.DefectModel` in eval mode, without gradients."""

    def __init__(self, model: Any, device: str | None = None):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.config = model.config
        self.device = device or next(model.parameters()).device
        self.version = model.model_version or "unsaved"

    @property
    def metadata(self) -> dict[str, Any]:
        return self.model.metadata

    def run(self, images: np.ndarray, mel: np.ndarray | None = None) -> Detection:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
            m = None
            if mel is not None:
                m = torch.from_numpy(np.asarray(mel, np.float32)).to(self.device)
                m = m.expand(len(x), *m.shape[-2:])  # (B, n_mels, F)
            return self.model(x, m).numpy(self.config.classes)
