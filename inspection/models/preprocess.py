"""Image preprocessing, torch-free (numpy + OpenCV): any station image to model inputs.

Policy
------
- **Pixels**: uint8 is divided by 255 and uint16 by 65535 (16-bit precision is kept, no
  auto-stretch: a stretch would hide a global colour deviation and differ between
  parts); floats are taken as ``[0, 1]``. Alpha is dropped. Gray is replicated to RGB
  for 3-channel models; RGB becomes luma for 1-channel models. Then per-channel
  ``(x - mean) / std`` and channels first.
- **Size**: the model sees ``S x S`` (``config.image_size``). An image whose short side
  is under ``S`` is first scaled up (aspect kept) so the short side is ``S``. Anything
  larger is **tiled at native resolution**: overlapping ``S x S`` tiles (``overlap``
  fraction, tiles spread evenly, the last one flush with the edge) cover the whole
  image, so a 2 px scratch on a 4000 px frame stays 2 px instead of vanishing in a
  down-scale. ``max_side`` optionally caps very large frames (scaled down first) to
  bound the tile count; ``inspection train --max-side`` sets it for a model (kept in its
  metadata under :data:`MAX_SIDE`, so every detector of the model uses it). An
  ``S x S`` image is one tile.
- **Back**: :func:`stitch_tiles` puts per-tile maps back into a map of the original
  image (mean or max where tiles overlap, then undoing any scaling).
  :func:`resize_image` is the alternative whole-frame path (squash to ``S x S``), for
  training or where fine detail does not matter; ``squash`` options (a model config's
  ``resize: squash``, as PaDiM's per-position statistics need) make the whole frame the
  one tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inspection.io import InputError
from inspection.models.config import ModelConfig

MAX_SIDE = "max_side"  # a model's metadata key: the max_side it was trained at


@dataclass(frozen=True)
class PreprocessOptions:
    """How images become model inputs (see the module policy)."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_chans: int = 3
    overlap: float = 0.25
    max_side: int | None = None
    squash: bool = False  # the whole frame resized to one S x S input instead of tiles

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), not {self.overlap}")
        if self.max_side is not None and self.max_side < self.image_size:
            raise ValueError(
                f"max_side {self.max_side} is under the model's tile ({self.image_size} px): "
                "it must be at least that"
            )

    @classmethod
    def from_config(cls, config: ModelConfig, **changes: Any) -> PreprocessOptions:
        """Options for a model config (``overlap`` and ``max_side`` may be changed)."""
        return cls(
            image_size=config.image_size,
            mean=config.image_mean,
            std=config.image_std,
            in_chans=config.in_chans,
            squash=config.resize == "squash",
            **changes,
        )


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one image lie.

    Attributes
    ----------
    image_shape : tuple[int, int]
        ``(H, W)`` of the original image.
    work_shape : tuple[int, int]
        ``(H', W')`` of the image the tiles were cut from (scaled when the original was
        smaller than a tile, or larger than ``max_side``; else equal to ``image_shape``).
    boxes : tuple[tuple[int, int, int, int], ...]
        ``(x0, y0, x1, y1)`` of each tile in work pixels, ``x1 - x0 == tile_size``.
    tile_size : int
        ``S``.
    """

    image_shape: tuple[int, int]
    work_shape: tuple[int, int]
    boxes: tuple[tuple[int, int, int, int], ...]
    tile_size: int

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass(frozen=True)
class Tiles:
    """Model inputs for one image: ``images`` ``(T, C, S, S)`` float32, and their layout."""

    images: np.ndarray
    layout: TileLayout


def to_float(image: np.ndarray, in_chans: int = 3) -> np.ndarray:
    """Any image to ``(H, W, in_chans)`` float32 in ``[0, 1]`` (see the module policy).

    Raises
    ------
    InputError
        Unsupported shape, empty image, or non-finite float pixels.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[:, :, :3] if image.shape[2] == 4 else image
    elif image.ndim != 2:
        raise InputError(f"image of shape {image.shape}: expected (H, W) or (H, W, 1|3|4)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError("empty image")
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) / 65535.0
    elif image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise InputError("image has NaN or infinite pixels")
        out = np.clip(image, 0.0, 1.0).astype(np.float32)
    else:
        raise InputError(f"unsupported image dtype {image.dtype}")
    if out.ndim == 2:
        out = out[:, :, None]
    if in_chans == 3 and out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif in_chans == 1 and out.shape[2] == 3:
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.ascontiguousarray(out)  # (H, W, in_chans)


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(..., H, W, C)`` float in ``[0, 1]`` to normalised ``(..., C, H, W)`` float32."""
    mean_ = np.asarray(mean, dtype=np.float32)
    std_ = np.asarray(std, dtype=np.float32)
    out = (image - mean_) / std_  # (..., H, W, C)
    return np.ascontiguousarray(np.moveaxis(out, -1, -3), dtype=np.float32)  # (..., C, H, W)


def resize_image(image: np.ndarray, options: PreprocessOptions) -> np.ndarray:
    """Whole frame squashed to one normalised ``(C, S, S)`` input (no tiling)."""
    x = to_float(image, options.in_chans)
    x = resize_pixels(x, (options.image_size, options.image_size))  # (S, S, C)
    return normalize(x, options.mean, options.std)  # (C, S, S)


def resize_pixels(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An image (pixels, not labels) resized to ``shape`` ``(H, W)``, any dtype and channels.

    Area interpolation when the image shrinks, bilinear when it grows: the one rule for
    every path that resizes pixels, so that a model is fitted on images resized exactly
    as the ones it later scores (area interpolation enlarges like nearest neighbour,
    blocky; a model fitted on those scored bilinear enlargements 2x higher, see
    benchmarks/README.md).
    """
    if tuple(image.shape[:2]) == tuple(shape):
        return image
    h, w = shape
    if image.ndim == 3 and image.shape[2] > 4:  # OpenCV resizes at most 4 channels at once
        return np.stack([resize_pixels(image[:, :, i], shape) for i in range(image.shape[2])], -1)
    shrinks = h * w < image.shape[0] * image.shape[1]
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)
    return out.reshape(h, w, *image.shape[2:])


def tile_positions(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``size`` covering ``length``: spread evenly, each step at
    most ``size * (1 - overlap)``, the first at 0 and the last flush with the end."""
    if length <= size:
        return [0]
    stride = max(1, math.floor(size * (1.0 - overlap)))
    n = math.ceil((length - size) / stride) + 1
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


def frame_size(image_shape: tuple[int, int], options: PreprocessOptions) -> tuple[float, float]:
    """A frame's ``(H, W)`` as a normality model's families of shapes know it: scaled so
    its longer side is at most ``max_side``, as the model's fit read it."""
    h, w = float(image_shape[0]), float(image_shape[1])
    if options.max_side is not None and max(h, w) > options.max_side:
        scale = options.max_side / max(h, w)
        return h * scale, w * scale
    return h, w


def plan_tiles(image_shape: tuple[int, int], options: PreprocessOptions) -> TileLayout:
    """The tile layout for an image of ``(H, W)`` pixels (see the module policy)."""
    h, w = int(image_shape[0]), int(image_shape[1])
    size = options.image_size
    if options.squash:  # one input; stitching resizes its maps back to (H, W)
        return TileLayout((h, w), (size, size), ((0, 0, size, size),), size)
    scale = max(1.0, size / min(h, w))  # small images go up to one tile
    if options.max_side is not None and max(h, w) * scale > options.max_side:
        scale = max(size / min(h, w), options.max_side / max(h, w))
    work = (h, w) if scale == 1.0 else (max(size, round(h * scale)), max(size, round(w * scale)))
    boxes = tuple(
        (x, y, x + size, y + size)
        for y in tile_positions(work[0], size, options.overlap)
        for x in tile_positions(work[1], size, options.overlap)
    )
    return TileLayout(image_shape=(h, w), work_shape=work, boxes=boxes, tile_size=size)


def cut_tiles(array: np.ndarray, layout: TileLayout) -> np.ndarray:
    """Cut ``(H, W)`` or ``(H, W, C)`` ``array`` (e.g. a mask) into the layout's tiles.

    Returns ``(T, S, S)`` or ``(T, S, S, C)``, same dtype; the same scaling as the image.
    """
    work = _resize_hw(array, layout.work_shape)
    return np.stack([work[y0:y1, x0:x1] for x0, y0, x1, y1 in layout.boxes])


def preprocess(image: np.ndarray, options: PreprocessOptions) -> Tiles:
    """Any image (from :func:`inspection.io.read_image`) to normalised model tiles.

    Returns
    -------
    Tiles
        ``images`` ``(T, C, S, S)`` float32 (``T == 1`` for an ``S x S`` image) and the
        layout to stitch maps back with :func:`stitch_tiles`.
    """
    x = to_float(image, options.in_chans)  # (H, W, C)
    layout = plan_tiles(x.shape[:2], options)
    tiles = cut_tiles(x, layout)  # (T, S, S, C)
    return Tiles(images=normalize(tiles, options.mean, options.std), layout=layout)


def stitch_tiles(tile_maps: np.ndarray, layout: TileLayout, reduce: str = "mean") -> np.ndarray:
    """Put per-tile maps ``(T, C, S, S)`` back into one ``(C, H, W)`` map of the original.

    ``reduce`` combines overlapping tiles: ``"mean"`` (smooth seams) or ``"max"`` (keep
    the strongest response, e.g. for anomaly maps). Any scaling is undone at the end.
    """
    tile_maps = np.asarray(tile_maps, dtype=np.float32)
    t, c, s, _ = tile_maps.shape
    if t != len(layout.boxes) or s != layout.tile_size:
        raise ValueError(f"maps {tile_maps.shape} do not fit {len(layout)} tiles of {s} px")
    h, w = layout.work_shape
    if reduce == "mean":
        acc = np.zeros((c, h, w), np.float32)
        count = np.zeros((1, h, w), np.float32)
        for m, (x0, y0, x1, y1) in zip(tile_maps, layout.boxes, strict=True):
            acc[:, y0:y1, x0:x1] += m
            count[:, y0:y1, x0:x1] += 1.0
        out = acc / np.maximum(count, 1.0)
    elif reduce == "max":
        out = np.full((c, h, w), -np.inf, np.float32)
        for m, (x0, y0, x1, y1) in zip(tile_maps, layout.boxes, strict=True):
            np.maximum(out[:, y0:y1, x0:x1], m, out=out[:, y0:y1, x0:x1])
    else:
        raise ValueError(f"reduce must be 'mean' or 'max', not {reduce!r}")
    if layout.work_shape == layout.image_shape:
        return out  # (C, H, W)
    back = _resize_hw(np.moveaxis(out, 0, -1), layout.image_shape)  # (H, W, C)
    return np.ascontiguousarray(np.moveaxis(back.reshape(*layout.image_shape, c), -1, 0))


def _resize_hw(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize the first two axes to ``shape``; integer and bool arrays are labels or masks
    (nearest neighbour, so they stay crisp), floats are interpolated."""
    if tuple(array.shape[:2]) == tuple(shape):
        return array
    h, w = shape
    if array.dtype == bool:
        return _resize_hw(array.astype(np.uint8), shape).astype(bool)
    if array.dtype.kind not in "iu":
        return resize_pixels(array, shape)
    if array.ndim == 3 and array.shape[2] > 4:  # OpenCV resizes at most 4 channels at once
        return np.stack([_resize_hw(array[:, :, i], shape) for i in range(array.shape[2])], -1)
    out = cv2.resize(array, (w, h), interpolation=cv2.INTER_NEAREST)
    return out.reshape(h, w, *array.shape[2:])
