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

from inspection.models.audio import audio_windows
from inspection.models.config import ModelConfig
from inspection.models.outputs import Detection, concat_detections
from inspection.models.preprocess import MAX_SIDE, PreprocessOptions, frame_size, preprocess
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
    def run(
        self,
        images: np.ndarray,
        mel: np.ndarray | None = None,
        frame_shape: np.ndarray | None = None,
    ) -> Detection:
        """One batch: ``images`` ``(B, C, S, S)`` normalised; ``mel`` ``(n_mels, F)`` for
        the whole batch, ``(B, n_mels, F)`` one per image, or None; ``frame_shape``
        ``(B, 2)`` the height and width of the frame each input was cut or squashed
        from (a normality model with shape families chooses by it; others ignore it)."""

    def detect(
        self,
        image: np.ndarray,
        audio: AudioClip | np.ndarray | None = None,
        frame_shape: tuple[int, int] | None = None,
    ) -> Detection:
        """Detect on one full image and its optional clip; maps at the image's size.
        ``frame_shape``: the ``(H, W)`` of the frame ``image`` was resized from, if it was
        (a normality model with shape families chooses by it; default: the image's).

        A clip longer than the model's (1 s) is scored in windows of that length
        (:func:`~inspection.models.audio.audio_windows`) and the detection is the one
        with the window whose audio logit is highest; a clip over
        :data:`~inspection.models.audio.MAX_AUDIO_SECONDS` raises ``InputError``.
        """
        options = self.preprocess_options
        tiles = preprocess(image, options)
        mel = None if audio is None else self._worst_window(audio, tiles.images[:1])
        frame = np.asarray(frame_size(frame_shape or tiles.layout.image_shape, options), np.float32)
        chunks = [
            self.run(batch, mel, np.repeat(frame[None], len(batch), axis=0))
            for batch in (
                tiles.images[i : i + self.batch_size]
                for i in range(0, len(tiles.images), self.batch_size)
            )
        ]
        return concat_detections(chunks).merge_tiles(tiles.layout, reduce=self.reduce)

    def _worst_window(self, audio: AudioClip | np.ndarray, tile: np.ndarray) -> np.ndarray:
        """The ``(n_mels, F)`` log-mel of the clip's window with the highest audio logit."""
        windows = audio_windows(audio, self.config.n_mels, self.config.n_audio_frames)
        if len(windows) == 1:
            return windows[0]
        # The part is judged on its worst-sounding window: a crack heard in any second of
        # the tap test rejects it, as a defect in any tile does (conservative). The audio
        # logit depends on the clip alone, so one tile per window finds that window; the
        # whole image then runs once, with it.
        logits = [
            self.run(np.repeat(tile, len(batch), axis=0), batch).audio_logit
            for batch in (
                windows[i : i + self.batch_size] for i in range(0, len(windows), self.batch_size)
            )
        ]
        if any(chunk is None for chunk in logits):
            raise ValueError(f"{type(self).__name__} returned no audio logit for a clip")
        # NaN counts as the worst (argmax picks it): the line then routes the part to review
        return windows[int(np.argmax(np.concatenate(logits)))]


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

    def run(
        self,
        images: np.ndarray,
        mel: np.ndarray | None = None,
        frame_shape: np.ndarray | None = None,
    ) -> Detection:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device)
            m = None
            if mel is not None:
                m = torch.from_numpy(np.asarray(mel, np.float32)).to(self.device)
                m = m.expand(len(x), *m.shape[-2:])  # (B, n_mels, F)
            if not self.config.is_normality or frame_shape is None:
                return self.model(x, m).numpy(self.config.classes)
            shape = torch.from_numpy(np.asarray(frame_shape, np.float32)).to(self.device)
            return self.model(x, m, shape).numpy(self.config.classes)
