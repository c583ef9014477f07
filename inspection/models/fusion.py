"""Trained heads fused with a feature normality model: one detector, one Detection. Torch-free.

The heads model (:class:`~inspection.models.model.DefectModel`) names K defect classes,
hears the tap test and localises what it was trained on; a feature normality model
(:class:`~inspection.models.normality.NormalityModel`) flags whatever does not look like
good parts, with one class, ``anomaly``. :class:`FusedDetector` runs both on the full
image and returns one :class:`~inspection.models.outputs.Detection` that the decision
function, ``evaluate`` and the edge runtime take as they take either member's.

Fusion rule
-----------
Each model's anomaly map, image logit and part logit are shifted by the logit of that
model's own calibrated threshold (pixel threshold for the map, image threshold for the
image and part logits, as :func:`~inspection.pipeline.thresholds_of` gives them), so each
model's threshold lands on logit 0 (probability 0.5); the fused logit is the max of the
two. A pixel or part one model alone flags is flagged: the fused model's thresholds are
0.5 for image and pixel, and the heads' for audio. The map is the heads' but in the
regions only the normality model found: measured on the union of the two maps, a scratch
grew by the normality model's blur (length error 0.24 -> 14 mm), a colour patch's mean
ΔE was diluted by the good surface around it, and the pixel AUROC fell (bracket 0.996 ->
0.956) where the two models' sub-threshold scales mixed (benchmarks/README.md).

Classes
-------
The heads' class channels, class logits, audio and tokens are kept. One class is added,
``anomaly``, for regions only the normality model found: a connected region of the fused
map (cut at 0.5, 8-connected, as :func:`~inspection.pipeline.defects_from_detection`
cuts it) that holds no pixel the heads flag gets the ``anomaly`` class channel; a region
that holds one keeps the heads' classes. The rule engine sends a class its standard does
not list to REVIEW (:func:`~inspection.standards.rules.decide_defect`), so a defect only
the normality model sees is never silently passed: a person looks at it.

Such regions are the normality model's say only on a part it flags itself (its part
score over its own image threshold). Its pixel threshold is the 99.9th percentile of good
pixels, so stray specks of a good surface cross it; on a part only the heads flag (a
tolerable colour patch, say) they were sent to REVIEW for nothing: held out, tile's
agreement 0.883 -> 0.900 and bracket's 0.940 -> 0.950, no part the standard rejects
passed for it (benchmarks/README.md, "The normality model's regions on a part only the
heads flag"). And on a part it flags, only its regions that reach its image threshold
somewhere: its part score is the mean of its top pixels, so a region all under it could
not flag a part alone, and on a part flagged for a tolerable scratch both models see, a
glaze speck by the rim sent it to REVIEW (held-out tile 0.903 -> 0.910; "The normality
model's faint regions on a part it flags for another").

The part's silhouette
---------------------
A normality model fitted on a station whose good frames show one part on a background
(:mod:`inspection.silhouette`, learned by the fit) judges the part, not the belt: a
region only it finds that holds no pixel of the part's interior (its silhouette less a
margin) is dropped, and where none of its pixels in the interior reaches its pixel
threshold its image and part logits are capped under it. PaDiM's per-position Gaussians
light the belt's specks at the frame's border as the part's place varies: held out and on
validation, 11 parts the standard passes had gone to REVIEW for them (bracket val 0.947
-> 0.970); no part the standard rejects passed for it (benchmarks/README.md, "The part's
silhouette"). A frame unlike the good ones gets no silhouette and is judged whole. The
part's record says how many of its regions were set aside (``Detection.notes``, which
:func:`~inspection.pipeline.decide` appends to the reasons): an auditor sees why a region
the normality map shows was not judged.

Second look
-----------
The heads' part score sums up a part; a small sharp mark can sit under it while the
heads' own map flags it (a 3 x 2 px speck on a panel: part score 0.08-0.46). With a
second-look level (``second_look``, a logit over the heads' pixel threshold), a part
under the image threshold still has the heads' regions whose peak reaches the level
measured and judged (``Thresholds.region``, :func:`~inspection.pipeline.part_defects`).
Only the heads': the normality model does not flag such a part, so its map holds none of
the normality model's own regions.
The level is the product's: the highest heads' pixel that good parts of the product
reach, as the image threshold is set (:func:`second_look_level`), never under the
heads' pixel threshold. On a smooth panel no good part's map reaches that threshold, so
the level is the threshold itself; on a speckled tile good parts reach logit 6-8, so only
what stands above them gets a second look (benchmarks/README.md, "A second look under
the part score").
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.errors import ModelError
from inspection.grain import GRAIN_KEY, GrainRule
from inspection.metrics import threshold_for_frr
from inspection.models.outputs import Detection
from inspection.patches import PATCH_KEY, PatchRule
from inspection.pipeline import Detector, Thresholds, thresholds_of
from inspection.silhouette import SILHOUETTE_KEY, SilhouetteRule, part_interior
from inspection.types import AudioClip

ANOMALY_CLASS = "anomaly"
"""The class of a region only the normality model found (the normality model's own class
name, :data:`inspection.models.normality.ANOMALY_CLASS`, which imports torch)."""

SECOND_LOOK_FILE = "second-look.json"
"""Beside a normality model: the heads' second-look level on its product, one per heads
model version (:func:`second_look_level`, :func:`save_second_look`), so that two models
fused with one normality model each keep their own."""

FUSED_THRESHOLD = 0.5
"""The fused detector's image and pixel thresholds: each model's own lands on logit 0."""

CLASS_MARGIN = 30.0
"""Logit margin that makes one class channel win a pixel's softmax: the others then
share at most ``exp(-30)`` (1e-13) of it."""

_EPS = 1e-12  # a threshold of exactly 0 or 1 would have an infinite logit


def threshold_logit(probability: float) -> float:
    """The logit of a probability threshold (clipped to ``[1e-12, 1 - 1e-12]``).

    Parameters
    ----------
    probability : float
        A threshold in ``[0, 1]``.

    Returns
    -------
    float
        ``log(p / (1 - p))``: the logit at which the sigmoid reaches the threshold.
    """
    p = min(max(float(probability), _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


class FusedDetector:
    """A heads detector and a normality detector run as one.

    Works with any two :class:`~inspection.pipeline.Detector` objects that carry their
    ``metadata`` (the torch ``TorchDetector`` and the ONNX Runtime ``OnnxDetector`` alike);
    see the module for the fusion rule.

    Parameters
    ----------
    heads : Detector
        The trained heads model's detector: K defect classes, optionally audio.
    normality : Detector
        The feature normality model's detector (one class). It is given no audio.
    second_look : float | None
        The heads' second-look level on this product (see the module; a logit over
        their pixel threshold, :func:`second_look_level`); ``None``: no second look.

    Attributes
    ----------
    classes : tuple[str, ...]
        The heads' classes and ``anomaly``.
    version : str
        ``fused(HEADS_VERSION+NORMALITY_VERSION)``.
    metadata : dict
        ``thresholds`` (image 0.5, pixel 0.5, the heads' audio threshold, and with a
        second look ``region``, its level as a probability),
        ``calibration_version`` and ``fusion`` (each member's version and the thresholds
        it was aligned at).

    Raises
    ------
    ModelError
        A second-look level that is not a number of 0 or more; heads that already name
        an ``anomaly`` class (a normality model given as the heads, a detector already
        fused, or the two swapped), or a normality detector that names any other class
        (trained heads given as the normality model).
    """

    def __init__(self, heads: Detector, normality: Detector, second_look: float | None = None):
        if second_look is not None:
            second_look = second_look_logit(second_look, "second-look level")
        heads_meta = _metadata(heads, "heads")
        normality_meta = _metadata(normality, "normality")
        if ANOMALY_CLASS in tuple(heads.classes):
            raise ModelError(
                f"the heads model {heads.version} already has a class {ANOMALY_CLASS!r}: "
                "is it a normality model or already fused, or are heads and normality "
                "swapped?"
            )
        if tuple(normality.classes) != (ANOMALY_CLASS,):
            raise ModelError(
                f"{normality.version} is not a feature normality model (its classes are "
                f"{', '.join(normality.classes)}, not only {ANOMALY_CLASS!r}): fit one with "
                "`inspection train --normal-only`"
            )
        self.heads = heads
        self.normality = normality
        self.heads_thresholds = thresholds_of(heads_meta)
        self.normality_thresholds = thresholds_of(normality_meta)
        self.silhouette = SilhouetteRule.from_dict(normality_meta.get(SILHOUETTE_KEY))
        self.grain = GrainRule.from_dict(normality_meta.get(GRAIN_KEY))
        self.patches = PatchRule.from_dict(normality_meta.get(PATCH_KEY))
        self.classes: tuple[str, ...] = (*heads.classes, ANOMALY_CLASS)
        self.version = f"fused({heads.version}+{normality.version})"
        calibration = f"{self.heads_thresholds.version}+{self.normality_thresholds.version}"
        thresholds: dict[str, Any] = {
            "image": FUSED_THRESHOLD,
            "pixel": FUSED_THRESHOLD,
            "audio": self.heads_thresholds.audio,
        }
        if second_look is not None:
            thresholds["region"] = 1.0 / (1.0 + math.exp(-second_look))
            calibration += f"; second look at logit {second_look:.3f}"
        if self.silhouette is not None:
            calibration += "; the normality model's regions off the part dropped"
        if self.grain is not None:
            calibration += "; lines along the grain searched"
        if self.patches is not None:
            calibration += f"; colour patches from ΔE {self.patches.level:.2f} searched"
        self.metadata: dict[str, Any] = {
            "thresholds": thresholds,
            "calibration_version": calibration,
            "fusion": {
                "rule": "max of threshold-aligned logits",
                "heads": {"version": heads.version, **_threshold_dict(self.heads_thresholds)},
                "normality": {
                    "version": normality.version,
                    **_threshold_dict(self.normality_thresholds),
                    # the pretrained weights it starts from, for every figure fused with it
                    "backbone": normality_meta.get("backbone"),
                },
                "second_look": second_look,
                "silhouette": None if self.silhouette is None else self.silhouette.to_dict(),
                # the searches the station's rules switch on, as recorded with a figure
                "grain": None if self.grain is None else self.grain.to_dict(),
                "colour_patches": None if self.patches is None else self.patches.to_dict(),
            },
        }
        if self.grain is not None:  # the station's rule, as the line reads it (thresholds_of)
            self.metadata[GRAIN_KEY] = self.grain.to_dict()
        if self.patches is not None:  # likewise
            self.metadata[PATCH_KEY] = self.patches.to_dict()

    def detect(self, image: np.ndarray, audio: AudioClip | None = None) -> Detection:
        """Run both models on one full image and fuse their detections (see :func:`fuse`).

        Parameters
        ----------
        image : np.ndarray
            The full frame, as either detector takes it.
        audio : AudioClip | None
            The part's tap test, for the heads only.

        Returns
        -------
        Detection
            Batch of 1, maps at the image's size, classes :attr:`classes`.
        """
        return self.fuse(self.heads.detect(image, audio), self.normality.detect(image), image)

    def fuse(self, heads: Detection, normality: Detection, image: np.ndarray) -> Detection:
        """The two models' detections of one full ``image`` fused at this detector's
        thresholds (:func:`fuse`), within the part's silhouette where the normality
        model recorded one and flags the part itself (else nothing of its to drop)."""
        interior = None
        if self.silhouette is not None and self._normality_flags(normality):
            interior = part_interior(image, self.silhouette)
        return fuse(
            heads,
            normality,
            self.heads_thresholds,
            self.normality_thresholds,
            None if interior is None else interior[None],
        )

    def _normality_flags(self, normality: Detection) -> bool:
        """Whether the normality model flags the part itself: only then are its regions
        labelled, or its score counted, so only then does the part's silhouette matter."""
        aligned = normality.part_logit - np.float32(
            threshold_logit(self.normality_thresholds.image)
        )
        return bool(_speaks(aligned).any())


def fuse(
    heads: Detection,
    normality: Detection,
    heads_thresholds: Thresholds,
    normality_thresholds: Thresholds,
    interior: np.ndarray | None = None,
) -> Detection:
    """One detection from the heads' and the normality model's detections of the same images.

    Parameters
    ----------
    heads, normality : Detection
        The two models' detections, same batch size and map size.
    heads_thresholds, normality_thresholds : Thresholds
        Each model's thresholds as the line uses them (``thresholds_of(metadata)``).
    interior : np.ndarray | None
        ``(B, H, W)`` bool, each image's part less a margin at its outline
        (:func:`~inspection.silhouette.part_interior`; all true for an image judged
        whole); ``None``: every image judged whole. A region only the normality model
        found that holds no pixel of it is the background's, not the part's: it is
        dropped, and where no pixel of the interior reaches the normality model's pixel
        threshold its image and part logits are capped at the interior's highest pixel
        (under it).

    Returns
    -------
    Detection
        The image and part logits: the max of the two models' logits, each shifted by the
        logit of its own threshold (image). Channel 0 of the maps: the heads' logits
        shifted by their pixel threshold's, but in the regions (>= 0.5, 8-connected) of
        the max of both models' so shifted that hold no pixel the heads flag: there that
        max, on a part the normality model flags itself (its part logit, aligned, >= 0;
        NaN counts as flagging) and in its regions that reach its image threshold
        somewhere (one all under it could not flag a part alone: not judged, and
        ``notes`` says so). So the heads measure what they found, in their own
        outline. Class
        channels: the heads' and an ``anomaly`` channel that wins the regions holding no
        pixel the heads flag and loses elsewhere. Class logits: the heads' and the
        normality model's aligned image logit. Audio, tokens and grid: the heads'.

    Raises
    ------
    ValueError
        Detections of different batch or map sizes, or heads that name ``anomaly``.
    """
    if (
        heads.maps.shape[0] != normality.maps.shape[0]
        or heads.maps.shape[2:] != (normality.maps.shape[2:])
    ):
        raise ValueError(
            f"cannot fuse detections of maps {heads.maps.shape} (heads) and "
            f"{normality.maps.shape} (normality): same batch and image size needed"
        )
    if ANOMALY_CLASS in heads.classes:
        raise ValueError(f"the heads' classes {heads.classes} already name {ANOMALY_CLASS!r}")
    pixel_h = heads.maps[:, 0] - np.float32(threshold_logit(heads_thresholds.pixel))
    pixel_n = normality.maps[:, 0] - np.float32(threshold_logit(normality_thresholds.pixel))
    union = np.maximum(pixel_h, pixel_n)  # NaN in either stays NaN: never hidden
    image_h = np.float32(threshold_logit(heads_thresholds.image))
    image_n = np.float32(threshold_logit(normality_thresholds.image))
    normality_image = normality.image_logit - image_n
    class_channels = heads.maps[:, 1:]
    normality_part = normality.part_logit - image_n  # (B,)
    # Its own regions are the normality model's say only on a part it flags itself: at
    # its pixel threshold (the 99.9th percentile of good pixels) stray specks of a good
    # surface cross it, and on a part only the heads flag they would go to review.
    unseen = _regions_heads_missed(union >= 0, pixel_h >= 0, _speaks(normality_part))
    # And only where it could flag a part by itself: somewhere its map reaches its image
    # threshold (its part score is the mean of its top pixels, so a region all under it
    # cannot). On a part it flags for a defect the heads measure, a speck elsewhere just
    # over its pixel threshold is what a good surface does now and then.
    strong = ~(normality.maps[:, 0] - image_n < 0)  # (B, H, W); NaN: strong, never hidden
    faint = unseen & ~np.stack(
        [_regions_holding(u, s) for u, s in zip(unseen, strong, strict=True)]
    )
    unseen = unseen & ~faint
    notes: tuple[tuple[str, ...], ...] = tuple(_dropped_note(f, FAINT) for f in faint)
    if interior is not None:
        # Its regions in the interior are its pixels there at or over its threshold, so
        # where the cap silences it none of its regions is kept either.
        ceiling = _interior_ceiling(pixel_n, interior)  # (B,)
        normality_image = np.minimum(normality_image, ceiling)
        normality_part = np.minimum(normality_part, ceiling)
        kept = np.stack([_regions_holding(u, i) for u, i in zip(unseen, interior, strict=True)])
        dropped = (_dropped_note(u & ~k, BACKGROUND) for u, k in zip(unseen, kept, strict=True))
        notes = tuple(note + more for note, more in zip(notes, dropped, strict=True))
        unseen = kept  # the background's regions dropped, and the part's record says so
    # The heads' map but in the regions only the normality model found: a region the
    # heads flag keeps their outline (the normality model's coarser blob around it would
    # be measured too: a scratch's length, a patch's mean colour), and below both
    # thresholds the heads' finer map ranks pixels (the two models' scales do not mix).
    anomaly = np.where(unseen, union, pixel_h)
    top = class_channels.max(1) if class_channels.shape[1] else np.zeros_like(anomaly)
    extra = np.where(unseen, top + CLASS_MARGIN, top - CLASS_MARGIN)
    maps = np.concatenate([anomaly[:, None], class_channels, extra[:, None]], axis=1)
    return Detection(
        maps=maps.astype(np.float32),
        image_logit=np.maximum(heads.image_logit - image_h, normality_image),
        class_logits=np.concatenate([heads.class_logits, normality_image[:, None]], axis=1),
        audio_logit=heads.audio_logit,
        part_logit=np.maximum(heads.part_logit - image_h, normality_part),
        patch_tokens=heads.patch_tokens,
        audio_tokens=heads.audio_tokens,
        grid=heads.grid,
        classes=(*heads.classes, ANOMALY_CLASS),
        notes=notes,
    )


def second_look_level(
    heads: Detector, good_images: Iterable[np.ndarray], target_frr: float = 0.01
) -> float:
    """The heads' second-look level on a product, from good parts of it.

    Each good image's highest heads' pixel, as a logit over their pixel threshold; the
    level passes a new good part's with probability ``1 - target_frr`` as the image
    threshold is set (:func:`~inspection.metrics.threshold_for_frr`), and is never under
    the pixel threshold (0): a region has to be one.

    Parameters
    ----------
    heads : Detector
        The heads model's detector, with its ``metadata`` (thresholds).
    good_images : Iterable[np.ndarray]
        Good parts of the product, not the ones the heads were trained on.
    target_frr : float
        Share of good parts whose map may reach the level.

    Returns
    -------
    float
        The level, a logit of 0 or more (``FusedDetector(..., second_look=)``).

    Raises
    ------
    ModelError
        No good image, or a map that is not finite on one.
    """
    shift = threshold_logit(thresholds_of(_metadata(heads, "heads")).pixel)
    peaks = [float(heads.detect(image).maps[0, 0].max()) - shift for image in good_images]
    if not peaks:
        raise ModelError("no good images to set a second-look level from")
    if not all(math.isfinite(p) for p in peaks):
        raise ModelError(f"the heads model {heads.version} gave a non-finite map on a good part")
    return max(0.0, threshold_for_frr(peaks, target_frr))


def save_second_look(
    normality_dir: Path, heads_version: str, level: float, good_parts: int
) -> Path:
    """Write a second-look level beside the normality model it was set for
    (:data:`SECOND_LOOK_FILE`), for the heads model ``heads_version``, keeping the levels
    of other heads models (a file that cannot be read is written anew); returns its
    path."""
    path = Path(normality_dir) / SECOND_LOOK_FILE
    try:
        levels = _second_look_records(path) if path.is_file() else {}
    except ModelError:
        levels = {}
    levels[heads_version] = {"level": float(level), "good_parts": int(good_parts)}
    path.write_text(json.dumps({"levels": levels}, indent=2) + "\n", encoding="utf-8")
    return path


def read_second_look(normality_dir: Path, heads_version: str) -> float | None:
    """The second-look level kept beside a normality model for the heads model
    ``heads_version``; ``None`` when there is none, or none for these heads (a level is a
    point on one heads model's map).

    Raises
    ------
    ModelError
        A file that is not such a record.
    """
    path = Path(normality_dir) / SECOND_LOOK_FILE
    if not path.is_file():
        return None
    record = _second_look_records(path).get(heads_version)
    if record is None:
        return None
    return second_look_logit(record.get("level"), f"{path}: level")


def _second_look_records(path: Path) -> dict[str, dict[str, Any]]:
    """Heads model version -> its record, from a :data:`SECOND_LOOK_FILE` (also one
    written for a single heads model, ``{"heads", "level", "good_parts"}``)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if "levels" not in record:
            record = {"levels": {record["heads"]: {"level": record["level"]}}}
        levels = record["levels"]
        if not all(isinstance(v, dict) and "level" in v for v in levels.values()):
            raise TypeError("each heads model needs a level")
        return dict(levels)
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{path}: not a second-look record ({exc}); delete it or set it again"
        ) from exc


def second_look_logit(level: Any, what: str) -> float:
    """``level`` as a second-look logit: a finite number of 0 or more (a level under the
    heads' pixel threshold would measure regions the flagged path would not keep).

    Raises
    ------
    ModelError
        Anything else (text, a boolean, NaN, a negative number), named by ``what``.
    """
    number = isinstance(level, (int, float)) and not isinstance(level, bool)
    if not (number and math.isfinite(level) and level >= 0):
        raise ModelError(
            f"{what} {level!r}: a logit at or over the heads' pixel threshold "
            "(a number, 0 or more) is needed"
        )
    return float(level)


def heads_part(detection: Detection) -> Detection:
    """A fused detection as the heads shape theirs: without the appended ``anomaly``
    class (map channel and class logit); any other detection as it is.

    For readers trained on the heads' channels: the report decoder's fusion resampler
    (in torch and on the edge) and the tokens an edge box sends the cloud. The map's
    channel 0 stays the fused one.
    """
    if len(detection.classes) < 2 or detection.classes[-1] != ANOMALY_CLASS:
        return detection
    return replace(
        detection,
        maps=detection.maps[:, :-1],
        class_logits=detection.class_logits[:, :-1],
        classes=detection.classes[:-1],
    )


def _regions_heads_missed(fused: np.ndarray, heads: np.ndarray, speaks: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` pixels of the fused regions that hold no pixel the heads flag, on the
    images whose normality model ``speaks`` ``(B,)``; none on the others (most good parts:
    no region is labelled there)."""
    missed = np.zeros(fused.shape, bool)
    for b in np.flatnonzero(speaks):
        missed[b] = fused[b] & ~_regions_holding(fused[b], heads[b])
    return missed


def _speaks(normality_part: np.ndarray) -> np.ndarray:
    """``(B,)``: whether the normality model flags each part itself, from its part logit
    aligned to its image threshold (0 there); NaN flags: never hidden."""
    return ~(normality_part < 0)


def _regions_holding(regions: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``(H, W)``: the connected regions of ``regions`` that hold any of ``pixels``
    (8-connected, as :func:`~inspection.pipeline.defects_from_detection` cuts regions)."""
    _, labels = cv2.connectedComponents(regions.astype(np.uint8), connectivity=8)
    return regions & np.isin(labels, np.unique(labels[regions & pixels]))


FAINT = "stay under the score that would flag a part"
BACKGROUND = "lie on the background beside the part (outside its silhouette)"


def _dropped_note(dropped: np.ndarray, why: str) -> tuple[str, ...]:
    """The part's note on its ``(H, W)`` regions only the normality model found that are
    not judged, and ``why`` (:data:`FAINT`, :data:`BACKGROUND`), if there are any."""
    count = cv2.connectedComponents(dropped.astype(np.uint8), connectivity=8)[0] - 1
    if not count:
        return ()
    return (f"{count} region(s) only the normality model found {why}: not judged",)


def _interior_ceiling(pixel_n: np.ndarray, interior: np.ndarray) -> np.ndarray:
    """``(B,)``: where no pixel of the normality map ``(B, H, W)`` (aligned: 0 at its
    pixel threshold) reaches 0 in the part's ``interior``, the interior's highest, a cap
    on its image and part logits (its score came from the background); elsewhere no cap
    (+inf). A map that is not finite in the interior is never capped."""
    ceiling = np.full(pixel_n.shape[0], np.inf, np.float32)
    for b in range(pixel_n.shape[0]):
        inside = pixel_n[b][interior[b]]
        if inside.size and np.isfinite(inside).all() and inside.max() < 0:
            ceiling[b] = inside.max()
    return ceiling


def _metadata(detector: Detector, role: str) -> dict[str, Any]:
    metadata = getattr(detector, "metadata", None)
    if not isinstance(metadata, dict):
        raise ModelError(
            f"the {role} detector {type(detector).__name__} has no metadata with thresholds"
        )
    return metadata


def _threshold_dict(t: Thresholds) -> dict[str, Any]:
    return {"image": t.image, "pixel": t.pixel, "audio": t.audio, "calibration": t.version}
