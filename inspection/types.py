"""The data model shared by every stage: capture, detection, rules, records, reports.

Plain frozen dataclasses over numpy arrays, so that the torch-free edge runtime uses the
same objects as training and the cloud. Arrays are never copied by the dataclasses;
treat them as read-only once an object is built.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from inspection.errors import UserError

AUDIO_SAMPLE_RATE = 16_000
"""Sample rate of every audio clip the pipeline consumes (Whisper's)."""

DEFECT_CLASSES = (
    "scratch",
    "dent",
    "color_deviation",
    "crack",
    "contamination",
    "missing_feature",
)
"""The defect classes the line reports on (synthetic line and default models)."""


class Verdict(enum.StrEnum):
    """The edge's decision for one part. An error is never a PASS."""

    PASS = "PASS"
    REJECT = "REJECT"
    REVIEW = "REVIEW"

    @property
    def rank(self) -> int:
        """From accepting to rejecting: PASS 0, REVIEW 1, REJECT 2."""
        return _VERDICT_RANK[self]


class Severity(enum.StrEnum):
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


class Action(enum.StrEnum):
    ACCEPT = "accept"
    REVIEW = "review"
    REWORK = "rework"
    SCRAP = "scrap"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]

    @property
    def verdict(self) -> Verdict:
        """The line verdict a disposition implies."""
        if self is Action.ACCEPT:
            return Verdict.PASS
        if self is Action.REVIEW:
            return Verdict.REVIEW
        return Verdict.REJECT


_VERDICT_RANK = {Verdict.PASS: 0, Verdict.REVIEW: 1, Verdict.REJECT: 2}
_SEVERITY_RANK = {Severity.MINOR: 0, Severity.MAJOR: 1, Severity.CRITICAL: 2}
_ACTION_RANK = {Action.ACCEPT: 0, Action.REVIEW: 1, Action.REWORK: 2, Action.SCRAP: 3}


@dataclass(frozen=True)
class BBox:
    """Axis-aligned box in pixels, ``x0, y0`` inclusive, ``x1, y1`` exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    @property
    def window(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the box, to index an ``(H, W, ...)`` array with."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


@dataclass(frozen=True)
class Frame:
    """One camera image.

    Attributes
    ----------
    image : np.ndarray
        ``(H, W)`` or ``(H, W, C)`` array, uint8 or uint16, RGB channel order.
    camera : str
        Camera id at the station.
    mm_per_px : float | None
        Calibrated scale; ``None`` when the station is uncalibrated (sizes then stay in px).
    height_map : np.ndarray | None
        ``(H, W)`` float32 surface height in mm from a 3D profiler registered to the
        camera (NaN where it saw nothing); dents are measured on it. ``None``: no
        profiler (a depth clause then goes to REVIEW).

    Raises
    ------
    UserError
        When ``mm_per_px`` is neither ``None`` nor a finite positive number: a NaN, zero
        or negative scale would turn every size into NaN or nothing, and a part with an
        8 mm scratch into a PASS; a height map not of the image's size.
    """

    image: np.ndarray
    camera: str = "cam0"
    mm_per_px: float | None = None
    height_map: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mm_per_px is not None and not _is_positive_finite(self.mm_per_px):
            raise UserError(
                "mm_per_px must be a finite positive number (mm per pixel), "
                f"not {_number_text(self.mm_per_px)}"
            )
        if self.height_map is not None and self.height_map.shape != self.image.shape[:2]:
            raise UserError(
                f"the height map is {self.height_map.shape[1]}x{self.height_map.shape[0]} px "
                f"and the image {self.width}x{self.height}: a profiler registered to the "
                "camera gives one height a pixel"
            )

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


def _is_positive_finite(value: Any) -> bool:
    """Whether ``value`` is a real number (not a bool), finite and above zero."""
    if isinstance(value, bool | str | bytes):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number > 0


def _number_text(value: Any) -> str:
    # "nan", "-1", "0" as a user typed them; numpy 2 reprs as np.float64(nan).
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        return f"{float(value):g}"
    return repr(value)


@dataclass(frozen=True)
class AudioClip:
    """Mono audio, float32 in [-1, 1], at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int = AUDIO_SAMPLE_RATE
    kind: str = "tap"  # "tap" (tap test / part sound) or "note" (operator's spoken note)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class Observation:
    """Everything captured of one part at one station."""

    part_id: str
    station: str
    frames: tuple[Frame, ...]
    audio: AudioClip | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    product: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Defect:
    """One defect instance, measured in physical units.

    ``attributes`` holds the measured quantities the standards' conditions refer to
    (``length_mm``, ``width_mm``, ``area_mm2``, ``depth_mm``, ``delta_e`` ...).
    ``footprint``, where a 3D profiler measured the defect, is the depression its sizes
    were read on (:func:`~inspection.pipeline.with_profile`), and ``footprint_bbox`` its
    box (what JSON and the records keep of it); ``mask`` stays the region the maps
    found, which places it (zone, box).
    """

    defect_class: str
    attributes: Mapping[str, float] = field(default_factory=dict)
    bbox: BBox | None = None
    mask: np.ndarray | None = None  # (H, W) bool, in the frame's pixels
    zone: str | None = None
    score: float = 1.0
    frame_index: int = 0
    footprint: np.ndarray | None = field(default=None, repr=False)  # (H, W) bool
    footprint_bbox: BBox | None = None  # the footprint's box, kept where its mask is not

    @property
    def centroid(self) -> tuple[float, float] | None:
        """``(x, y)`` centre of the mask, or of the box, in pixels."""
        if self.mask is not None and self.mask.any():
            ys, xs = np.nonzero(self.mask)
            return float(xs.mean()), float(ys.mean())
        if self.bbox is not None:
            return (self.bbox.x0 + self.bbox.x1) / 2, (self.bbox.y0 + self.bbox.y1) / 2
        return None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view. The masks are left out (they live in image files); a
        footprint's box is written where there is one."""
        data = {
            "defect_class": self.defect_class,
            "attributes": {k: float(v) for k, v in self.attributes.items()},
            "bbox": self.bbox.as_list() if self.bbox else None,
            "zone": self.zone,
            "score": float(self.score),
            "frame_index": self.frame_index,
        }
        if self.footprint_bbox is not None:
            data["footprint_bbox"] = self.footprint_bbox.as_list()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Defect:
        """The defect :meth:`to_json` wrote (without its mask or footprint: with their
        boxes)."""
        return cls(
            defect_class=data["defect_class"],
            attributes={k: float(v) for k, v in (data.get("attributes") or {}).items()},
            bbox=BBox(*data["bbox"]) if data.get("bbox") else None,
            zone=data.get("zone"),
            score=float(data.get("score", 1.0)),
            frame_index=int(data.get("frame_index", 0)),
            footprint_bbox=BBox(*data["footprint_bbox"]) if data.get("footprint_bbox") else None,
        )


@dataclass(frozen=True)
class DefectDecision:
    """What the defect standard says about one defect."""

    defect: Defect
    zone: str | None
    severity: Severity | None
    action: Action
    clause_id: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "defect": self.defect.to_json(),
            "zone": self.zone,
            "severity": self.severity.value if self.severity else None,
            "action": self.action.value,
            "clause_id": self.clause_id,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DefectDecision:
        return cls(
            defect=Defect.from_json(data["defect"]),
            zone=data.get("zone"),
            severity=Severity(data["severity"]) if data.get("severity") else None,
            action=Action(data["action"]),
            clause_id=data.get("clause_id"),
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True)
class InspectionResult:
    """The edge's decision for one part, traceable to every version that made it."""

    part_id: str
    verdict: Verdict
    severity: Severity | None
    action: Action
    decisions: tuple[DefectDecision, ...] = ()
    reasons: tuple[str, ...] = ()
    standard_id: str | None = None
    standard_version: str | None = None
    model_version: str | None = None
    calibration_version: str | None = None
    scores: Mapping[str, float] = field(default_factory=dict)
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    path: str = "edge"

    @property
    def clauses(self) -> tuple[str, ...]:
        """Clauses cited, each once, in the order of the defects citing them."""
        return tuple(dict.fromkeys(d.clause_id for d in self.decisions if d.clause_id))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready record of the decision and everything that made it."""
        return {
            "part_id": self.part_id,
            "verdict": self.verdict.value,
            "severity": self.severity.value if self.severity else None,
            "action": self.action.value,
            "clauses": list(self.clauses),
            "decisions": [d.to_json() for d in self.decisions],
            "reasons": list(self.reasons),
            "standard_id": self.standard_id,
            "standard_version": self.standard_version,
            "model_version": self.model_version,
            "calibration_version": self.calibration_version,
            "scores": {k: float(v) for k, v in self.scores.items()},
            "timings_ms": {k: float(v) for k, v in self.timings_ms.items()},
            "path": self.path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InspectionResult:
        """The result :meth:`to_json` wrote (``clauses`` follow from the decisions)."""
        return cls(
            part_id=data["part_id"],
            verdict=Verdict(data["verdict"]),
            severity=Severity(data["severity"]) if data.get("severity") else None,
            action=Action(data["action"]),
            decisions=tuple(DefectDecision.from_json(d) for d in data.get("decisions", ())),
            reasons=tuple(data.get("reasons", ())),
            standard_id=data.get("standard_id"),
            standard_version=data.get("standard_version"),
            model_version=data.get("model_version"),
            calibration_version=data.get("calibration_version"),
            scores={k: float(v) for k, v in (data.get("scores") or {}).items()},
            timings_ms={k: float(v) for k, v in (data.get("timings_ms") or {}).items()},
            path=data.get("path", "edge"),
        )


@dataclass(frozen=True)
class ReportDefect:
    defect_class: str
    zone: str | None
    size_mm: float | None
    severity: Severity | None
    clause_id: str | None
    action: Action
    evidence: str = ""  # the covering clauses and whether each held: "4.1.1 ✓ critical scrap"


@dataclass(frozen=True)
class Report:
    """The structured inspection report the cloud decoder writes for one part."""

    part_id: str
    verdict: Verdict
    defects: tuple[ReportDefect, ...]
    summary: str
    language: str = "en"
    standard_id: str | None = None
    standard_version: str | None = None
    omitted_defects: int = 0  # past the most a report lists: the part's other defects
