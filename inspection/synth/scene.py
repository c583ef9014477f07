"""Scene geometry: where the part lies on the conveyor, and its outline, holes and marks.

Everything is computed in image coordinates (pixel centres at integers, x right, y down)
from the part's pose, so every mask drawn from it is exact in the final image. The part's
own coordinates ``(u, v)`` are pixel offsets from its centre along its edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inspection.synth.products import Feature, Product
from inspection.synth.surfaces import LIGHT_DIR, conveyor, pixel_grid, surface_texture

MAX_ROTATION_DEG = 2.0
MAX_SHIFT = 0.03  # fraction of the frame side
EDGE_MARGIN = 0.05  # defects keep this far (fraction of the frame) from the part's edge
FEATURE_MARGIN = 0.03  # ... and this far from a feature's rim


@dataclass(frozen=True)
class Pose:
    """Rigid placement of the part: rotation about the frame centre, then a shift (px)."""

    angle: float  # radians, counter-clockwise as seen in the image
    shift: tuple[float, float]
    size: int

    @property
    def centre(self) -> tuple[float, float]:
        c = (self.size - 1) / 2.0
        return c + self.shift[0], c + self.shift[1]

    def to_image(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Part coordinates (px from the part centre) to image coordinates."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        cx, cy = self.centre
        return cx + c * u - s * v, cy + s * u + c * v

    def to_part(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image coordinates to part coordinates."""
        c, s = float(np.cos(self.angle)), float(np.sin(self.angle))
        cx, cy = self.centre
        dx, dy = x - cx, y - cy
        return c * dx + s * dy, -s * dx + c * dy

    def texture_matrix(self) -> np.ndarray:
        """2x3 affine taking a part-aligned texture (same size as the frame) to the image."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        half = (self.size - 1) / 2.0
        cx, cy = self.centre
        rot = np.array([[c, -s], [s, c]])
        offset = np.array([cx, cy]) - rot @ np.array([half, half])
        return np.hstack([rot, offset[:, None]]).astype(np.float64)


def sample_pose(rng: np.random.Generator, size: int) -> Pose:
    """Small placement jitter of a part under the camera."""
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size
    return Pose(float(angle), (float(shift[0]), float(shift[1])), size)


@dataclass(frozen=True)
class Scene:
    """Geometry of one part in the image, shared by the compositor and defect renderers.

    Attributes
    ----------
    product : Product
    size : int
        Image side in pixels.
    mm_per_px : float
    pose : Pose
    u, v : np.ndarray
        ``(H, W)`` float32 part coordinates of every pixel centre.
    outline_sdf : np.ndarray
        Signed distance (px) to the part's outer outline, negative inside; ignores holes.
    omitted : str | None
        Id of the feature left out (``missing_feature``), if any.
    """

    product: Product
    size: int
    mm_per_px: float
    pose: Pose
    u: np.ndarray
    v: np.ndarray
    outline_sdf: np.ndarray
    omitted: str | None = None
    _distances: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def feature_centre_px(self, feature: Feature) -> tuple[float, float]:
        """Feature centre in image coordinates."""
        x, y = self.pose.to_image(
            np.float64(feature.center[0] * self.size), np.float64(feature.center[1] * self.size)
        )
        return float(x), float(y)

    def feature_distance(self, feature: Feature) -> np.ndarray:
        """Distance (px) of every pixel centre from the feature's centre (cached)."""
        dist = self._distances.get(feature.id)
        if dist is None:
            fu, fv = feature.center[0] * self.size, feature.center[1] * self.size
            dist = np.hypot(self.u - fu, self.v - fv)
            self._distances[feature.id] = dist
        return dist

    @property
    def chamfer_px(self) -> float:
        """Width of the chamfer along every edge of the material."""
        return max(1.2, 0.006 * self.size)

    def footprint(self, feature: Feature) -> np.ndarray:
        """``(H, W)`` bool footprint of a feature: every pixel of the part it changes.

        A hole or notch includes its chamfer ring; a notch is clipped to the part.
        """
        reach = feature.radius * self.size
        if feature.kind in ("hole", "notch"):
            reach += self.chamfer_px
        disc = self.feature_distance(feature) <= reach
        if feature.kind == "notch":
            disc &= self.outline_sdf < 0.5  # pixels the part covers, at least partly
        return disc

    def material(self) -> np.ndarray:
        """``(H, W)`` bool: where the part's material is (inside its outline, outside
        its holes and notches; a feature left out is material)."""
        inside = self.outline_sdf <= 0
        for f in self.product.features:
            if f.kind in ("hole", "notch") and f.id != self.omitted:
                inside &= self.feature_distance(f) > f.radius * self.size
        return inside

    def free_area(self) -> np.ndarray:
        """Where defects may be placed: inside the part, away from its edge and features."""
        free = self.outline_sdf <= -EDGE_MARGIN * self.size
        for f in self.product.features:
            free &= self.feature_distance(f) > (f.radius + FEATURE_MARGIN) * self.size
        return free


def build_scene(product: Product, size: int, pose: Pose, omitted: str | None = None) -> Scene:
    """Pixel grids and the part's outline for one pose."""
    ys, xs = pixel_grid(size)
    u, v = pose.to_part(xs, ys)
    u, v = u.astype(np.float32), v.astype(np.float32)
    hw, hh = product.half_size[0] * size, product.half_size[1] * size
    r = product.corner_radius * size
    qx, qy = np.abs(u) - (hw - r), np.abs(v) - (hh - r)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    sdf = outside + np.minimum(np.maximum(qx, qy), 0) - r
    return Scene(product, size, product.mm_per_px(size), pose, u, v, sdf, omitted)


def _coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the region ``sdf <= 0``."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def compose(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Render the defect-free part on the conveyor (scene radiance, no camera effects).

    The random draws do not depend on ``scene.omitted``, so a part and its
    missing-feature twin share every other pixel.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` float32 sRGB in ``[0, 1]``.
    """
    product, size = scene.product, scene.size
    texture = surface_texture(product.surface, rng, size, product.reference_rgb)
    surface = cv2.warpAffine(
        texture,
        scene.pose.texture_matrix(),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    belt = conveyor(rng, size)
    ink_noise = rng.standard_normal((size, size), dtype=np.float32)

    # Solid material: outline minus the cut-outs that are present.
    sdf = scene.outline_sdf.copy()
    for f in product.features:
        if f.kind in ("hole", "notch") and f.id != scene.omitted:
            sdf = np.maximum(sdf, f.radius * size - scene.feature_distance(f))
    alpha = _coverage(sdf)

    # The part's shadow on the belt, cast away from the light (seen through holes too).
    shadow_shift = -LIGHT_DIR * 0.012 * size
    m = np.float32([[1, 0, shadow_shift[0]], [0, 1, shadow_shift[1]]])
    shadow = cv2.warpAffine(alpha, m, (size, size), borderMode=cv2.BORDER_CONSTANT)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.012 * size)
    belt *= (1.0 - 0.5 * shadow)[:, :, None]

    # Edges and hole rims are slightly chamfered: lit where they face the light.
    bevel = _bevel_shading(scene, sdf)
    surface = np.clip(surface * (1.0 + bevel)[:, :, None], 0.0, 1.0)

    for f in product.features:
        if f.kind == "mark" and f.id != scene.omitted:
            _print_mark(surface, scene, f, ink_noise)

    return surface * alpha[:, :, None] + belt * (1.0 - alpha[:, :, None])


def _bevel_shading(scene: Scene, sdf: np.ndarray) -> np.ndarray:
    """Relative brightness change of a narrow chamfer along every edge of the material."""
    width = scene.chamfer_px
    band = np.clip(1.0 + sdf / width, 0.0, 1.0) * (sdf <= 0.5)
    gy, gx = np.gradient(sdf)
    norm = np.hypot(gx, gy) + 1e-6
    # The chamfer's surface normal tilts outwards along the sdf gradient.
    facing = (gx * LIGHT_DIR[0] + gy * LIGHT_DIR[1]) / norm
    return (0.35 * facing * band).astype(np.float32)


def _print_mark(surface: np.ndarray, scene: Scene, feature: Feature, noise: np.ndarray) -> None:
    """Print a fiducial (ring, centre dot, four ticks) in off-white ink, in place."""
    r = feature.radius * scene.size
    fu, fv = feature.center[0] * scene.size, feature.center[1] * scene.size
    du, dv = scene.u - fu, scene.v - fv
    dist = np.hypot(du, dv)
    ring = np.abs(dist - 0.8 * r) - 0.1 * r
    dot = dist - 0.26 * r
    arm = np.minimum(np.abs(du), np.abs(dv)) - 0.045 * r
    ticks = np.maximum(arm, np.abs(dist - 0.5 * r) - 0.13 * r)
    sdf = np.minimum(np.minimum(ring, dot), ticks)
    ink = _coverage(sdf) * np.clip(0.88 + 0.05 * noise, 0.0, 1.0)
    colour = np.array([0.9, 0.91, 0.89], np.float32)
    surface[:] = surface * (1.0 - ink[:, :, None]) + colour * ink[:, :, None]
