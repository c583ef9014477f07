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
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspection.errors import UserError

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


@dataclass(frozen=True)
class GuardBand:
    """Per defect class and attribute, the measurement's expanded uncertainty ``U`` as a
    function of the reading, in the attribute's unit (mm, mm², ΔE).

    Attributes
    ----------
    margins : Mapping[str, Mapping[str, Band]]
        ``{defect_class: {attribute: (fixed, proportional)}}``; a class or attribute not
        listed has no band.
    pairs : Mapping[str, int]
        How many matched defects of each class the band was measured on (none when given
        by hand).
    source : str
        Where it came from (the set it was measured on, or the file it was read from).
    """

    margins: Mapping[str, Mapping[str, Band]]
    pairs: Mapping[str, int] = field(default_factory=dict)
    source: str = ""

    def margin(self, defect_class: str, attribute: str, reading: float) -> float:
        """``U`` of a ``reading`` of ``attribute`` on a defect of ``defect_class`` (0: no
        band)."""
        if attribute in EXACT_ATTRIBUTES:
            return 0.0
        fixed, proportional = self.margins.get(defect_class, {}).get(attribute, (0.0, 0.0))
        return fixed + proportional * reading

    @property
    def version(self) -> str:
        """A short, stable name of the band's content, recorded with every verdict."""
        items = sorted(
            (c, a, round(f, 6), round(k, 6))
            for c, per in self.margins.items()
            for a, (f, k) in per.items()
        )
        digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()[:8]
        return f"guard band {digest}" if items else "no guard band"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": "ISO 14253-1 guarded acceptance: PASS only with every reading at least "
            "U = fixed + proportional * reading inside every limit",
            "quantile": GUARD_QUANTILE,
            "source": self.source,
            "margins": {
                c: {a: {"fixed": f, "proportional": k} for a, (f, k) in sorted(per.items())}
                for c, per in sorted(self.margins.items())
            },
            "pairs": dict(sorted(self.pairs.items())),
        }


def band_words(band: Band) -> str:
    """A band as a person reads it: ``0.65``, ``19 %`` (of the reading) or
    ``(0.37 + 8.5 %)``."""
    fixed, proportional = band
    if proportional == 0:
        return f"{fixed:.2g}"
    share = f"{100 * proportional:.2g} %"
    return share if fixed == 0 else f"({fixed:.2g} + {share})"


def measure_guard_band(
    pairs: Iterable[tuple[str, Mapping[str, float], Mapping[str, float]]],
    source: str = "",
    quantile: float = GUARD_QUANTILE,
    min_pairs: int = MIN_PAIRS,
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
        The share of the errors the band covers.
    min_pairs : int
        Classes with fewer matched defects get no band, and attributes read on fewer.

    Returns
    -------
    GuardBand
        Per class and attribute, the narrowest :func:`fit_band` of its errors.
    """
    readings, counts = gauge_readings(pairs)
    margins = {
        c: {a: fit_band(r, quantile) for a, r in sorted(per.items()) if len(r) >= min_pairs}
        for c, per in readings.items()
        if counts[c] >= min_pairs
    }
    return GuardBand({c: m for c, m in margins.items() if m}, dict(counts), source)


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


def fit_band(readings: list[tuple[float, float]], quantile: float = GUARD_QUANTILE) -> Band:
    """The narrowest band ``fixed + proportional * reading`` (both >= 0) that holds
    ``quantile`` of the errors ``|reading - true|``.

    For each slope tried (0 and the errors' ratios to their readings) the least
    intercept that covers ``quantile`` of them is their quantile less the slope's share;
    the pair whose band is narrowest at the median reading wins.
    """
    reading, actual = np.asarray(readings, dtype=np.float64).T  # (N,), (N,)
    error = np.abs(reading - actual)
    ratios = error[reading > 0] / reading[reading > 0]
    slopes = np.zeros(1)
    if ratios.size:
        slopes = np.unique(np.concatenate([slopes, np.quantile(ratios, np.linspace(0, 1, 41))]))
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
    for defect_class, per in margins.items():
        if not isinstance(per, dict):
            raise GuardBandError(f"{where}: margins.{defect_class} must map attributes to bands")
        checked[str(defect_class)] = {
            str(a): _band(u, f"{where}: margins.{defect_class}.{a}") for a, u in per.items()
        }
    pairs = data.get("pairs") if isinstance(data.get("pairs"), dict) else {}
    return GuardBand(
        checked,
        {str(c): int(n) for c, n in pairs.items() if isinstance(n, int) and n >= 0},
        where,
    )


def _band(value: Any, where: str) -> Band:
    """A band as written: one number (fixed) or ``{"fixed": .., "proportional": ..}``."""
    if isinstance(value, dict):
        unknown = set(value) - {"fixed", "proportional"}
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
