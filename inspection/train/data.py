"""Training batches: good images (and labelled defects where the data has them) with
anomalies synthesised on the fly, plus tap-test audio with synthesised audio defects.

Images are held in memory at the resolution inference tiles them at (the same
:func:`~inspection.models.preprocess.plan_tiles` policy), and training crops are tiles
of that size, so the model sees defects at the scale it will meet them. A batch is a
pure function of ``(seed, step)``: training is deterministic and resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from inspection.datasets import Dataset, Sample
from inspection.io import InputError, read_audio, read_image, read_mask, to_uint8_rgb
from inspection.models.audio import audio_to_mel
from inspection.models.preprocess import PreprocessOptions, normalize, plan_tiles, resize_pixels
from inspection.train.anomalies import estimate_foreground, synthesise_anomaly
from inspection.types import AUDIO_SAMPLE_RATE


@dataclass(frozen=True)
class Item:
    """One training image at working resolution, with what is known about it."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray | None  # (H, W) bool for a labelled defect
    defect_class: str | None  # labelled class, None for good
    audio: np.ndarray | None  # (N,) float32 at 16 kHz
    path: str
    audio_anomaly: bool = False  # the tap test rings wrong (e.g. a crack, even internal)
    frame_shape: tuple[int, int] | None = None  # (H, W) as read, before any resize


@dataclass(frozen=True)
class Batch:
    images: np.ndarray  # (B, C, S, S) float32 normalised
    maps: np.ndarray  # (B, 1+K, S, S) float32 targets
    class_weight: np.ndarray  # (B, 1, S, S) float32: 0 where the class is unknown
    image_labels: np.ndarray  # (B,) float32
    class_labels: np.ndarray  # (B, K) float32
    class_known: np.ndarray  # (B,) float32: 0 for a generic anomaly
    mel: np.ndarray | None  # (B, n_mels, F) float32
    audio_labels: np.ndarray | None  # (B,) float32


def load_items(samples: list[Sample], options: PreprocessOptions, desc: str) -> list[Item]:
    """Decode samples at working resolution; unreadable files are skipped with a note."""
    items = []
    for sample in tqdm(samples, desc=desc, unit="img", leave=False, mininterval=2.0):
        try:
            items.append(_load_item(sample, options))
        except InputError as exc:
            tqdm.write(f"skipped {sample.image}: {exc}")
    return items


def _load_item(sample: Sample, options: PreprocessOptions) -> Item:
    image = to_uint8_rgb(read_image(sample.image))
    frame = (int(image.shape[0]), int(image.shape[1]))
    work = plan_tiles(frame, options).work_shape
    if work != image.shape[:2]:
        image = resize_pixels(image, work)  # as preprocess resizes it at inference
    mask = None
    if sample.mask is not None and not sample.is_good:
        mask = read_mask(sample.mask)
        mask = cv2.resize(mask.astype(np.uint8), work[::-1], interpolation=cv2.INTER_NEAREST) > 0
    audio = None
    if sample.audio is not None:
        audio = read_audio(sample.audio).samples
    cls = None if sample.is_good else sample.label
    audible = bool(sample.attributes.get("audio_anomaly", False))
    return Item(image, mask, cls, audio, str(sample.image), audible, frame)


def training_samples(dataset: Dataset, normal_only: bool) -> tuple[list[Sample], list[Sample]]:
    """(good, labelled defective) samples for training: the train split, or all if none."""
    pool = [s for s in dataset.samples if s.split in ("train", None)]
    good = [s for s in pool if s.is_good]
    labelled = [] if normal_only else [s for s in pool if not s.is_good and s.mask is not None]
    return good, labelled


class BatchMaker:
    """Makes batch ``step`` of a run deterministically from the seed."""

    def __init__(
        self,
        good: list[Item],
        labelled: list[Item],
        classes: tuple[str, ...],
        options: PreprocessOptions,
        n_mels: int,
        n_frames: int,
        seed: int,
        anomaly_prob: float = 0.5,
    ):
        if not good:
            raise ValueError("no good training images")
        self.good, self.labelled, self.classes = good, labelled, classes
        self.options, self.n_mels, self.n_frames = options, n_mels, n_frames
        self.seed, self.anomaly_prob = seed, anomaly_prob
        self.with_audio = all(item.audio is not None for item in good + labelled)
        # Anomalies on the part, not on the conveyor behind it (None for textures, and for
        # images of different sizes, where no one outline fits all).
        same = _same_shapes(good)
        self.foreground = estimate_foreground([it.image for it in good[:32]]) if same else None

    def batch(self, step: int, batch_size: int) -> Batch:
        rng = np.random.default_rng([self.seed, step])
        rows = [self._row(rng) for _ in range(batch_size)]
        images, maps, weight, labels, class_labels, known, mel, audio_labels = zip(
            *rows, strict=True
        )
        return Batch(
            images=normalize(
                np.stack(images).astype(np.float32) / 255.0, self.options.mean, self.options.std
            ),
            maps=np.stack(maps),
            class_weight=np.stack(weight),
            image_labels=np.array(labels, np.float32),
            class_labels=np.stack(class_labels),
            class_known=np.array(known, np.float32),
            mel=np.stack(mel) if self.with_audio else None,
            audio_labels=np.array(audio_labels, np.float32) if self.with_audio else None,
        )

    def _row(self, rng: np.random.Generator):
        k = len(self.classes)
        size = self.options.image_size
        maps = np.zeros((1 + k, size, size), np.float32)
        weight = np.ones((1, size, size), np.float32)
        class_labels = np.zeros(k, np.float32)
        share = len(self.labelled) / (len(self.labelled) + len(self.good))
        pool = self.labelled if rng.random() < share else self.good
        item = pool[int(rng.integers(len(pool)))]
        image, (y, x) = self._crop(rng, item.image)
        mask, cls = None, None
        if item.mask is not None:
            mask, cls = item.mask[y : y + size, x : x + size], item.defect_class
        elif rng.random() < self.anomaly_prob:
            anomaly = synthesise_anomaly(rng, image, foreground=self._foreground_at(y, x))
            image, mask, cls = anomaly.image, anomaly.mask, anomaly.defect_class
        known = 1.0
        if mask is not None and mask.any():
            maps[0] = mask
            if cls in self.classes:
                maps[1 + self.classes.index(cls)] = mask
                class_labels[self.classes.index(cls)] = 1.0
            else:  # a generic anomaly teaches "anomalous", not which class
                weight[0][mask] = 0.0
                known = 0.0
        label = float(maps[0].any())
        mel, audio_label = None, 0.0
        if self.with_audio:
            samples, audio_label = item.audio, float(item.audio_anomaly)
            if not item.audio_anomaly and rng.random() < 0.3:
                samples, audio_label = audio_anomaly(rng, samples), 1.0
            mel = audio_to_mel(samples, self.n_mels, self.n_frames)
        return image, maps, weight, label, class_labels, known, mel, audio_label

    def _foreground_at(self, y: int, x: int) -> np.ndarray | None:
        if self.foreground is None:
            return None
        size = self.options.image_size
        return self.foreground[y : y + size, x : x + size]

    def _crop(self, rng: np.random.Generator, image: np.ndarray):
        size = self.options.image_size
        h, w = image.shape[:2]
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        return image[y : y + size, x : x + size], (y, x)


def _same_shapes(items: list[Item]) -> bool:
    return len({it.image.shape for it in items}) == 1


def audio_anomaly(rng: np.random.Generator, samples: np.ndarray) -> np.ndarray:
    """A tap that rings like a cracked part: lower modes, faster decay, sometimes a rattle.

    A crack lowers the part's stiffness (modes drop a few per cent) and adds friction at
    its faces (more damping); loose fragments rattle.
    """
    n = len(samples)
    stretch = 1.0 + rng.uniform(0.03, 0.12)  # playing slower lowers every mode
    positions = np.arange(n) / stretch
    out = np.interp(positions, np.arange(n), samples).astype(np.float32)
    onset = int(np.argmax(np.abs(out) > 0.3 * np.abs(out).max()))
    t = np.clip(np.arange(n) - onset, 0, None) / AUDIO_SAMPLE_RATE
    out *= np.exp(-rng.uniform(5, 30) * t).astype(np.float32)
    if rng.random() < 0.4:
        start = onset + int(rng.uniform(0.01, 0.1) * AUDIO_SAMPLE_RATE)
        length = int(rng.uniform(0.02, 0.08) * AUDIO_SAMPLE_RATE)
        burst = rng.normal(0, 1, length) * np.hanning(length) * 0.2 * np.abs(samples).max()
        out[start : start + length] += burst[: max(0, n - start)].astype(np.float32)
    return out
