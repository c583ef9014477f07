"""From an observation to a verdict: detect, measure, apply the standard. Torch-free.

The same code decides on the edge (ONNX Runtime detector) and in Python (torch
detector): a :class:`Detector` turns one image (and the part's audio) into a
:class:`~inspection.models.outputs.Detection`; this module turns that into measured
defects and the standard's verdict.

Decision policy
---------------
- The part score (image and audio fused) is compared with the model's calibrated image
  threshold. Below it the part passes: the threshold, set on held-out good parts, is
  what bounds the false-reject rate. A plant may set a review band below it
  (:func:`with_review_band`): a part that would pass with a score in the band goes to
  REVIEW instead, trading reviews of good parts for fewer wrong PASSes. A fused
  detector may take a second look under it (``Thresholds.region``): the heads' regions
  whose peak reaches a level no good part of the product reached are measured and judged
  all the same (a speck the part score averaged away is still a speck).
- At or above it, the anomaly map is cut at the pixel threshold; each connected region
  is one defect, of the class whose map is strongest over it, measured in mm (length,
  width, area) and ΔE, and judged by the standard. The pieces of a scratch or crack the
  map broke (regions of that class within ``JOIN_GAP_PX``) are one defect; a scratch,
  crack or speck of dirt is measured on the image around its region rather than on the
  map's blurred edges (:func:`~inspection.measure.gauge_on_image`), a scratch or
  crack followed on the image past its region's ends, since the map lights a long
  faint one only in part (:func:`~inspection.measure.follow_stroke`), and a region's
  colour on its core, against the surface under it read along the light on the face
  (:func:`~inspection.measure.surface_along_light`). A part that scores as defective
  but shows no region to measure goes to REVIEW.
- Where the station's good parts have a face with a grain (brushed, ground, rolled) and
  show no lines in it (learned with its normality model: ``Thresholds.grain_scratches``),
  whatever the part score, the image is searched for the thin lines along the grain
  that the map took for streaks of it (:func:`with_grain_scratches`): each is a
  scratch, or the rest of one the map lit in part.
- Likewise, where its normality model learned how far off the surface around them its
  good faces' boxes read (``Thresholds.colour_patches``), the face is searched for the
  broad, even colour patches beyond that which the map did not light
  (:func:`with_colour_patches`): each is a colour deviation, measured as the map's are.
- A part whose tap test rings wrong has a crack: the most crack-like region the maps
  call a scratch (the two look alike), or an internal crack when none is visible.
- Any error on this path (unreadable frame, model failure, NaN scores) gives REVIEW
  with its reason: an error is never a PASS.

One decision path
-----------------
:func:`decide` is the only place where scores meet thresholds to make a verdict: the
line (:class:`Inspector`, and through it ``demo`` and ``ask``) and ``inspection
evaluate`` (which keeps the detection for its pixel metrics) both call it, so what
evaluation measures is what the line does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.errors import ModelError, UserError
from inspection.grain import GRAIN_KEY, GrainRule, grain_scratches
from inspection.measure import (
    STROKE_CLASSES,
    Component,
    DentShading,
    connected_components,
    dent_shading,
    depressions,
    depth_below_surface,
    fill_dropouts,
    follow_stroke,
    footprint_below_surface,
    fragment_groups,
    gauge_on_image,
    join_fragments,
    mask_bbox,
    measure_defect,
    measure_region,
    one_signed_share,
)
from inspection.models.outputs import Detection
from inspection.patches import PATCH_KEY, PatchRule, colour_patches
from inspection.standards import GuardBand, Standard, apply_standard, load_guard_band
from inspection.standards.guard import ShadingDepth
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

SPECK_CLASS = "contamination"

GAUGED_CLASSES = STROKE_CLASSES | {SPECK_CLASS}
"""Classes measured on the image around their region
(:func:`~inspection.measure.gauge_on_image`), not on the map's blur, which reads a
stroke 0.2-0.4 mm wider and a speck 5-30 % larger in area than it is."""

SPECK_EDGE = 1 / 3
"""Where a speck of dirt's edge is cut, as a share of its peak contrast. Oil and dust
thin out towards their rim: at half maximum a speck of 1.56 mm² read 1.41 (the
standard's limit 1.5); at a third its rim is kept, and hard-edged specks read the same
(benchmarks/README.md, "Specks of dirt: gauged")."""

SPECK_ONE_SIGNED = 0.7
"""The least :func:`~inspection.measure.one_signed_share` of a region the maps call
contamination for it to be gauged. A speck is one colour laid on the surface (share
0.86-1.0 on bracket and tile); a dent shows through its shading, a lit slope and a
shadowed one (0.46-0.49). Gauged to its dark slope alone, a dent the maps called
contamination read under the area limit and passed; under this share the map's larger
region is kept, the conservative reading when the class is wrong."""

SPECK_MAX_PX = 5
"""The longest (px) a region the maps call a scratch or crack may be and still be a speck
of dirt, when it is also less than twice as long as it is wide: a few pixels across, a
stroke's shape is not resolved, and a stroke is longer than it is wide. Tile's glaze is
speckled; beside a real defect its specks were named a crack (any crack rejects) or a
scratch over 0.5 mm wide, and rejected tolerable parts. As specks, they are judged by
the contamination clauses (benchmarks/README.md, "Specks the maps call a stroke"). A
crack on a part whose tap test rings wrong stays a crack."""

JOIN_GAP_PX = 8
"""How close (px, centre to centre) the pieces of one stroke are joined. Chosen on
validation parts (seed 11, not the held-out seed 7) among 0-12 px: the median length
error of scratches and cracks summed over bracket, panel and tile fell from 2.28 mm
(0 px) to 1.98 mm (8 px), no region spanned two true strokes, and no verdict changed
(benchmarks/README.md, "Broken strokes"), measured on the map; with the stroke gauge
the figure is 0.26 mm at 8 px ("A stroke gauge on the image")."""

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
    join_gap_px: int = JOIN_GAP_PX  # pieces of a stroke this close are one (_join_strokes)
    version: str = "uncalibrated"
    review: float | None = None  # part score at or above (under `image`): REVIEW, not PASS
    # Part score under `image`: the heads' regions whose peak reaches this are measured
    # all the same (a fused detector's second look, calibrated on the product's good parts)
    region: float | None = None
    # The measurement's uncertainty: a reading within it of a clause's limit is REVIEW
    guard: GuardBand | None = None
    # A frame's height map is searched for dents the camera missed (with_profiler_dents)
    profiler_dents: bool = False
    # The image is searched for lines along the face's grain (the station's GrainRule)
    grain_scratches: bool = False
    # The face is searched for faint colour patches the map missed (the station's rule)
    colour_patches: PatchRule | None = None


def with_guard_band(thresholds: Thresholds, guard: GuardBand | str | Path | None) -> Thresholds:
    """``thresholds`` with a guard band (:mod:`inspection.standards.guard`), or the file
    that holds one (``guard_band.json``, written by ``inspection evaluate``): a defect
    whose reading lies within the measurement's uncertainty of a stricter clause's limit
    goes to REVIEW instead of passing (and, where the band proves rejection too, one the
    reading rejects by less than its band goes to REVIEW instead of rejected). ``None``
    returns ``thresholds`` unchanged. The band is part of the recorded version.

    Raises
    ------
    GuardBandError
        A file that is missing or malformed (a :class:`~inspection.errors.UserError`).
    """
    if guard is None:
        return thresholds
    if not isinstance(guard, GuardBand):
        guard = load_guard_band(guard)
    return replace(thresholds, guard=guard, version=f"{thresholds.version}; {guard.version}")


def with_profiler_dents(thresholds: Thresholds, search: bool) -> Thresholds:
    """``thresholds`` under which a frame's height map is also searched for dents the
    camera missed (:func:`profiler_dents`): a wide dent a few hundredths of a millimetre
    deep barely shades a photograph, and a profiler sees it plainly. The search keeps to
    the part's face: walls (:data:`~inspection.measure.WALL_SLOPE`) bound it, so the belt
    beside the part and through its holes, a notch or a machined pocket is no dent. For
    faces without a designed recess as gently dished as a dent (an embossed dish): such
    a recess is a depression too, unless the profiler's export masks it (NaN there, as a
    profiler's software masks a region out): a depression touching a point read as
    nothing is not searched. ``False`` returns ``thresholds`` unchanged; the search is
    part of the recorded version."""
    if not search:
        return thresholds
    return replace(thresholds, profiler_dents=True, version=f"{thresholds.version}; profiler dents")


def with_review_band(thresholds: Thresholds, review_from: float | None) -> Thresholds:
    """``thresholds`` with a review band: a part that would pass with a part score of at
    least ``review_from`` (and under the image threshold) goes to REVIEW instead.
    ``None`` returns ``thresholds`` unchanged. The band is part of the recorded version.

    Raises
    ------
    UserError
        ``review_from`` not a number above 0 and under the image threshold.
    """
    if review_from is None:
        return thresholds
    if not (math.isfinite(review_from) and 0 < review_from < thresholds.image):
        raise UserError(
            f"review band start {review_from:g} must be above 0 and under the model's image "
            f"threshold {thresholds.image:.3f} (scores at or above it are already measured)"
        )
    version = f"{thresholds.version}; review from {review_from:g}"
    return replace(thresholds, review=float(review_from), version=version)


def thresholds_of(metadata: dict[str, Any]) -> Thresholds:
    """The thresholds recorded in a model's metadata, as the line uses them: the audio
    and pixel ones no lower than :data:`AUDIO_THRESHOLD_FLOOR` and
    :data:`PIXEL_THRESHOLD_FLOOR` (calibration records percentiles of good parts, which
    can sit inside their noise, or far under the heads' own boundary); the grain's search
    and the colour patches' where the metadata holds the station's rules
    (:class:`~inspection.grain.GrainRule`, :class:`~inspection.patches.PatchRule`)."""
    t = metadata.get("thresholds") or {}
    return Thresholds(
        image=float(t.get("image", 0.5)),
        pixel=max(PIXEL_THRESHOLD_FLOOR, float(t.get("pixel", 0.5))),
        audio=max(AUDIO_THRESHOLD_FLOOR, float(t.get("audio", 0.5))),
        version=str(metadata.get("calibration_version", "training-holdout")),
        region=None if t.get("region") is None else float(t["region"]),
        grain_scratches=GrainRule.from_dict(metadata.get(GRAIN_KEY)) is not None,
        colour_patches=PatchRule.from_dict(metadata.get(PATCH_KEY)),
    )


def line_thresholds(
    metadata: dict[str, Any],
    *,
    review_from: float | None = None,
    guard_band: GuardBand | str | Path | None = None,
    profiler_dents: bool = False,
) -> Thresholds:
    """The thresholds a line decides with: the model's (:func:`thresholds_of`) with the
    plant's settings on top, in one order wherever parts are decided: a review band
    (:func:`with_review_band`), a guard band or its file (:func:`with_guard_band`) and
    the height maps' search (:func:`with_profiler_dents`). Each is part of the recorded
    version; each raises as its function does."""
    thresholds = with_review_band(thresholds_of(metadata), review_from)
    return with_profiler_dents(with_guard_band(thresholds, guard_band), profiler_dents)


class Detector(Protocol):
    """Anything that turns one image (and the part's audio) into a full-size detection."""

    classes: tuple[str, ...]
    version: str

    def detect(self, image: np.ndarray, audio: AudioClip | None = None) -> Detection: ...


class RecordingDetector:
    """A detector that keeps its last detection, or replays one already made.

    Wrapped around an :class:`Inspector`'s detector, it lets a caller that needs the
    detection too (the edge payload, the decoder's request) get it from the same run
    that made the verdict, without a second pass or a second decision path.

    Parameters
    ----------
    detector
        The detector that runs.
    replay
        A detection already made (an evaluation that has run the model once): returned
        instead of running ``detector``.
    """

    def __init__(self, detector: Detector, replay: Detection | None = None):
        self.detector = detector
        self.version = detector.version
        self.classes = getattr(detector, "classes", ())
        self.replay = replay
        self.last: Detection | None = None

    def detect(self, image: np.ndarray, audio: AudioClip | None = None) -> Detection:
        self.last = None  # a failed run leaves no stale detection behind
        self.last = self.replay if self.replay is not None else self.detector.detect(image, audio)
        return self.last


def load_detector(
    path: str | Path, verify: bool = True, normality: str | Path | None = None
) -> tuple[Any, dict[str, Any]]:
    """A detector and its metadata from a model directory, an edge bundle folder or an
    exported ``.onnx`` file.

    A model directory gives a torch ``TorchDetector``; a ``.onnx`` graph or a bundle the
    torch-free ``OnnxDetector`` (a bundle's thresholds and calibration version are its
    manifest's, as the edge box decides with them). Their files are checked against
    their recorded SHA-256 unless ``verify`` is off (development only; a bundle's
    manifest is always checked). Torch is imported only for a model directory.

    With ``normality`` (a feature normality model of the product, in any of the same
    forms: ``inspection train --normal-only``), the two run as one
    :class:`~inspection.models.fusion.FusedDetector`: a region only the normality model
    finds goes to REVIEW instead of passing.

    Raises
    ------
    ModelError
        A missing or modified model, or a file that is none of these.
    """
    if normality is not None:
        return with_normality(load_detector(path, verify)[0], normality, verify)
    from inspection.edge.bundle import is_bundle

    path = Path(path)
    if path.suffix == ".onnx":
        from inspection.export.runtime import OnnxDetector

        detector = OnnxDetector(path, verify=verify)
        return detector, detector.metadata
    if is_bundle(path):
        return _bundle_detector(path, verify)
    if path.is_file():
        raise ModelError(
            f"{path}: not a model directory, an edge bundle folder or a .onnx edge graph"
        )
    from inspection.models import load_model
    from inspection.models.detector import TorchDetector

    model = load_model(path, verify=verify)
    return TorchDetector(model), model.metadata


def with_normality(
    heads: Any, normality: str | Path, verify: bool = True
) -> tuple[Any, dict[str, Any]]:
    """``heads`` (a loaded detector) fused with the normality model at ``normality`` (any
    form :func:`load_detector` reads), and the fusion's metadata (see ``load_detector``).
    A second-look level kept beside the normality model for these heads
    (:func:`~inspection.models.fusion.read_second_look`) is used."""
    from inspection.models.fusion import FusedDetector, read_second_look

    level = read_second_look(Path(normality), heads.version)
    fused = FusedDetector(heads, load_detector(normality, verify)[0], second_look=level)
    return fused, fused.metadata


def _bundle_detector(path: Path, verify: bool) -> tuple[Any, dict[str, Any]]:
    from inspection.edge.bundle import load_bundle

    detector = load_bundle(path).detector(verify=verify)
    return detector, detector.metadata


def defects_from_detection(
    detection: Detection,
    thresholds: Thresholds,
    mm_per_px: float | None,
    image: np.ndarray | None = None,
    reference_rgb: Sequence[int] | None = None,
    audible: bool = False,
) -> list[Defect]:
    """Measured defects from one image's detection (batch of 1, full image size).

    A region the maps call a scratch or crack that has a speck's size and shape is a
    speck of dirt (:data:`SPECK_MAX_PX`), unless it is a crack on a part whose tap rings
    wrong. With ``audible`` (the tap test rang wrong) and no region the maps call a
    crack, the most crack-like of the regions they call a scratch is the crack: the two
    look alike as thin lines, but only a crack changes how the part rings.
    """
    anomaly = detection.anomaly_map[0]  # (H, W)
    class_maps = detection.class_maps[0]  # (K, H, W)
    reference = np.asarray(reference_rgb) if reference_rgb is not None else None
    regions = connected_components(
        anomaly >= thresholds.pixel, mm_per_px or 1.0, min_area_px=thresholds.min_area_px
    )
    names = _strongest(_class_strengths(regions, class_maps), detection.classes)
    regions, names = _join_strokes(regions, names, thresholds.join_gap_px)
    names = _specks_not_strokes(regions, names, detection.classes, audible)
    if audible and "crack" in detection.classes and "crack" not in names:
        crack = detection.classes.index("crack")
        lines = [i for i, name in enumerate(names) if name == "scratch"]
        if lines:
            strengths = _class_strengths([regions[i] for i in lines], class_maps)
            names[lines[int(np.argmax([s[crack] for s in strengths]))]] = "crack"
    return [
        measure_defect(
            _gauged(comp, name, image), name, mm_per_px, image, reference, _peak(anomaly, comp)
        )
        for comp, name in zip(regions, names, strict=True)
    ]


def _gauged(comp: Component, name: str, image: np.ndarray | None) -> Component:
    """A fine defect (:data:`GAUGED_CLASSES`) measured on the image
    (:func:`~inspection.measure.gauge_on_image`) where there is one and the defect stands
    out of it; any other region, one too faint to gauge, and a speck whose shading reads
    as a dent's (:data:`SPECK_ONE_SIGNED`), as the map cut it."""
    if image is None or name not in GAUGED_CLASSES:
        return comp
    if name != SPECK_CLASS:  # a stroke, followed past the map's ends where it goes on
        return follow_stroke(image, gauge_on_image(image, comp) or comp)
    if one_signed_share(image, comp) < SPECK_ONE_SIGNED:
        return comp
    return gauge_on_image(image, comp, edge=SPECK_EDGE) or comp


def _peak(anomaly: np.ndarray, comp: Component) -> float:
    """The anomaly map's highest value over a region (read through its box)."""
    window = comp.bbox.window
    return float(anomaly[window][comp.mask[window]].max())


def _class_strengths(regions: list[Component], class_maps: np.ndarray) -> list[np.ndarray]:
    """Each region's mean of every class map over its pixels, each ``(K,)``; read
    through the region's box: regions x frame-size work would not scale."""
    windows = [(comp.bbox.window, comp.mask[comp.bbox.window]) for comp in regions]
    return [class_maps[:, rows, cols][:, inside].mean(axis=1) for (rows, cols), inside in windows]


def _strongest(strengths: list[np.ndarray], classes: Sequence[str]) -> list[str]:
    return [classes[int(np.argmax(s))] if len(s) else "anomaly" for s in strengths]


def _join_strokes(
    regions: list[Component], names: list[str], gap_px: int
) -> tuple[list[Component], list[str]]:
    """The pieces of one broken stroke joined: regions of one line-shaped class (a
    scratch, a crack) within ``gap_px`` of each other are one defect
    (:func:`~inspection.measure.join_fragments`), where its first piece was. Other
    classes keep their regions: two specks of dirt side by side are two, and a standard
    counts them."""
    placed = [(i, c, n) for i, (c, n) in enumerate(zip(regions, names, strict=True))]
    for name in STROKE_CLASSES.intersection(names):
        same = [i for i, n in enumerate(names) if n == name]
        placed = [item for item in placed if item[2] != name]
        for comp in join_fragments([regions[i] for i in same], gap_px):
            first = next(i for i in same if _holds(comp.mask, regions[i]))
            placed.append((first, comp, name))
    placed.sort(key=lambda item: item[0])
    return [comp for _, comp, _ in placed], [name for _, _, name in placed]


def _specks_not_strokes(
    regions: list[Component], names: list[str], classes: Sequence[str], audible: bool
) -> list[str]:
    """``names``, with each region the maps call a scratch (or a crack, unless the tap
    test rang wrong) that is a speck's size and shape (:data:`SPECK_MAX_PX`) called a
    speck of dirt, where the model knows one."""
    if SPECK_CLASS not in classes:
        return names
    strokes = {"scratch"} if audible else set(STROKE_CLASSES)
    return [
        SPECK_CLASS if name in strokes and _speck_shaped(comp) else name
        for comp, name in zip(regions, names, strict=True)
    ]


def _speck_shaped(comp: Component) -> bool:
    return comp.length_px <= SPECK_MAX_PX and comp.length_px < 2 * comp.width_px


def _holds(mask: np.ndarray, piece: Component) -> bool:
    """Whether ``mask`` holds any of ``piece``'s pixels (read through its box)."""
    window = piece.bbox.window
    return bool(mask[window][piece.mask[window]].any())


def part_defects(
    detection: Detection,
    thresholds: Thresholds,
    mm_per_px: float | None,
    image: np.ndarray | None = None,
    reference_rgb: Sequence[int] | None = None,
) -> list[Defect]:
    """The part's defects as the line decides them (one image, batch of 1).

    The image's measured regions when the part score reaches the image threshold (under
    it, those of the heads' regions whose peak reaches ``thresholds.region``, when
    set), and the tap test's finding: a part that rings wrong has a crack, visible (see
    :func:`defects_from_detection`) or, with none to see, internal.
    """
    audible = tap_rings_wrong(detection, thresholds)
    flagged = float(detection.part_score[0]) >= thresholds.image
    defects = []
    if flagged or _second_look(detection, thresholds):
        defects = defects_from_detection(
            detection, thresholds, mm_per_px, image, reference_rgb, audible=audible
        )
    if not flagged:  # a second look: the regions that reach its level (the heads' only:
        # a fused map holds the normality model's regions only on a part it flags)
        defects = [d for d in defects if d.score >= thresholds.region]
    if audible and not any(d.defect_class == "crack" for d in defects):
        defects.append(Defect("crack", {}, zone=None, score=float(detection.audio_score[0])))
    return defects


def _second_look(detection: Detection, thresholds: Thresholds) -> bool:
    """Whether a part under the image threshold has a region worth measuring: some pixel
    of its map reaches ``thresholds.region`` (checked before any region is cut)."""
    return (
        thresholds.region is not None and float(detection.anomaly_map[0].max()) >= thresholds.region
    )


def tap_rings_wrong(detection: Detection, thresholds: Thresholds) -> bool:
    """Whether the part's tap test (batch of 1) reaches the audio threshold: a crack."""
    return detection.audio_score is not None and float(detection.audio_score[0]) >= thresholds.audio


def flags_part(detection: Detection, thresholds: Thresholds) -> bool:
    """Whether the detector calls the part defective (batch of 1): its part score reaches
    the image threshold or its tap test rings wrong.

    The detection's own call, which detection metrics count; the part's verdict is
    :func:`decide`'s (a flagged part with nothing to measure, or whose defects the
    standard tolerates, is not a REJECT).
    """
    return float(detection.part_score[0]) >= thresholds.image or tap_rings_wrong(
        detection, thresholds
    )


def detection_scores(detection: Detection) -> dict[str, float]:
    """The part's scores (batch of 1) as recorded with its verdict: ``part``, ``image``
    and, with a tap test, ``audio``."""
    scores = {"part": float(detection.part_score[0]), "image": float(detection.image_score[0])}
    if detection.audio_score is not None:
        scores["audio"] = float(detection.audio_score[0])
    return scores


def decide(
    detection: Detection,
    frame: Frame,
    standard: Standard,
    thresholds: Thresholds,
    part_id: str = "",
    reference_rgb: Sequence[int] | None = None,
    frame_index: int = 0,
) -> InspectionResult:
    """The verdict on one frame from its detection: the line's one decision.

    Measures the part's defects (:func:`part_defects`), judges them by ``standard`` and
    sends to REVIEW what cannot be decided (see the module's decision policy). The line
    (:class:`Inspector`) and ``inspection evaluate`` both decide here.

    Parameters
    ----------
    detection
        The frame's detection (batch of 1, maps at the frame's size).
    frame
        The frame it was made from: its image (for colour) and scale.
    standard
        The product's defect standard.
    thresholds
        The thresholds the line uses (see :func:`thresholds_of`).
    part_id
        Carried into the result.
    reference_rgb
        The part's nominal colour, for ΔE; ``None`` measures against local light only.
    frame_index
        Recorded on each defect.

    Returns
    -------
    InspectionResult
        The standard's verdict with the scores (no timings, model or calibration
        version: the caller adds them). Non-finite scores give REVIEW with the reason.
    """
    scores = detection_scores(detection)
    if not all(np.isfinite(v) for v in scores.values()):
        reason = f"model returned non-finite scores {scores}; needs review"
        return review_result(standard, part_id, reason)
    defects = part_defects(detection, thresholds, frame.mm_per_px, frame.image, reference_rgb)
    searched = ()  # the record says where a defect the map missed came from
    for search, found in _searches(thresholds):
        mapped = len(defects)
        defects = search(detection, frame, defects, thresholds, reference_rgb)
        if len(defects) > mapped:
            searched = (*searched, f"{len(defects) - mapped} {found} where the map lit nothing")
    if frame.height_map is not None:
        profiled = replace(frame, height_map=fill_dropouts(frame.height_map))
        defects = [with_profile(d, profiled.height_map, frame.mm_per_px) for d in defects]
        if thresholds.profiler_dents:
            defects += profiler_dents(profiled, defects, reference_rgb)
    if thresholds.guard is not None and thresholds.guard.shading is not None:
        defects = [with_shading_depth(d, frame, thresholds.guard.shading) for d in defects]
    defects = [replace(d, frame_index=frame_index) for d in defects]
    size = (frame.width, frame.height)
    result = apply_standard(standard, defects, part_id, image_size=size, guard=thresholds.guard)
    result = with_part_score(result, scores["part"], thresholds)
    notes = detection.notes[0] if detection.notes else ()  # what the detector set aside
    return replace(result, scores=scores, reasons=(*result.reasons, *searched, *notes))


Search = Callable[..., list[Defect]]  # (detection, frame, found, thresholds, reference_rgb)


def _searches(thresholds: Thresholds) -> list[tuple[Search, str]]:
    """The searches for what the map missed that the station's rules switch on, each with
    what the record calls its finds."""
    searches: list[tuple[Search, str]] = []
    if thresholds.grain_scratches:
        searches.append((with_grain_scratches, "scratch(es) found along the face's grain"))
    if thresholds.colour_patches is not None:
        searches.append((with_colour_patches, "colour patch(es) found off the surface around them"))
    return searches


def with_part_score(
    result: InspectionResult, part_score: float, thresholds: Thresholds
) -> InspectionResult:
    """The standard's verdict on a part's measured defects (``result``), with what its
    part score says beside them: REVIEW for a part the score flags with no region to
    measure, and for one the standard passes whose score lies in the review band."""
    if part_score >= thresholds.image and not result.decisions:
        reason = (
            f"part score {part_score:.3f} >= threshold {thresholds.image:.3f} "
            "but no region to measure; needs review"
        )
    elif result.verdict is Verdict.PASS and in_review_band(part_score, thresholds):
        band = f"[{thresholds.review:.3f}, {thresholds.image:.3f})"
        reason = f"part score {part_score:.3f} in the review band {band}; needs review"
    else:
        return result
    return replace(result, verdict=Verdict.REVIEW, action=Action.REVIEW, reasons=(reason,))


DEPTH_CLASSES = frozenset({"dent"})
"""Depressions whose depth a frame's height map gives (``depth_mm``): the class the
products' standards bound by depth. (The synthetic line's scratches have no relief, so
a scratch's depth could not be checked against the truth: not read.)"""


def with_profile(
    defect: Defect, height_map: np.ndarray, mm_per_px: float | None, *, sizes: bool = True
) -> Defect:
    """A depression (:data:`DEPTH_CLASSES`) measured on a 3D profiler's height map.

    Its length, width and area become those of the depression's footprint
    (:func:`~inspection.measure.footprint_below_surface`), and its ``depth_mm`` is read
    over the footprint and the region together
    (:func:`~inspection.measure.depth_below_surface`). Any other defect comes back as it
    was. Where the profiler shows no footprint, or the station has no scale, the sizes
    stay the image's; where it saw nothing at all, the depth stays unknown (a depth
    clause then goes to REVIEW, as without a profiler).

    The region (mask, box, zone) stays the one the maps found: the footprint measures
    it, and comes with it as ``footprint`` (the overlays outline it). ``sizes=False``
    reads the depth alone (the ground-truth station, whose masks are exact)."""
    if defect.defect_class not in DEPTH_CLASSES or defect.mask is None:
        return defect
    attributes, region = dict(defect.attributes), defect.mask
    footprint = (
        footprint_below_surface(height_map, region, mm_per_px) if sizes and mm_per_px else None
    )
    if footprint is not None:
        attributes.update(measure_region(footprint, mm_per_px).attributes(defect.defect_class))
        region = region | footprint
    depth = depth_below_surface(height_map, region, mm_per_px)
    if depth is not None:
        attributes["depth_mm"] = round(depth, 4)
    box = None if footprint is None else mask_bbox(footprint)
    return replace(defect, attributes=attributes, footprint=footprint, footprint_bbox=box)


def with_shading_depth(defect: Defect, frame: Frame, shading: ShadingDepth) -> Defect:
    """A depression (:data:`DEPTH_CLASSES`) that no profiler measured, with the
    ``depth_mm`` its shading on the photograph reads (:class:`ShadingDepth`, fitted with
    the guard band whose ``depth_mm`` band is its uncertainty): 0 for a region too steep
    to read that has no lit slope, a dark spot (:meth:`ShadingDepth.depth_mm`). Any
    other defect, one whose surface cannot be read around it, or a steep dent
    (:data:`~inspection.measure.SHADING_LINEAR_MAX`) comes back as it was."""
    if "depth_mm" in defect.attributes:  # a profiler measured it
        return defect
    read = readable_shading(defect, frame.image, frame.mm_per_px)
    return defect if read is None else with_depth_read(defect, read, shading, frame.mm_per_px)


def readable_shading(
    defect: Defect, image: np.ndarray, mm_per_px: float | None
) -> DentShading | None:
    """The shading a depression's depth is read from (:func:`with_shading_depth`);
    ``None`` for any other defect, one without a mask or a scale, or one whose surface
    cannot be read around it."""
    if defect.defect_class not in DEPTH_CLASSES or defect.mask is None or not mm_per_px:
        return None
    return dent_shading(image, defect.mask)


def with_depth_read(
    defect: Defect, read: DentShading, shading: ShadingDepth, mm_per_px: float
) -> Defect:
    """``defect`` with the ``depth_mm`` the station's ``shading`` reads from ``read``, or
    as it was where that reads none (a steep dent)."""
    depth = shading.depth_mm(read, mm_per_px)
    if depth is None:
        return defect
    return replace(defect, attributes={**defect.attributes, "depth_mm": round(depth, 4)})


def profiler_dents(
    frame: Frame, found: Sequence[Defect], reference_rgb: np.ndarray | None = None
) -> list[Defect]:
    """The dents a frame's height map holds that no region ``found`` on the image covers
    (:func:`~inspection.measure.depressions`), measured on their footprint with their
    depth, as :func:`with_profile` measures a dent the image found. None without a
    height map or a scale (a footprint in pixels cannot meet a size clause)."""
    if frame.height_map is None or not frame.mm_per_px:
        return []
    regions = [d.mask for d in found if d.mask is not None]
    dents = []
    for footprint in depressions(frame.height_map, frame.mm_per_px):
        if any((footprint & region).any() for region in regions):
            continue  # the image found it: measured there (with_profile)
        comp = measure_region(footprint, frame.mm_per_px)
        dent = measure_defect(comp, "dent", frame.mm_per_px, frame.image, reference_rgb)
        dents.append(with_profile(dent, frame.height_map, frame.mm_per_px))
    return dents


def with_grain_scratches(
    detection: Detection,
    frame: Frame,
    found: Sequence[Defect],
    thresholds: Thresholds,
    reference_rgb: Sequence[int] | None = None,
) -> list[Defect]:
    """``found`` with the scratches along the face's grain that the map did not light
    (:func:`~inspection.grain.grain_scratches`: a brushed face's thin line the map took
    for one more streak); ``found`` as it is on a face without a grain.

    Each line clear of the regions found is followed on the image past its ends, as the
    map's scratches are. The lines and the scratches and cracks found within
    ``thresholds.join_gap_px`` of one another are one stroke, as the map's pieces are
    (:func:`~inspection.measure.fragment_groups`): the first stroke found among them,
    measured again with the lines where they make it longer (the rest of a stroke the
    map lit in part), or else a new scratch. (A line beside a stroke found is left out
    whole: there the comparison across the grain reads the stroke's own edges.)"""
    image, scale = frame.image, frame.mm_per_px or 1.0
    regions = [d.mask for d in found if d.mask is not None]
    # Cut on the image already (the gauge's cut of a faint one reads it short), followed
    lines = [
        follow_stroke(image, line) for line in grain_scratches(image, frame.mm_per_px, regions)
    ]
    if not lines:
        return list(found)
    defects: dict[int, Defect] = dict(enumerate(found))
    strokes = [
        i for i, d in enumerate(found) if d.defect_class in STROKE_CLASSES and d.mask is not None
    ]
    pieces = [measure_region(found[i].mask, scale) for i in strokes] + lines
    for group in fragment_groups(pieces, thresholds.join_gap_px):
        joined = np.zeros(image.shape[:2], bool)
        for k in group:
            if k >= len(strokes):
                joined |= pieces[k].mask
        if not joined.any():
            continue  # the map's own strokes, which its joins left apart
        first = strokes[group[0]] if group[0] < len(strokes) else None
        longer = (
            None
            if first is None
            else _lengthened(defects[first], pieces[group[0]], joined, frame, reference_rgb)
        )
        if longer is not None:
            defects[first] = longer
            continue
        whole = measure_region(joined, scale)  # a scratch the map missed whole
        score = _peak(detection.anomaly_map[0], whole)
        reference = np.asarray(reference_rgb) if reference_rgb is not None else None
        defects[len(found) + group[0]] = measure_defect(
            whole, "scratch", frame.mm_per_px, image, reference, score
        )
    return [defects[i] for i in sorted(defects)]


def with_colour_patches(
    detection: Detection,
    frame: Frame,
    found: Sequence[Defect],
    thresholds: Thresholds,
    reference_rgb: Sequence[int] | None = None,
) -> list[Defect]:
    """``found`` with the faint colour patches the map did not light
    (:func:`~inspection.patches.colour_patches` under ``thresholds.colour_patches``),
    each a colour deviation measured as the map's are (its ΔE against the reference
    under the surface's light); ``found`` as it is without the station's rule."""
    if thresholds.colour_patches is None:
        return list(found)
    regions = [d.mask for d in found if d.mask is not None]
    reference = np.asarray(reference_rgb) if reference_rgb is not None else None
    patches = colour_patches(frame.image, thresholds.colour_patches, frame.mm_per_px, regions)
    return [
        *found,
        *(
            measure_defect(
                patch,
                "color_deviation",
                frame.mm_per_px,
                frame.image,
                reference,
                _peak(detection.anomaly_map[0], patch),
            )
            for patch in patches
        ),
    ]


def _lengthened(
    defect: Defect,
    measured: Component,
    more: np.ndarray,
    frame: Frame,
    reference_rgb: Sequence[int] | None,
) -> Defect | None:
    """``defect`` (``measured`` as it is) measured again with the pixels ``more``, where
    they make it longer (by a pixel at least); ``None`` where they lie along it."""
    whole = measure_region(defect.mask | more, frame.mm_per_px or 1.0)
    if whole.length_px < measured.length_px + 1:
        return None
    reference = np.asarray(reference_rgb) if reference_rgb is not None else None
    again = measure_defect(whole, defect.defect_class, frame.mm_per_px, frame.image, reference)
    return replace(defect, attributes=again.attributes, bbox=whole.bbox, mask=whole.mask)


def in_review_band(part_score: float, thresholds: Thresholds) -> bool:
    """Whether a part score falls in the plant's review band (see :func:`with_review_band`)."""
    return thresholds.review is not None and thresholds.review <= part_score < thresholds.image


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
        reference = observation.metadata.get("reference_rgb")
        result = decide(
            detection, frame, self.standard, self.thresholds, observation.part_id, reference, index
        )
        timings = {"detect": (t1 - t0) * 1000, "decide": (time.perf_counter() - t1) * 1000}
        return replace(result, timings_ms=timings)

    def _failure(self, part_id: str, exc: Exception) -> InspectionResult:
        reason = f"inspection failed: {type(exc).__name__}: {exc}"
        return review_result(self.standard, part_id, reason)


def review_result(standard: Standard, part_id: str, reason: str) -> InspectionResult:
    """REVIEW for a part that could not be decided, with the reason: never a PASS."""
    return InspectionResult(
        part_id=part_id,
        verdict=Verdict.REVIEW,
        severity=None,
        action=Action.REVIEW,
        reasons=(reason,),
        standard_id=standard.id,
        standard_version=standard.version,
    )


def _worst(results: list[InspectionResult]) -> InspectionResult:
    """Combine frames: the strictest verdict, every decision and reason kept."""
    worst = max(results, key=lambda r: (r.verdict.rank, r.action.rank))
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
