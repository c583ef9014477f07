"""One part off the line: pose, surface, features, defects, photograph and tap test."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from inspection.synth.audio import tap_audio
from inspection.synth.camera import expose, quantise
from inspection.synth.defects import (
    RENDERERS,
    SynthDefect,
    choose_missing_feature,
)
from inspection.synth.products import get_product
from inspection.synth.scene import build_scene, compose, sample_pose
from inspection.types import DEFECT_CLASSES, AudioClip

PROFILER_NOISE_MM = 0.005
"""The synthetic 3D profiler's noise, one standard deviation (a laser line profiler's
repeatability over a field this size is a few micrometres)."""

PROFILER_VIEW_DEG = 25.0
"""How far from vertical the synthetic profiler's camera looks at its laser line, along
the rows (towards +x): the belt within ``thickness_mm * tan`` of it behind a face edge
is hidden by the part (occlusion), and the profiler reads nothing there (NaN)."""

PROFILER_DROPOUT_RATE = 0.002
"""The share of points the synthetic profiler reads nothing for (NaN), one point each:
where a glint or a dark speck made it lose its laser line."""


@dataclass(frozen=True)
class SynthPart:
    """A synthetic part and its ground truth.

    Attributes
    ----------
    part_id : str
        ``"{product}-s{seed}-{index:06d}"``.
    product : str
    image : np.ndarray
        ``(size, size, 3)`` uint8 RGB photograph.
    defects : tuple[SynthDefect, ...]
        Empty for a good part.
    mask : np.ndarray
        ``(size, size)`` bool union of the defect masks.
    audio : AudioClip
        The tap test.
    mm_per_px : float
    reference_rgb : tuple[int, int, int]
        Nominal colour of the product's surface.
    material : np.ndarray | None
        ``(size, size)`` bool: where the part's material is (its face, as a profiler
        sees it); elsewhere the belt, ``thickness_mm`` below. ``None``: all face.
    thickness_mm : float
        How far the face stands above the belt.
    """

    part_id: str
    product: str
    image: np.ndarray
    defects: tuple[SynthDefect, ...]
    mask: np.ndarray
    audio: AudioClip
    mm_per_px: float
    reference_rgb: tuple[int, int, int]
    material: np.ndarray | None = field(default=None, repr=False, compare=False)
    thickness_mm: float = 0.0

    @property
    def label(self) -> str:
        """``"good"`` or the class of its defects (a part has one class at most)."""
        return self.defects[0].defect_class if self.defects else "good"

    @property
    def audio_anomaly(self) -> bool:
        """Whether the tap test carries the defect (any crack, seen or not)."""
        return any(d.defect_class == "crack" for d in self.defects)

    def height_map(self, noise_mm: float = PROFILER_NOISE_MM) -> np.ndarray:
        """The part as a 3D profiler registered to the camera sees it: ``(H, W)`` float32
        height in mm against the nominal face (0), dents below it; the belt
        ``thickness_mm`` below, beside the part and through its holes and notches; the
        part lying tilted on the belt by up to 0.2 degrees, its face wavy by a few
        micrometres over 25-60 mm; and the profiler's noise (``noise_mm`` standard
        deviation). Where the profiler reads nothing, NaN: the belt the part hides from
        its camera (:data:`PROFILER_VIEW_DEG`), and single points lost anywhere
        (:data:`PROFILER_DROPOUT_RATE`). All from the part's own stream: the photograph
        and the rest of the part are unchanged."""
        height = np.zeros(self.mask.shape, np.float32)
        for defect in self.defects:
            defect.add_relief(height)
        rng = np.random.default_rng(zlib.crc32(f"{self.part_id}/height".encode()))
        height += rng.normal(0.0, noise_mm, height.shape).astype(np.float32)
        yy, xx = np.mgrid[: height.shape[0], : height.shape[1]] * np.float32(self.mm_per_px)
        waves = np.zeros_like(height)
        for _ in range(3):
            angle, wavelength = rng.uniform(0, np.pi), rng.uniform(25.0, 60.0)
            along = np.cos(angle) * xx + np.sin(angle) * yy
            phase = rng.uniform(0, 2 * np.pi)
            waves += rng.uniform(0.002, 0.008) * np.cos(2 * np.pi * along / wavelength + phase)
        tilt_x, tilt_y = rng.uniform(-0.0035, 0.0035, 2)  # mm/mm: up to 0.2 degrees
        height += (tilt_x * xx + tilt_y * yy).astype(np.float32)
        if self.material is not None:
            height += np.where(self.material, waves, -self.thickness_mm).astype(np.float32)
            height[self._occluded()] = np.nan
        height[rng.random(height.shape) < PROFILER_DROPOUT_RATE] = np.nan
        return height

    def _occluded(self) -> np.ndarray:
        """``(H, W)`` bool: the belt the part hides from the profiler's camera, which
        looks along the rows at :data:`PROFILER_VIEW_DEG` from vertical: up to
        ``thickness_mm * tan`` past each face edge the rows run over (beside the part and
        in its holes)."""
        reach = round(self.thickness_mm * np.tan(np.radians(PROFILER_VIEW_DEG)) / self.mm_per_px)
        hidden = np.zeros_like(self.material)
        for step in range(1, reach + 1):
            hidden[:, step:] |= self.material[:, :-step]
        return hidden & ~self.material


def part_id(product: str, seed: int, index: int) -> str:
    return f"{product}-s{seed}-{index:06d}"


def generate_part(
    product: str,
    index: int,
    seed: int,
    defect_class: str | None,
    size: int = 256,
    *,
    camera: bool = True,
) -> SynthPart:
    """Make one part, deterministically from ``(seed, index, product)``.

    Parameters
    ----------
    product : str
        Product name (see :data:`inspection.synth.products.PRODUCTS`).
    index : int
        Part number within the run.
    seed : int
        Run seed.
    defect_class : str | None
        One of :data:`inspection.types.DEFECT_CLASSES`, or ``None`` for a good part.
    size : int
        Image side in pixels.
    camera : bool
        ``False`` returns the evenly lit scene without blur or noise (for checking
        ground truth against pixels).

    Returns
    -------
    SynthPart

    Notes
    -----
    The part's generator is ``np.random.default_rng([seed, index, product.number])``,
    split into independent streams for the scene, the defects, the audio and the sensor:
    results do not depend on worker count or order, and the same part without its defect
    (``defect_class=None``) is the identical scene, so the two differ only at the defect.
    """
    prod = get_product(product)
    if defect_class is not None and defect_class not in DEFECT_CLASSES:
        raise ValueError(
            f"unknown defect class {defect_class!r}; valid: {', '.join(DEFECT_CLASSES)}"
        )
    if size < 64:
        raise ValueError(f"image size {size} too small (at least 64 px)")
    root = np.random.default_rng([seed, index, prod.number])
    scene_rng, defect_rng, audio_rng, sensor_rng = root.spawn(4)

    pose = sample_pose(scene_rng, size)
    omitted = None
    if defect_class == "missing_feature":
        omitted = choose_missing_feature(tuple(f.id for f in prod.features), defect_rng)
    scene = build_scene(prod, size, pose, omitted)
    radiance = compose(scene, scene_rng)

    defects: list[SynthDefect] = []
    if defect_class is not None:
        free = scene.free_area()
        defects = RENDERERS[defect_class](radiance, scene, defect_rng, free)
        if not defects:  # only if the part has no room at all: never silently good
            raise RuntimeError(f"could not place a {defect_class} on {product} at {size} px")
    image = expose(radiance, sensor_rng) if camera else quantise(radiance)

    mask = np.zeros((size, size), bool)
    for d in defects:
        mask |= d.mask
    cracks = [d for d in defects if d.defect_class == "crack"]
    audio = tap_audio(prod, audio_rng, cracks[0].attributes["length_mm"] if cracks else None)
    return SynthPart(
        part_id=part_id(product, seed, index),
        product=product,
        image=image,
        defects=tuple(defects),
        mask=mask,
        audio=audio,
        mm_per_px=scene.mm_per_px,
        reference_rgb=prod.reference_rgb,
        material=scene.material(),
        thickness_mm=prod.thickness_mm,
    )
