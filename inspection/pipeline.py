"""From an observation to a verdict: detect, measure, apply the standard. Torch-free.

The same code decides on the edge (ONNX Runtime detector) and in Python (torch
detector): a :class:`Detector` turns one image (and the part's audio) into a
:class:`~inspection.models.outputs.Detection`; this module turns that into measured
defects and the standard's verdict.

Decision policy
---------------
- The part score (image and audio fused) is compared with the model's calibrated image
  threshold. Below it the part passes: the threshold, set on held-out good parts, is
  what bounds the false-reject rate.
- At or above it, the anomaly map is cut at the pixel threshold; each connected region
  is one defect, of the class whose map is strongest over it, measured in mm (length,
  width, area) and ΔE, and judged by the standard. A part that scores as defective but
  shows no region to measure goes to REVIEW.
- A part whose tap test rings wrong has a crack: the most crack-like region the maps
  call a scratch (the two look alike), or an internal crack when none is visible.
- Any error on this path (unreadable frame, model failure, NaN scores) gives REVIEW
  with its reason: an error is never a PASS.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from inspection.measure import connected_components, measure_defect
from inspection.models.outputs import Detection
from inspection.standards import Standard, apply_standard
from inspection.types import (
    Action,
    AudioClip,
    Defect,
    Frame,
    InspectionResult,
    Observation,
    Verdict,
)

AUDIO_THRESHOLD_FLOOR = 0.5
"""The lowest audio threshold the line uses (see :func:`thresholds_of`): the audio head
is a classifier trained with cross-entropy on labelled taps, so 0.5 is its own decision
boundary. Good taps saturate near 0 (the shipped default: 3.4e-5 to 3.7e-5 on every
held-out part that is not cracked), and their 99th percentile, taken alone, sits inside
that noise and flags good parts."""

PIXEL_THRESHOLD_FLOOR = 0.5
"""The lowest pixel threshold the line cuts defect regions at (see :func:`thresholds_of`):
the map's channel 0 is a classifier of defect pixels, and 0.5 is its own boundary. A
well-trained model's good maps sit near 0 everywhere, so the 99.9th percentile of them,
taken alone, cuts each region at its faint halo (measured on the fine-tuned default: a
recorded 0.001 put the median length error at 3.5 mm on validation parts, 0.45 mm at
0.5)."""


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds, versioned and recorded with every verdict."""

    image: float = 0.5  # part score at or above: defective
    pixel: float = 0.5  # anomaly probability at or above: a defect pixel
    audio: float = 0.5  # tap-test score at or above: audible defect
    min_area_px: int = 4  # smaller regions are sensor noise
    version: str = "uncalibrated"


def thresholds_of(metadata: dict[str, Any]) -> Thresholds:
    """The thresholds recorded in a model's metadata, as the line uses them: the audio
    and pixel ones no lower than :data:`AUDIO_THRESHOLD_FLOOR` and
    :data:`PIXEL_THRESHOLD_FLOOR` (calibration records percentiles of good parts, which
    can sit inside their noise, or far under the heads' own boundary)."""
    t = metadata.get("thresholds") or {}
    return Thresholds(
        image=float(t.get("image", 0.5)),
        pixel=max(PIXEL_THRESHOLD_FLOOR, float(t.get("pixel", 0.5))),
        audio=max(AUDIO_THRESHOLD_FLOOR, float(t.get("audio", 0.5))),
        version=str(metadata.get("calibration_version", "training-holdout")),
    )


class Detector(Protocol):
    """Anything that turns one image (and the part's audio) into a full-size detection."""

    classes: tuple[str, ...]
    version: str

    def detect(self, image: np.ndarray, audio: AudioClip | None = None) -> Detection: ...


def defects_from_detection(
    detection: Detection,
    thresholds: Thresholds,
    mm_per_px: float | None,
    image: np.ndarray | None = None,
    reference_rgb: Sequence[int] | None = None,
    audible: bool = False,
) -> list[Defect]:
    """Measured defects from one image's detection (batch of 1, full image size).

    With ``audible`` (the tap test rang wrong) and no region the maps call a crack, the
    most crack-like of the regions they call a scratch is the crack: the two look alike
    as thin lines, but only a crack changes how the part rings.
    """
    anomaly = detection.anomaly_map[0]  # (H, W)
    class_maps = detection.class_maps[0]  # (K, H, W)
    reference = np.asarray(reference_rgb) if reference_rgb is not None else None
    regions = connected_components(
        anomaly >= thresholds.pixel, mm_per_px or 1.0, min_area_px=thresholds.min_area_px
    )
    # Each region read through its box: regions x frame-size work would not scale.
    local = [(comp.bbox.window, comp.mask[comp.bbox.window]) for comp in regions]
    strengths = [class_maps[:, r, c][:, m].mean(axis=1) for (r, c), m in local]  # each (K,)
    names = [detection.classes[int(np.argmax(s))] if len(s) else "anomaly" for s in strengths]
    if audible and "crack" in detection.classes and "crack" not in names:
        crack = detection.classes.index("crack")
        lines = [i for i, name in enumerate(names) if name == "scratch"]
        if lines:
            names[max(lines, key=lambda i: strengths[i][crack])] = "crack"
    return [
        measure_defect(comp, name, mm_per_px, image, reference, float(anomaly[r, c][m].max()))
        for comp, name, ((r, c), m) in zip(regions, names, local, strict=True)
    ]


def part_defects(
    detection: Detection,
    thresholds: Thresholds,
    mm_per_px: float | None,
    image: np.ndarray | None = None,
    reference_rgb: Sequence[int] | None = None,
) -> list[Defect]:
    """The part's defects as the line decides them (one image, batch of 1).

    The image's measured regions when the part score reaches the image threshold, and
    the tap test's finding: a part that rings wrong has a crack, visible (see
    :func:`defects_from_detection`) or, with none to see, internal.
    """
    audible = tap_rings_wrong(detection, thresholds)
    defects = []
    if float(detection.part_score[0]) >= thresholds.image:
        defects = defects_from_detection(
            detection, thresholds, mm_per_px, image, reference_rgb, audible=audible
        )
    if audible and not any(d.defect_class == "crack" for d in defects):
        defects.append(Defect("crack", {}, zone=None, score=float(detection.audio_score[0])))
    return defects


def tap_rings_wrong(detection: Detection, thresholds: Thresholds) -> bool:
    """Whether the part's tap test (batch of 1) reaches the audio threshold: a crack."""
    return detection.audio_score is not None and float(detection.audio_score[0]) >= thresholds.audio


@dataclass
class Inspector:
    """Decides parts with a detector, thresholds and a standard.

    Parameters
    ----------
    detector
        Torch or ONNX Runtime detector.
    standard
        The product's defect standard.
    thresholds
        Calibrated thresholds (the model's, or the station's calibration).
    calibration_version
        Recorded with every verdict.
    """

    detector: Detector
    standard: Standard
    thresholds: Thresholds = Thresholds()
    calibration_version: str | None = None

    def inspect(self, observation: Observation) -> InspectionResult:
        """One verdict for the part: the worst over its frames."""
        start = time.perf_counter()
        try:
            results = [
                self._inspect_frame(observation, i, frame)
                for i, frame in enumerate(observation.frames)
            ]
            if not results:
                raise ValueError("observation has no frames")
            result = _worst(results)
        except Exception as exc:  # any failure must become REVIEW, never PASS
            result = self._failure(observation.part_id, exc)
        elapsed = (time.perf_counter() - start) * 1000
        return replace(
            result,
            model_version=self.detector.version,
            calibration_version=self.calibration_version or self.thresholds.version,
            timings_ms={**result.timings_ms, "total": elapsed},
        )

    def _inspect_frame(
        self, observation: Observation, index: int, frame: Frame
    ) -> InspectionResult:
        t0 = time.perf_counter()
        detection = self.detector.detect(frame.image, observation.audio)
        t1 = time.perf_counter()
        part_score = float(detection.part_score[0])
        image_score = float(detection.image_score[0])
        audio_score = None if detection.audio_score is None else float(detection.audio_score[0])
        scores = {"part": part_score, "image": image_score}
        if audio_score is not None:
            scores["audio"] = audio_score
        if not all(np.isfinite(v) for v in scores.values()):
            raise ValueError(f"model returned non-finite scores {scores}")
        size = (frame.width, frame.height)
        reference = observation.metadata.get("reference_rgb")
        defects = part_defects(detection, self.thresholds, frame.mm_per_px, frame.image, reference)
        defects = [replace(d, frame_index=index) for d in defects]
        result = apply_standard(self.standard, defects, observation.part_id, image_size=size)
        if part_score >= self.thresholds.image and not defects:
            result = replace(
                result,
                verdict=Verdict.REVIEW,
                action=Action.REVIEW,
                reasons=(
                    f"part score {part_score:.3f} >= threshold {self.thresholds.image:.3f} "
                    "but no region to measure; needs review",
                ),
            )
        timings = {"detect": (t1 - t0) * 1000, "decide": (time.perf_counter() - t1) * 1000}
        return replace(result, scores=scores, timings_ms=timings)

    def _failure(self, part_id: str, exc: Exception) -> InspectionResult:
        return InspectionResult(
            part_id=part_id,
            verdict=Verdict.REVIEW,
            severity=None,
            action=Action.REVIEW,
            reasons=(f"inspection failed: {type(exc).__name__}: {exc}",),
            standard_id=self.standard.id,
            standard_version=self.standard.version,
        )


_VERDICT_ORDER = {Verdict.PASS: 0, Verdict.REVIEW: 1, Verdict.REJECT: 2}


def _worst(results: list[InspectionResult]) -> InspectionResult:
    """Combine frames: the strictest verdict, every decision and reason kept."""
    worst = max(results, key=lambda r: (_VERDICT_ORDER[r.verdict], r.action.rank))
    if len(results) == 1:
        return worst
    scores = {k: max(r.scores.get(k, 0.0) for r in results) for r in results for k in r.scores}
    timings = {k: sum(r.timings_ms.get(k, 0.0) for r in results) for k in worst.timings_ms}
    return replace(
        worst,
        decisions=tuple(d for r in results for d in r.decisions),
        reasons=tuple(reason for r in results for reason in r.reasons),
        scores=scores,
        timings_ms=timings,
    )
