"""Guard bands: a measurement within its uncertainty of a clause's limit proves nothing.

A gauge reads a scratch 0.47 mm wide; the standard rejects one wider than 0.5 mm, and
the gauge's readings of scratches that wide scatter by 0.06 mm. The reading says the
scratch is within tolerance; the gauge cannot say so. ISO 14253-1's decision rule for
proving conformance narrows the tolerance by the measurement's expanded uncertainty
``U`` (the guard band): a part is accepted only when every reading lies inside the
tolerance by more than ``U``. Between the limit and the guard band the rule engine
(:func:`~inspection.standards.rules.apply_standard`) sends the defect to REVIEW, naming
the clause and the band, instead of passing it.

``U`` grows with the size read, as a coordinate-measuring machine's permissible error
does (``A + L/K``): ``U = fixed + proportional * reading``. It is measured, not assumed:
``inspection evaluate`` on a labelled set matches each defect the line found to the
true defect it covers and fits, per defect class and attribute, the narrowest such band
that covers 95 % of the readings' errors (:func:`measure_guard_band`, a coverage factor
of about 2, as in the GUM). A band of one constant would be as wide for a speck as for
a pit ten times its area, and send every pit to review. ``evaluate`` writes the band to
``guard_band.json`` beside its metrics, and ``--guard-band FILE`` gives it to the line.
Counts are exact: no band applies to them.

A gauge is seldom equally wrong both ways: the anomaly map reads a small pit's area 1.1-1.5
times the truth and a wide shallow one's at half of it. A limit that rejects what is
larger than it needs only how far the truth may lie *above* the reading, a limit that
rejects what is smaller only how far *below*. So each side is fitted on its own errors
(``fixed``, ``proportional``: the truth above the reading; ``below``: under it), each
holding 97.5 % of them, so that the two together leave out 5 % as the band of the
errors' size does for errors that scatter evenly: the interval with equal tails, where a
symmetric one would sit too wide on the side the gauge errs little (sending parts to
review for an error it does not make) and too narrow on the side it errs much. A band
given as one pair holds for both sides (benchmarks/README.md, "Guard bands, each side on
its own errors").

The rule above guards acceptance only: a reading beyond a limit rejects as read, so a
plant pays for the gauge's doubt in parts sent to review, never in parts it scraps. ISO
14253-1's other half proves nonconformance too: a band with ``prove_rejection`` rejects a
defect only where, for every true value within the band, a rejecting clause holds (one,
or several whose ranges join), and sends it to REVIEW otherwise. A reading that over-
reads a tolerable pit no longer scraps it; a rightful reject read near its limit waits
for a person too. Who bears the doubt is the plant's choice, and may differ by class
(``"prove_rejection": ["dent"]`` where the gauge over-reads pits): ``inspection
evaluate`` writes the band both ways (``guard_band.json``, ``guard_band_proven.json``)
with what each would change on its set, and what proving each class alone would
(benchmarks/README.md, "Proving rejection too").
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspection.errors import UserError

if TYPE_CHECKING:  # the measurement needs OpenCV; the band and its file do not
    from inspection.measure import DentShading

GUARD_QUANTILE = 0.95
"""The share of a class's measurement errors its band covers (an expanded uncertainty
with a coverage factor of about 2)."""

MIN_PAIRS = 8
"""The fewest matched defects of a class whose errors give it a band: fewer say too
little about the gauge's scatter (a class with fewer gets none, and the file says so)."""

EXACT_ATTRIBUTES = frozenset({"count", "total_count"})
"""Attributes that are counted, not measured: never banded."""

MAX_GUARD_BYTES = 1 << 20


class GuardBandError(UserError):
    """A guard-band file that cannot be read or is malformed."""


Band = tuple[float, float]
"""``(fixed, proportional)``: ``U = fixed + proportional * reading``."""


UNLIT_SHARE = 0.5
"""A region too dark to read a depth from is no dent where it brightens the surface less
than this share of the least any steep limit-sample dent did
(:attr:`ShadingDepth.least_lit`). On the demo's 200 tile limit samples the least is
0.0092 (a 0.19 mm dent of 25 px; the least of those deeper than T31's 0.2 mm, 0.0117);
most steep regions on no dent brighten nothing at all (``benchmarks/steep_dents.py``).
It leans on the maps' region holding the dent's lit slope: one cut to a steep dent's dark
half may look unlit (benchmarks/README.md, "What it leans on")."""

MIN_STEEP_DENTS = 40
"""The fewest steep dents whose least lit slope sets :attr:`ShadingDepth.least_lit`: the
least of a few is not the least a station shows (tile's 23 steep dents in 60 limit
samples gave 0.0194, its 67 in 200 gave 0.0092). Fewer give none, and every steep region
stays unread."""


@dataclass(frozen=True)
class ShadingDepth:
    """A station's dent depth read from its shading on a photograph
    (:class:`~inspection.measure.DentShading`), where no profiler measures it.

    Attributes
    ----------
    azimuth_deg : float
        The direction the light falls from, in the image (degrees from +x towards +y).
    gain : float
        The darkening summed along the light (mm) per mm of depth.
    pairs : int
        The dents of known depth its gain was fitted on (gentle enough to read).
    least_lit : float or None
        The least any steep dent of known depth brightened the surface
        (:attr:`~inspection.measure.DentShading.lit`), over ``steep`` of them: how much a
        true dent's lit slope shows under this station's light, on this surface (one near
        white has little headroom to brighten). ``None`` where fewer than
        :data:`MIN_STEEP_DENTS` steep dents were read: a steep region's depth then stays
        unread whatever its shading.
    steep : int
        The steep dents ``least_lit`` was taken over.
    """

    azimuth_deg: float
    gain: float
    pairs: int = 0
    least_lit: float | None = None
    steep: int = 0

    def depth_mm(self, shading: DentShading, mm_per_px: float) -> float | None:
        """The depth (mm) of a region shading so, in a frame of ``mm_per_px``.

        A gentle one reads from its darkening along the light. A steep one
        (:attr:`~inspection.measure.DentShading.linear` false) reads 0 where it is lit
        less than :data:`UNLIT_SHARE` of :attr:`least_lit`, a dark spot the maps took
        for a dent and no depression (its area still counts); ``None`` otherwise (a steep
        dent: its depth is unread, and a depth clause goes to REVIEW).
        """
        if shading.linear:
            return shading.integral_px(math.radians(self.azimuth_deg)) * mm_per_px / self.gain
        if self.least_lit is not None and shading.lit < UNLIT_SHARE * self.least_lit:
            return 0.0
        return None

    @property
    def calibration_words(self) -> str:
        """What it was calibrated on, in a few words for a label (a count of 0, as a
        hand-written file may leave it, is not said)."""
        said = f"calibrated on {_counted(self.pairs)}limit samples' dents"
        if self.least_lit is not None:
            said += f", dark spots told by {_counted(self.steep)}steep ones' lit slope"
        return said

    @property
    def steep_words(self) -> str:
        """How a region too dark to read is told from a dent, in words for a log (``""``
        where it is not: :attr:`least_lit` is ``None``)."""
        if self.least_lit is None:
            return ""
        return (
            f"a region too dark to read lit under {UNLIT_SHARE:g} of the least of its "
            f"{_counted(self.steep)}steep dents ({self.least_lit:.3f}) reads 0 deep, a dark spot"
        )

    def to_dict(self) -> dict[str, Any]:
        written = {"azimuth_deg": self.azimuth_deg, "gain": self.gain, "pairs": self.pairs}
        if self.least_lit is not None:
            written |= {"least_lit": self.least_lit, "steep": self.steep}
        return written


def _counted(count: int) -> str:
    """``"N "`` for a count in words, ``""`` for none."""
    return f"{count} " if count else ""


def fit_shading_depth(
    dents: Iterable[tuple[DentShading, float, float]],
    min_pairs: int = MIN_PAIRS,
    min_steep: int = MIN_STEEP_DENTS,
) -> ShadingDepth | None:
    """The station's :class:`ShadingDepth`, from dents of known depth.

    Parameters
    ----------
    dents : iterable of (shading, mm_per_px, true depth in mm)
        Each dent found on a photograph and matched to its true one, gentle or steep.
    min_pairs : int
        Fewer gentle dents (:attr:`~inspection.measure.DentShading.linear`) of a finite
        depth above 0 give ``None``.
    min_steep : int
        Fewer steep ones give no :attr:`~ShadingDepth.least_lit`.

    Returns
    -------
    ShadingDepth or None
        The light's azimuth is that of the gentle dents' moments summed (each points to
        its dark slope, towards the light); the gain is the median of their darkening
        integrals along it over their depths, so that half the readings lie on each side
        of the truth. The steep dents give the least their lit slope brightens (none
        where that least is 0: no steep region is then told from a dent).
    """
    dents = [(s, p, d) for s, p, d in dents if math.isfinite(d) and d > 0 and p > 0]
    gentle = [(s, p, d) for s, p, d in dents if s.linear]
    steep = [s.lit for s, _, _ in dents if not s.linear]
    if len(gentle) < min_pairs:
        return None
    toward = np.sum([s.toward_light for s, _, _ in gentle], axis=0)  # (2,): x, y
    azimuth = math.atan2(float(toward[1]), float(toward[0]))
    gain = float(np.median([s.integral_px(azimuth) * p / d for s, p, d in gentle]))
    if not gain > 0:
        return None
    least_lit = min(steep) if len(steep) >= min_steep and min(steep) > 0 else None
    return ShadingDepth(
        round(math.degrees(azimuth), 3),
        gain,
        len(gentle),
        least_lit,
        len(steep) if least_lit is not None else 0,
    )


@dataclass(frozen=True)
class GuardBand:
    """Per defect class and attribute, the measurement's expanded uncertainty ``U`` as a
    function of the reading, in the attribute's unit (mm, mm², ΔE).

    Attributes
    ----------
    margins : Mapping[str, Mapping[str, Band]]
        ``{defect_class: {attribute: (fixed, proportional)}}``: how far the truth may lie
        above the reading; a class or attribute not listed has no band.
    pairs : Mapping[str, int]
        How many matched defects of each class the band was measured on (none when given
        by hand).
    source : str
        Where it came from (the set it was measured on, or the file it was read from).
    shading : ShadingDepth or None
        How a dent's depth reads from its shading where no profiler measures it (fitted on
        the same set's dents: their ``depth_mm`` band is that reading's); ``None``: a dent
        photographed alone has no depth.
    below : Mapping[str, Mapping[str, Band]]
        The same for how far the truth may lie under the reading, where it differs; an
        attribute not listed here has ``margins``' band on both sides.
    prove_rejection : bool or frozenset of str
        ISO 14253-1's other half: a defect whose reading a clause rejects is rejected only
        where a rejecting clause holds for every true value within the band (nonconformance
        proven), and sent to REVIEW otherwise; ``True`` for every class, or the classes
        whose rejection it proves (a plant proves it where its gauge over-reads, say).
        ``False``: a reading beyond a limit rejects as read (only acceptance is guarded).
        Who bears the gauge's doubt is the plant's choice: ``inspection evaluate`` prices
        it on a labelled set, for every class and class by class.
    """

    margins: Mapping[str, Mapping[str, Band]]
    pairs: Mapping[str, int] = field(default_factory=dict)
    source: str = ""
    shading: ShadingDepth | None = None
    below: Mapping[str, Mapping[str, Band]] = field(default_factory=dict)
    prove_rejection: bool | frozenset[str] = False

    def proves_rejection(self, defect_class: str) -> bool:
        """Whether a rejection of a defect of ``defect_class`` must be proven."""
        if isinstance(self.prove_rejection, bool):
            return self.prove_rejection
        return defect_class in self.prove_rejection

    def margin(self, defect_class: str, attribute: str, reading: float) -> float:
        """``U`` of a ``reading`` of ``attribute`` on a defect of ``defect_class``: how far
        the truth may lie above it (0: no band)."""
        return self._margin(self.margins, defect_class, attribute, reading)

    def margin_below(self, defect_class: str, attribute: str, reading: float) -> float:
        """How far the truth may lie under a ``reading`` (:meth:`margin` where the band
        has one side only)."""
        if attribute not in self.below.get(defect_class, {}):
            return self.margin(defect_class, attribute, reading)
        return self._margin(self.below, defect_class, attribute, reading)

    def readings_of(self, defect_class: str, attribute: str, true: float) -> tuple[float, float]:
        """The lowest and highest readings a gauge with this band could give of a ``true``
        value: the truth lies above a reading ``r`` by at most ``fixed + proportional * r``
        (:attr:`margins`), so ``r >= (true - fixed) / (1 + proportional)`` (and 0), and under
        it by at most the band under it, so ``r <= (true + fixed) / (1 - proportional)``
        (unbounded where that proportion reaches 1). A count is read as it is."""
        if attribute in EXACT_ATTRIBUTES:
            return true, true
        above = self.margins.get(defect_class, {}).get(attribute, (0.0, 0.0))
        under = self.below.get(defect_class, {}).get(attribute, above)
        low = max(0.0, (true - above[0]) / (1.0 + above[1]))
        high = (true + under[0]) / (1.0 - under[1]) if under[1] < 1.0 else math.inf
        return min(low, true), max(high, true)

    @staticmethod
    def _margin(bands, defect_class: str, attribute: str, reading: float) -> float:
        if attribute in EXACT_ATTRIBUTES:
            return 0.0
        fixed, proportional = bands.get(defect_class, {}).get(attribute, (0.0, 0.0))
        return fixed + proportional * reading

    @property
    def version(self) -> str:
        """A short, stable name of the band's content, recorded with every verdict."""
        items: list = sorted(
            (c, a, round(f, 6), round(k, 6))
            for c, per in self.margins.items()
            for a, (f, k) in per.items()
        )
        # only the sides that differ: a band of one side hashes as it always did
        sides = ((c, a, self._other_side(c, a)) for c, per in self.margins.items() for a in per)
        items += sorted(
            ("below", c, a, round(b[0], 6), round(b[1], 6)) for c, a, b in sides if b is not None
        )
        shading = self.shading.to_dict() if self.shading else None
        # a band that proves rejection too hashes apart; one that does not, as it always did
        content = [items, shading] + ([self._proven_written()] if self.prove_rejection else [])
        digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()[:8]
        return f"guard band {digest}" if items or shading else "no guard band"

    def shading_only(self) -> GuardBand | None:
        """The band's depth from shading alone: its :class:`ShadingDepth` and the
        ``depth_mm`` band of the classes it reads, without the other readings' bands (a
        line that reads dents' depths so, and decides every other reading as read).
        ``None`` without a shading, or without a ``depth_mm`` band to read it with."""
        depth = {
            c: {"depth_mm": per["depth_mm"]} for c, per in self.margins.items() if "depth_mm" in per
        }
        if self.shading is None or not depth:
            return None
        pairs = {c: n for c, n in self.pairs.items() if c in depth}
        below = {
            c: {"depth_mm": per["depth_mm"]} for c, per in self.below.items() if "depth_mm" in per
        }
        return GuardBand(depth, pairs, self.source, self.shading, below, self.prove_rejection)

    def proving_rejection(self, classes: Iterable[str] | None = None) -> GuardBand:
        """The same band, proving rejection too (:attr:`prove_rejection`): of every class
        (``None``) or of ``classes`` (none: as read)."""
        proven = True if classes is None else frozenset(classes)
        return replace(self, prove_rejection=proven or False)

    def _proven_written(self) -> bool | list[str]:
        """:attr:`prove_rejection` as the file writes it: true, or the classes sorted."""
        proven = self.prove_rejection
        return proven if isinstance(proven, bool) else sorted(proven)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "ISO 14253-1 guarded acceptance: PASS only where every true value "
            "from the reading less U below to the reading plus U (U = fixed + proportional * "
            "reading; 'below' where the truth under the reading has its own band) lies "
            "inside every limit"
            + (
                "; REJECT only where every such true value lies beyond a rejecting limit "
                "(nonconformance proven), else REVIEW"
                + ("" if self.prove_rejection is True else ", for the classes listed")
                if self.prove_rejection
                else ""
            ),
            "quantile": GUARD_QUANTILE,
            "source": self.source,
            "margins": {
                c: {a: self._band_dict(c, a, band) for a, band in sorted(per.items())}
                for c, per in sorted(self.margins.items())
            },
            "pairs": dict(sorted(self.pairs.items())),
            **({"shading_depth": self.shading.to_dict()} if self.shading else {}),
            **({"prove_rejection": self._proven_written()} if self.prove_rejection else {}),
        }

    def _band_dict(self, defect_class: str, attribute: str, band: Band) -> dict[str, Any]:
        written: dict[str, Any] = {"fixed": band[0], "proportional": band[1]}
        if below := self._other_side(defect_class, attribute):
            written["below"] = {"fixed": below[0], "proportional": below[1]}
        return written

    def _other_side(self, defect_class: str, attribute: str) -> Band | None:
        """The band under the reading where it differs from the one above (else None:
        one pair holds for both)."""
        above = self.margins.get(defect_class, {}).get(attribute)
        below = self.below.get(defect_class, {}).get(attribute)
        if below is None or above is None:
            return None
        same = all(math.isclose(a, b, abs_tol=1e-12) for a, b in zip(above, below, strict=True))
        return None if same else below


def band_words(band: Band) -> str:
    """A band as a person reads it: ``0.65``, ``19 %`` (of the reading) or
    ``(0.37 + 8.5 %)``."""
    fixed, proportional = band
    if proportional == 0:
        return f"{fixed:.2g}"
    share = f"{100 * proportional:.2g} %"
    return share if fixed == 0 else f"({fixed:.2g} + {share})"


def written_band_words(written: Mapping[str, Any]) -> str:
    """A band as :meth:`GuardBand.to_dict` writes it, as a person reads it: ``±0.65``, or
    ``+19 % / −(0.37 + 8.5 %)`` where the truth above and under the reading differ."""
    above = band_words((written["fixed"], written["proportional"]))
    below = written.get("below")
    if below is None:
        return f"±{above}"
    return f"+{above} / −{band_words((below['fixed'], below['proportional']))}"


def measure_guard_band(
    pairs: Iterable[tuple[str, Mapping[str, float], Mapping[str, float]]],
    source: str = "",
    quantile: float = GUARD_QUANTILE,
    min_pairs: int = MIN_PAIRS,
    shading: ShadingDepth | None = None,
) -> GuardBand:
    """The guard band of a gauge, from defects it measured whose true size is known.

    Parameters
    ----------
    pairs : iterable of (defect_class, measured, true)
        Each matched defect: its class and its measured and true attributes. Attributes
        present in both and finite count; counts are skipped.
    source : str
        Recorded in the band (the set it was measured on).
    quantile : float
        The share of the errors the band covers: each side holds ``(1 + quantile) / 2``
        of its own (97.5 % for 95 %).
    min_pairs : int
        Classes with fewer matched defects get no band, and attributes read on fewer.
    shading : ShadingDepth or None
        Recorded in the band (:func:`fit_shading_depth` on the same dents).

    Returns
    -------
    GuardBand
        Per class and attribute, the narrowest :func:`fit_band` of the errors of each
        side: the truth above the reading (``margins``) and under it (``below``).
    """
    readings, counts = gauge_readings(pairs)
    fitted = {
        c: {a: r for a, r in sorted(per.items()) if len(r) >= min_pairs}
        for c, per in readings.items()
        if counts[c] >= min_pairs
    }
    fitted = {c: per for c, per in fitted.items() if per}

    each_side = (1.0 + quantile) / 2  # equal tails: 2.5 % left out above, 2.5 % under

    def side(sign: float) -> dict[str, dict[str, Band]]:
        return {
            c: {a: fit_band(r, each_side, sign) for a, r in per.items()}
            for c, per in fitted.items()
        }

    return GuardBand(side(1.0), dict(counts), source, shading, side(-1.0))


def gauge_readings(
    pairs: Iterable[tuple[str, Mapping[str, float], Mapping[str, float]]],
) -> tuple[dict[str, dict[str, list[tuple[float, float]]]], dict[str, int]]:
    """The ``(reading, true)`` pairs of each class and attribute (finite, counts
    skipped), and the matched defects of each class, from :func:`measure_guard_band`'s
    ``pairs``."""
    readings: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    counts: dict[str, int] = defaultdict(int)
    for defect_class, measured, true in pairs:
        counts[defect_class] += 1
        for attribute, value in measured.items():
            if attribute in EXACT_ATTRIBUTES or attribute not in true:
                continue
            reading, actual = float(value), float(true[attribute])
            if math.isfinite(reading) and math.isfinite(actual):
                readings[defect_class][attribute].append((reading, actual))
    return readings, counts


def fit_band(
    readings: list[tuple[float, float]], quantile: float = GUARD_QUANTILE, side: float = 0.0
) -> Band:
    """The narrowest band ``fixed + proportional * reading`` (both >= 0) that holds
    ``quantile`` of the errors: ``|reading - true|`` (``side`` 0), how far the truth lies
    above the reading (``side`` 1; 0 where it lies under) or under it (``side`` -1).

    For each slope tried (0 and the ratios to their readings of the errors of both sides
    and of this side's) the least intercept that covers ``quantile`` of them is their
    quantile less the slope's share; the pair whose band is narrowest at the median
    reading wins.
    """
    reading, actual = np.asarray(readings, dtype=np.float64).T  # (N,), (N,)
    size = np.abs(reading - actual)
    error = size if side == 0 else np.maximum(side * (actual - reading), 0.0)
    read = reading > 0
    slopes = [np.zeros(1)]
    for errors in (size, error) if read.any() else ():
        slopes.append(np.quantile(errors[read] / reading[read], np.linspace(0, 1, 41)))
    slopes = np.unique(np.concatenate(slopes))
    typical = float(np.median(reading))
    # "higher": the band covers at least `quantile` of the errors
    bands = [
        (max(0.0, float(np.quantile(error - k * reading, quantile, method="higher"))), float(k))
        for k in slopes
    ]
    return min(bands, key=lambda band: band[0] + band[1] * typical)


def load_guard_band(path: str | Path) -> GuardBand:
    """Read a guard band written by ``inspection evaluate`` (or by hand).

    The file is JSON with ``margins``: ``{defect_class: {attribute: band}}``, each band
    ``{"fixed": F, "proportional": K}`` (``U = F + K * reading``) or one number ``F``,
    finite and >= 0, in the attribute's unit.

    Raises
    ------
    GuardBandError
        A missing, unreadable, oversized or malformed file, naming what is wrong.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_GUARD_BYTES:
            raise GuardBandError(f"{path}: larger than {MAX_GUARD_BYTES} bytes: not a guard band")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GuardBandError(f"{path}: no such guard-band file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GuardBandError(f"{path}: cannot read a guard band: {exc}") from exc
    return guard_band_from_dict(data, str(path))


def guard_band_from_dict(data: Any, where: str) -> GuardBand:
    """A :class:`GuardBand` from its :meth:`GuardBand.to_dict` form, checked field by
    field (:class:`GuardBandError` naming the first bad one)."""
    margins = data.get("margins") if isinstance(data, dict) else None
    if not isinstance(margins, dict):
        raise GuardBandError(
            f"{where}: expected an object with 'margins': {{class: {{attribute: band}}}}"
        )
    checked: dict[str, dict[str, Band]] = {}
    below: dict[str, dict[str, Band]] = {}
    for defect_class, per in margins.items():
        if not isinstance(per, dict):
            raise GuardBandError(f"{where}: margins.{defect_class} must map attributes to bands")
        for a, u in per.items():
            at = f"{where}: margins.{defect_class}.{a}"
            checked.setdefault(str(defect_class), {})[str(a)] = _band(u, at)
            if isinstance(u, dict) and "below" in u:
                below.setdefault(str(defect_class), {})[str(a)] = _band(
                    u["below"], f"{at}.below", False
                )
    pairs = data.get("pairs") if isinstance(data.get("pairs"), dict) else {}
    prove_rejection = _proven(data.get("prove_rejection", False), f"{where}: prove_rejection")
    return GuardBand(
        checked,
        {str(c): int(n) for c, n in pairs.items() if isinstance(n, int) and n >= 0},
        where,
        _shading(data.get("shading_depth"), f"{where}: shading_depth"),
        below,
        prove_rejection,
    )


def _proven(value: Any, where: str) -> bool | frozenset[str]:
    """``prove_rejection`` as written: true or false, or a list of class names."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and all(isinstance(c, str) and c for c in value):
        return frozenset(value) or False
    raise GuardBandError(
        f"{where}: {value!r} is not true, false or a list of defect classes (whose rejection "
        "is proven: a reading beyond a limit by less than its band is REVIEW)"
    )


def shading_depth_of(written: Any) -> ShadingDepth | None:
    """A calibration as written (:meth:`ShadingDepth.to_dict`, in an evaluation's metrics),
    to say what it is; ``None`` where there is none or it cannot be read (a hand-edited
    record says nothing)."""
    try:
        return _shading(written, "shading_depth")
    except GuardBandError:
        return None


def _shading(value: Any, where: str) -> ShadingDepth | None:
    """A :class:`ShadingDepth` as written (``None`` where the file has none)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GuardBandError(f"{where}: expected {{azimuth_deg, gain, pairs}}")
    unknown = set(value) - {"azimuth_deg", "gain", "pairs", "least_lit", "steep"}
    if unknown:
        raise GuardBandError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    azimuth, gain = value.get("azimuth_deg"), value.get("gain")
    for name, number in (("azimuth_deg", azimuth), ("gain", gain)):
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise GuardBandError(f"{where}.{name}: {number!r} is not a number")
        if not math.isfinite(number):
            raise GuardBandError(f"{where}.{name}: {number!r} is not a finite number")
    if gain <= 0:
        raise GuardBandError(f"{where}.gain: {gain!r} must be above 0 (darkening per mm of depth)")
    pairs, steep = (_count(value.get(name, 0)) for name in ("pairs", "steep"))
    return ShadingDepth(float(azimuth), float(gain), pairs, _least_lit(value, where), steep)


def _count(value: Any) -> int:
    """A count as written; 0 where it is none (it only says what a fit was made on)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _least_lit(value: dict[str, Any], where: str) -> float | None:
    """:attr:`ShadingDepth.least_lit` as written: ``None`` where the file has none (a steep
    region's depth then stays unread), a share of the surface's luminance above 0."""
    lit = value.get("least_lit")
    if lit is None:
        return None
    if isinstance(lit, bool) or not isinstance(lit, int | float) or not math.isfinite(lit):
        raise GuardBandError(f"{where}.least_lit: {lit!r} is not a finite number")
    if not 0 < lit < 1:
        raise GuardBandError(
            f"{where}.least_lit: {lit!r} must lie between 0 and 1 (the least a steep dent "
            "brightened the surface, a share of its luminance)"
        )
    return float(lit)


def _band(value: Any, where: str, sided: bool = True) -> Band:
    """A band as written: one number (fixed) or ``{"fixed": .., "proportional": ..}``
    (and, where ``sided``, ``below``: the other side's band, read by the caller)."""
    if isinstance(value, dict):
        unknown = set(value) - {"fixed", "proportional", *(("below",) if sided else ())}
        if unknown:
            raise GuardBandError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        fixed = _margin(value.get("fixed", 0.0), f"{where}.fixed")
        return fixed, _margin(value.get("proportional", 0.0), f"{where}.proportional")
    return _margin(value, where), 0.0


def _margin(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GuardBandError(f"{where}: {value!r} is not a finite number")
    if value < 0:
        raise GuardBandError(f"{where}: {value!r} is negative (U is a distance from a limit)")
    return float(value)
