"""The detection model's output as numpy: :class:`Detection`, torch-free.

The same object comes from the torch model (``DetectionOutput.numpy()``) and from the
ONNX Runtime edge runner, so the edge runtime, measurement and the report decoder
consume one type whichever produced it. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from inspection.models.preprocess import TileLayout, stitch_tiles


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, float32. NaN stays NaN, silently: a broken score is for the
    caller to route to review, not a warning in the log.

    ``1 / (1 + exp(-x))`` is exact to float32 rounding over the whole range: for very
    negative ``x`` ``exp`` overflows to inf and the result is 0, the float32 answer
    (0.16 ms against 1.46 for the ``logaddexp`` form on a 256 x 256 map).
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Detection:
    """What the detection model says about a batch of images, as numpy arrays.

    The fields are those of the torch ``DetectionOutput``, as logits, so nothing is lost
    and tiles can be merged in logit space. Probabilities are the ``*_score`` /
    ``*_map`` properties: the image, class, audio and part scores and the anomaly map are
    **sigmoids** of their logits, independent probabilities (image class scores are
    multi-label: a part may show a scratch and contamination); a pixel's class is one of
    K (``class_maps``). Nothing here is thresholded: thresholds are calibrated and
    versioned elsewhere.

    Attributes
    ----------
    maps : np.ndarray
        ``(B, 1 + K, H, W)`` float32 logits; channel 0 "anomalous" (a sigmoid), channels
        ``1 + k`` the class of a defect pixel (a softmax over the K of them).
    image_logit : np.ndarray
        ``(B,)`` the image is anomalous.
    class_logits : np.ndarray
        ``(B, K)`` the image shows class k.
    audio_logit : np.ndarray | None
        ``(B,)`` the tap test is anomalous; ``None`` without audio.
    part_logit : np.ndarray
        ``(B,)`` the part is defective (image and audio fused; the image logit when
        there is no audio).
    patch_tokens : np.ndarray
        ``(B, N, C)`` image patch tokens (for the report decoder's resampler).
    audio_tokens : np.ndarray | None
        ``(B, T, C_a)`` audio tokens; ``None`` without audio.
    grid : tuple[int, int]
        ``(gh, gw)`` patch grid of one model input (``N = gh * gw`` for one tile).
    classes : tuple[str, ...]
        Defect class names, ``K`` of them (empty when unknown).
    notes : tuple[tuple[str, ...], ...]
        Per image, what the detector decided that its maps no longer show (a region of
        the background beside the part, dropped); the part's record carries them
        (:func:`~inspection.pipeline.decide`). Empty: nothing to note.
    """

    maps: np.ndarray
    image_logit: np.ndarray
    class_logits: np.ndarray
    audio_logit: np.ndarray | None
    part_logit: np.ndarray
    patch_tokens: np.ndarray
    audio_tokens: np.ndarray | None
    grid: tuple[int, int]
    classes: tuple[str, ...] = ()
    notes: tuple[tuple[str, ...], ...] = ()

    def __len__(self) -> int:
        return int(self.maps.shape[0])

    @cached_property  # read by measurement, the rules' evidence and the overlays alike
    def anomaly_map(self) -> np.ndarray:
        """``(B, H, W)`` probability that each pixel is defective."""
        return sigmoid(self.maps[:, 0])

    @cached_property
    def class_maps(self) -> np.ndarray:
        """``(B, K, H, W)`` probability that each pixel is a defect of class k: the
        anomaly probability times the softmax of the class channels (which class, given
        that it is a defect)."""
        logits = self.maps[:, 1:]
        if logits.shape[1] == 0:  # a detector that names no classes
            return logits.astype(np.float32)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (self.anomaly_map[:, None] * z / z.sum(axis=1, keepdims=True)).astype(np.float32)

    @property
    def image_score(self) -> np.ndarray:
        """``(B,)`` probability that the image shows a defect."""
        return sigmoid(self.image_logit)

    @property
    def class_scores(self) -> np.ndarray:
        """``(B, K)`` probability that the image shows class k."""
        return sigmoid(self.class_logits)

    @property
    def audio_score(self) -> np.ndarray | None:
        """``(B,)`` probability that the tap test is anomalous, or ``None``."""
        return None if self.audio_logit is None else sigmoid(self.audio_logit)

    @property
    def part_score(self) -> np.ndarray:
        """``(B,)`` probability that the part is defective."""
        return sigmoid(self.part_logit)

    def class_score_dict(self, index: int = 0) -> dict[str, float]:
        """``{class: probability}`` for one image of the batch (needs ``classes``)."""
        return dict(zip(self.classes, self.class_scores[index].tolist(), strict=True))

    def merge_tiles(self, layout: TileLayout, reduce: str = "max") -> Detection:
        """Merge the detections of one image's tiles (the batch) into one image.

        Maps are stitched back to the full image (``reduce`` in overlaps: ``"max"`` or
        ``"mean"``); image, class and part logits take the max over tiles (a defect in
        any tile is a defect of the image); patch tokens of all tiles are concatenated
        to ``(1, T * N, C)``; audio, the same for every tile, is taken once.
        """
        if len(self) != len(layout.boxes):
            raise ValueError(f"{len(self)} detections for {len(layout.boxes)} tiles")
        maps = stitch_tiles(self.maps, layout, reduce=reduce)  # (1+K, H, W)
        first = slice(0, 1)
        return replace(
            self,
            maps=maps[None],
            image_logit=self.image_logit.max(0, keepdims=True),
            class_logits=self.class_logits.max(0, keepdims=True),
            audio_logit=None if self.audio_logit is None else self.audio_logit[first],
            part_logit=self.part_logit.max(0, keepdims=True),
            patch_tokens=self.patch_tokens.reshape(1, -1, self.patch_tokens.shape[-1]),
            audio_tokens=None if self.audio_tokens is None else self.audio_tokens[first],
        )

    def without_audio(self) -> Detection:
        """The same detection as if no audio had been given (part logit = image logit)."""
        return replace(self, audio_logit=None, audio_tokens=None, part_logit=self.image_logit)


def concat_detections(detections: list[Detection]) -> Detection:
    """Join detections of consecutive batches into one batch."""
    if not detections:
        raise ValueError("no detections to join")

    def cat(name: str) -> np.ndarray | None:
        parts = [getattr(d, name) for d in detections]
        return None if any(p is None for p in parts) else np.concatenate(parts, axis=0)

    names = ("maps", "image_logit", "class_logits", "audio_logit", "part_logit")
    arrays = {name: cat(name) for name in (*names, "patch_tokens", "audio_tokens")}
    return replace(detections[0], **arrays)
