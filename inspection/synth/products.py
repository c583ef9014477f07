"""The products made on the synthetic line: geometry, surface, colour and tap-test modes.

Geometry is normalised to the camera frame so that one product renders at any image size:
positions are offsets from the frame centre and radii are fractions of the frame side.
The field of view fixes the physical scale, ``mm_per_px = field_of_view_mm / size``.
"""

from __future__ import annotations

from dataclasses import dataclass

SURFACES = ("brushed_metal", "painted", "ceramic")


@dataclass(frozen=True)
class Feature:
    """A hole, notch or printed mark that ``missing_feature`` can leave out.

    Attributes
    ----------
    id : str
        Stable name, used in the manifest (``"hole_1"``, ``"fiducial"``...).
    kind : str
        ``"hole"`` (through-hole), ``"notch"`` (half-disc cut into the edge) or ``"mark"``
        (printed fiducial).
    center : tuple[float, float]
        ``(u, v)`` offset of the centre from the part centre, as a fraction of the frame side.
    radius : float
        Radius as a fraction of the frame side.
    """

    id: str
    kind: str
    center: tuple[float, float]
    radius: float


@dataclass(frozen=True)
class Mode:
    """One vibration mode of the tap test: ``a * exp(-damping * t) * sin(2 pi f t)``."""

    freq_hz: float
    damping: float  # 1/s
    amplitude: float


@dataclass(frozen=True)
class Product:
    """One product type: what it looks like, how big it is and how it rings.

    Attributes
    ----------
    name : str
        Registry key.
    number : int
        Stable small integer mixed into every part's seed (never reuse one).
    surface : str
        Surface kind, one of :data:`SURFACES`.
    field_of_view_mm : float
        Side of the square camera field of view.
    reference_rgb : tuple[int, int, int]
        Nominal sRGB colour of the surface (what colour deviations are measured against).
    half_size : tuple[float, float]
        Half width and half height of the part, as fractions of the frame side.
    corner_radius : float
        Corner rounding, as a fraction of the frame side.
    features : tuple[Feature, ...]
        Holes, notches and marks.
    modes : tuple[Mode, ...]
        Nominal tap-test modes, strongest first.
    description : str
        One line for people.
    thickness_mm : float
        How far the part's face stands above the belt (what a 3D profiler reads through
        its holes and notches and beside it).
    """

    name: str
    number: int
    surface: str
    field_of_view_mm: float
    reference_rgb: tuple[int, int, int]
    half_size: tuple[float, float]
    corner_radius: float
    features: tuple[Feature, ...]
    modes: tuple[Mode, ...]
    description: str = ""
    thickness_mm: float = 3.0

    def mm_per_px(self, size: int) -> float:
        """Physical size of one pixel for a ``size`` x ``size`` image."""
        return self.field_of_view_mm / size

    def feature(self, feature_id: str) -> Feature:
        for f in self.features:
            if f.id == feature_id:
                return f
        raise KeyError(f"{self.name} has no feature {feature_id!r}")


# Mode amplitudes are chosen so that the fundamental's spectral peak (amplitude / damping)
# stays the strongest even when a crack damps it four times harder: a tap tester keys on
# that peak, and the synthetic line should not make it ambiguous.
PRODUCTS: dict[str, Product] = {
    "bracket": Product(
        name="bracket",
        number=1,
        surface="brushed_metal",
        field_of_view_mm=60.0,
        reference_rgb=(172, 174, 176),
        half_size=(0.42, 0.34),
        corner_radius=0.05,
        features=(
            Feature("hole_1", "hole", (-0.33, -0.25), 0.036),
            Feature("hole_2", "hole", (0.33, -0.25), 0.036),
            Feature("hole_3", "hole", (-0.33, 0.25), 0.036),
            Feature("hole_4", "hole", (0.33, 0.25), 0.036),
        ),
        modes=(
            Mode(1180.0, 9.0, 1.0),
            Mode(2630.0, 16.0, 0.26),
            Mode(3910.0, 24.0, 0.2),
            Mode(5480.0, 32.0, 0.14),
        ),
        description="brushed aluminium mounting bracket, 4 mounting holes",
        thickness_mm=3.0,
    ),
    "panel": Product(
        name="panel",
        number=2,
        surface="painted",
        field_of_view_mm=80.0,
        reference_rgb=(88, 106, 124),
        half_size=(0.44, 0.36),
        corner_radius=0.025,
        features=(
            Feature("hole_1", "hole", (-0.35, -0.26), 0.028),
            Feature("hole_2", "hole", (0.35, -0.26), 0.028),
            Feature("fiducial", "mark", (-0.29, 0.22), 0.055),
        ),
        modes=(
            Mode(640.0, 22.0, 1.0),
            Mode(1490.0, 34.0, 0.24),
            Mode(2710.0, 50.0, 0.22),
            Mode(4170.0, 66.0, 0.18),
            Mode(5890.0, 80.0, 0.1),
        ),
        description="blue-grey painted appliance front panel, 2 holes and a fiducial mark",
        thickness_mm=1.0,
    ),
    "tile": Product(
        name="tile",
        number=3,
        surface="ceramic",
        field_of_view_mm=50.0,
        reference_rgb=(226, 221, 209),
        half_size=(0.40, 0.40),
        corner_radius=0.035,
        features=(
            Feature("hole_center", "hole", (0.0, 0.0), 0.07),
            Feature("notch_left", "notch", (-0.40, 0.0), 0.045),
            Feature("notch_right", "notch", (0.40, 0.0), 0.045),
        ),
        modes=(
            Mode(2240.0, 15.0, 1.0),
            Mode(3870.0, 24.0, 0.28),
            Mode(5460.0, 33.0, 0.22),
            Mode(6720.0, 42.0, 0.16),
        ),
        description="off-white ceramic tile, central hole and two locating notches",
        thickness_mm=6.0,
    ),
}


def get_product(name: str) -> Product:
    """Look a product up by name.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    try:
        return PRODUCTS[name]
    except KeyError:
        valid = ", ".join(sorted(PRODUCTS))
        raise ValueError(f"unknown product {name!r}; valid products: {valid}") from None
