"""``inspection evaluate``: a model on a dataset, as metrics, scores, plots and a page.

Writes ``OUT/metrics.json`` (image AUROC, pixel AUROC, AUPRO, per-class accuracy,
false-reject rate at a 1 % miss rate, median size error, latency, and the line's
verdicts), ``OUT/scores.csv`` (one row an image) and plots (ROC, PR, confusion matrix,
defect-map overlays) with an ``OUT/index.html``. What the data cannot define (no masks,
one class only) is null.

Two kinds of figures:

- Detection metrics rank and threshold the model's scores (AUROC, AUPRO, the
  ``*_at_threshold`` rates, per-class accuracy of the flagged parts): they need no
  standard.
- Verdict metrics (``verdict_*``) count what the line would do with each part: every
  verdict comes from :func:`inspection.pipeline.decide`, the function the line's
  :class:`~inspection.pipeline.Inspector` decides with, under the product's standard
  (``standard=``, or the one ``dataset.yaml`` names by ``product``). Without a standard
  they are null and ``verdict_note`` says why: evaluation has no policy of its own.
  ``review_band`` says what a review band under the threshold would change
  (:func:`review_band_tradeoff`), for a plant to choose ``--review-from`` by.
- The gauge's uncertainty: each defect the line found is matched to the true defect it
  covers, and per class and attribute the narrowest band ``fixed + proportional x
  reading`` on each side (the truth above the reading, and under it) that holds 97.5 %
  of that side's errors (95 % in all) is the guard band
  (:mod:`inspection.standards.guard`), written to ``OUT/guard_band.json`` for
  ``--guard-band``; ``guard_band_tradeoff`` says what it would change on this set
  (:func:`guard_band_tradeoff`: each part decided again with it). The same band proving
  rejection too (ISO 14253-1's other half: a reading beyond a limit by less than its band
  is REVIEW, not REJECT) is written to ``OUT/guard_band_proven.json``, its effect in
  ``proven_rejection_tradeoff`` and that of proving each class alone in
  ``proven_rejection_by_class``: a plant chooses who bears the gauge's doubt by these.
  Dents photographed
  without a profiler fit how the station's light shades them (their depth read from
  it), written with the band and alone to ``OUT/shading_depth.json``, whose effect
  ``shading_depth_tradeoff`` gives the same way. Evaluated with a band given
  (``--guard-band``), ``guard_band_given`` says what it changed, each part decided
  again without it (:func:`given_band_effect`): on a set it was not measured on, the
  honest figure.

A sample that cannot be used (unreadable image, audio or mask, a mask of another size
than its image, non-finite model scores) is one error row: verdict REVIEW, the reason in
``error``, counted in ``n_errors`` and in the verdict counts, left out of the detection
metrics. Any other exception is a bug and is raised.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from inspection.config import standard_path
from inspection.datasets import Dataset, DatasetError, Sample, load_dataset
from inspection.errors import UserError
from inspection.io import (
    InputError,
    read_audio,
    read_height_map,
    read_image,
    read_mask,
    to_uint8_rgb,
)
from inspection.measure import DentShading, measure_region
from inspection.metrics import (
    GOOD,
    false_reject_rate_at_miss,
    image_auroc,
    median_abs_error,
    median_signed_error,
    per_class_scores,
    pixel_aupro,
    pixel_auroc,
)
from inspection.models.backbones import provenance_words
from inspection.models.card import normality_backbone
from inspection.pipeline import (
    Detector,
    Thresholds,
    decide,
    defects_from_detection,
    detection_scores,
    flags_part,
    in_review_band,
    part_defects,
    readable_shading,
    tap_rings_wrong,
    with_depth_read,
    with_part_score,
)
from inspection.standards import (
    GuardBand,
    Standard,
    apply_standard,
    load_standard,
    measure_guard_band,
)
from inspection.standards.defects import DefectsError, manifest_defects
from inspection.standards.guard import (
    ShadingDepth,
    fit_shading_depth,
    gauge_readings,
    shading_depth_of,
    written_band_words,
)
from inspection.types import Action, AudioClip, Defect, Frame, InspectionResult, Verdict
from inspection.viz import Card, class_colour, figure_base64, overlay, png_base64, write_html_report

MAP_SIDE = 256  # anomaly maps are kept at most this size for the pixel metrics
REVIEW = Verdict.REVIEW.value


@dataclass
class Row:
    """One evaluated image."""

    path: str
    label: str
    score: float
    image_score: float
    audio_score: float | None
    verdict: str | None  # the line's, from pipeline.decide; None without a standard
    main_class: str | None
    latency_ms: float
    mask: np.ndarray | None = None  # bool, at most MAP_SIDE
    amap: np.ndarray | None = None  # float16 logits (not probabilities), same size as mask
    error: str | None = None
    # Ranking figures (AUROC) use logits: a confident model's probabilities round to 1.0
    # in float32 and would tie, and a tie is not a ranking.
    part_logit: float = float("nan")
    image_logit: float = float("nan")
    flagged: bool = False  # the detector's call (pipeline.flags_part), not the verdict
    exact_verdict: str | None = None  # the standard on the data's exact attributes
    action: str | None = None  # the line's disposition (accept, review, rework, scrap)
    exact_action: str | None = None  # the standard's, on the exact attributes
    reasons: str = ""  # the verdict's reasons, in words
    cause: str = ""  # what decided the verdict, in a few words (verdict_cause)
    at_limit: bool | None = None  # a reading within the gauge's band gives its verdict,
    # otherwise than its truth (mark_at_limits); None: not measured (no band, no truth)


def evaluate(
    detector: Detector,
    thresholds: Thresholds,
    data: str | Path,
    out: str | Path,
    split: str | None = "test",
    progress: bool = True,
    examples: int = 24,
    decoder: Any = None,
    standard: Standard | None = None,
) -> dict[str, Any]:
    """Evaluate ``detector`` on ``data``; returns the metrics written to ``metrics.json``.

    Every part is decided as the line decides it (:func:`inspection.pipeline.decide`)
    under ``standard`` (default: the dataset's product standard, ``product`` in
    ``dataset.yaml``); without either, the verdict metrics are null (see the module).

    With a report ``decoder`` (:class:`~inspection.decoder.model.ReportDecoder`) every
    part also gets a report, scored against the rule engine under the same standard on
    the same measurements: the ``report_*`` figures of :mod:`inspection.decoder.evaluate`
    join the metrics; a decoder needs a standard.

    Raises
    ------
    DatasetError
        When the split holds no samples, a decoder has no standard to score under, or a
        part's exact defect attributes are malformed.
    """
    out = Path(out)
    dataset = load_dataset(data)
    samples = [s for s in dataset.samples if split is None or s.split in (split, None)]
    if not samples:
        raise DatasetError(
            f"{data}: no samples in split {split!r}"
            + ("" if split is None else " (--split all evaluates every sample)")
        )
    if standard is None:
        standard = dataset_standard(dataset)
    if decoder is not None and standard is None:
        raise DatasetError(
            f"{data}: no product in dataset.yaml; give the standard to score reports under"
        )
    if decoder is not None:
        from inspection.decoder.reporting import decided_request  # torch: only with a decoder
    exact = [exact_result(standard, s) for s in samples]  # malformed truth fails first
    out.mkdir(parents=True, exist_ok=True)
    rows, size_pairs, cards, requests = [], [], [], []
    readings: list[tuple[str, dict[str, float], dict[str, float]]] = []
    shadings: list[tuple[dict[str, float], DentShading, float, float]] = []  # dents photographed
    decided: list[Decided] = []  # parts decided on their defects, to decide again
    predict = standard is not None and thresholds.guard is None
    for sample, truth in zip(
        tqdm(samples, desc="evaluating", unit="img", disable=not progress, mininterval=1.0),
        exact,
        strict=True,
    ):
        row, pairs, image, detection, mask, result = _evaluate_one(
            detector, thresholds, standard, sample, dataset
        )
        if truth is not None:
            row.exact_verdict, row.exact_action = truth.verdict.value, truth.action.value
        rows.append(row)
        size_pairs += pairs
        if result is not None:
            found = [d.defect for d in result.decisions]
            matched = matched_defects(found, sample)
            read = [(d.defect_class, dict(d.attributes), dict(t)) for d, t in matched]
            readings += read
            mm = dataset.scale_of(sample)
            readable = {}  # the dents whose depth the shading reads, by index
            if sample.height_map is None and image is not None:  # no profiler measured them
                readable = {
                    i: r for i, d in enumerate(found) if (r := readable_shading(d, image, mm))
                }
                shadings += _dent_shadings(matched, read, found, readable, mm)
            if found and image is not None:
                decided.append(_decided(row, result, standard, image, readable, mm))
        if decoder is not None and result is not None:  # decided once, reported from it
            requests.append(decided_request(decoder, standard, result, detection))
        if image is not None and detection is not None and len(cards) < 4 * examples:
            cards.append((row, _example_card(row, image, detection, thresholds, mask)))
    metrics = _metrics(rows, size_pairs, thresholds, detector)
    shading = fit_shading_depth((read, mm, depth) for _, read, mm, depth in shadings)
    for measured, read, mm, _ in shadings if shading is not None else ():
        if (depth := shading.depth_mm(read, mm)) is not None:  # the line's, with the file
            measured["depth_mm"] = depth
    band = measure_guard_band(readings, source=str(data), shading=shading)
    depth_only = band.shading_only()
    if depth_only is None:  # a depth read with no band of its errors: not read
        band = replace(band, shading=None)
    else:
        text = json.dumps(depth_only.to_dict(), indent=2) + "\n"
        (out / "shading_depth.json").write_text(text)
    at_limits = mark_at_limits(rows, samples, standard, band) if band.margins else None
    metrics.update(_verdict_metrics(rows, standard, data))
    metrics["verdict_at_limits"] = at_limits
    metrics["review_band"] = review_band_tradeoff(rows, thresholds) if standard else None
    metrics["guard_band"] = band.to_dict() if band.margins else None
    metrics["guard_band_tradeoff"] = metrics["proven_rejection_tradeoff"] = None
    metrics["proven_rejection_by_class"] = None
    if band.margins:
        proving = band.proving_rejection()
        for name, written in (("guard_band.json", band), (PROVEN_REJECTION, proving)):
            (out / name).write_text(json.dumps(written.to_dict(), indent=2) + "\n")
        if predict:
            metrics["guard_band_tradeoff"] = guard_band_tradeoff(
                rows, decided, standard, thresholds, band
            )
            metrics["proven_rejection_tradeoff"] = guard_band_tradeoff(
                rows, decided, standard, thresholds, proving
            )
            metrics["proven_rejection_by_class"] = proven_rejection_by_class(
                rows, decided, standard, thresholds, band
            )
    metrics["shading_depth_tradeoff"] = None
    if predict and depth_only is not None:
        metrics["shading_depth_tradeoff"] = guard_band_tradeoff(
            rows, decided, standard, thresholds, depth_only
        )
    metrics["guard_band_given"] = None
    if standard is not None and thresholds.guard is not None:
        given = thresholds.guard
        metrics["guard_band_given"] = {
            "file": given.source,
            "version": given.version,
            "shading_depth": given.shading.to_dict() if given.shading else None,
            **given_band_effect(rows, decided, standard, thresholds),
        }
    metrics["products"] = dataset.products
    metrics["height_maps"] = sum(s.height_map is not None for s in samples)  # profiled parts
    if decoder is not None:
        from inspection.decoder.evaluate import score_reports

        metrics["report_standard"] = {"id": standard.id, "version": standard.version}
        metrics.update(score_reports(decoder, requests, progress=progress))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_scores(out / "scores.csv", rows)
    gauge = (readings, band) if band.margins else None
    _write_page(out, rows, metrics, _pick_examples(cards, examples), str(data), gauge)
    return metrics


def dataset_standard(dataset: Dataset) -> Standard | None:
    """The standard of the product ``dataset.yaml`` names.

    Parameters
    ----------
    dataset : Dataset
        A loaded dataset.

    Returns
    -------
    Standard | None
        The product's standard, ``None`` when ``dataset.yaml`` names no product.
    """
    product = dataset.metadata.get("product")
    return load_standard(standard_path(str(product))) if product else None


def exact_verdict(standard: Standard | None, sample: Sample) -> str | None:
    """The standard's verdict on a sample's exact defect attributes
    (:func:`exact_result`'s verdict): ``"PASS"``, ``"REVIEW"`` or ``"REJECT"``, ``None``
    without a standard or exact attributes."""
    result = exact_result(standard, sample)
    return None if result is None else result.verdict.value


def exact_result(standard: Standard | None, sample: Sample) -> InspectionResult | None:
    """The standard's decision on a sample's exact defect attributes (its manifest's
    ``defects``): what the line's verdict and disposition are measured against.

    The attributes are checked with or without a standard: the size errors read them too.

    Parameters
    ----------
    standard : Standard | None
        The product's standard (:func:`dataset_standard`).
    sample : Sample
        A sample of a dataset.

    Returns
    -------
    InspectionResult | None
        ``None`` without a standard or when the sample states no exact attributes.

    Raises
    ------
    DatasetError
        When the sample's ``defects`` are malformed (the dataset's fault).
    """
    truth = _exact_defects(sample)
    return None if standard is None or truth is None else _decided_on(standard, sample, truth)


def _exact_defects(sample: Sample) -> list[Defect] | None:
    """A sample's exact defects (its manifest's ``defects``), ``None`` where it states none."""
    where = f"{sample.image} ({sample.part_id})"
    try:
        return manifest_defects(sample.attributes.get("defects"), where)
    except DefectsError as exc:  # the dataset's fault, found before any work
        raise DatasetError(str(exc)) from exc


def _decided_on(standard: Standard, sample: Sample, defects: list[Defect]) -> InspectionResult:
    size = sample.attributes.get("image_size")
    size = (int(size[0]), int(size[1])) if size else None
    return apply_standard(standard, defects, sample.part_id, image_size=size)


def mark_at_limits(
    rows: list[Row], samples: list[Sample], standard: Standard | None, band: GuardBand
) -> dict[str, Any] | None:
    """Mark the parts whose verdict a reading within the gauge's uncertainty decides
    (``Row.at_limit``), and how the line agrees with the standard on the others.

    The readings a gauge with ``band`` could give of a part's exact attributes reach from
    every attribute at its lowest reading to every one at its highest
    (:meth:`GuardBand.readings_of`); a part lies at a limit where the standard's verdicts
    at those two edges differ from its verdict on the truth (ISO 14253-1's zone of
    uncertainty: no line with this gauge decides it reliably, however well it finds the
    defect) and the line's verdict lies within their range (a reading within the band
    gives it). A line that passes a part whose readings all review or reject it missed
    something else: that disagreement is not at a limit. The disagreements left on the
    parts not at a limit are the detection's to win.

    Parameters
    ----------
    rows, samples : list
        The evaluated parts, row by row with their samples.
    standard : Standard or None
        The standard the rows were decided under; ``None`` marks nothing.
    band : GuardBand
        The gauge's band, as measured on the same set (``guard_band.json``).

    Returns
    -------
    dict or None
        ``parts`` at a limit, ``disagreements`` among them ``of`` all the parts'
        disagreements, ``agreement_clear`` on the
        ``clear_parts`` (the rest with exact attributes), a few ``examples`` of the
        disagreements at a limit, and the ``rule``; ``None`` without a standard or parts
        with exact attributes.
    """
    if standard is None:
        return None
    for row, sample in zip(rows, samples, strict=True):
        truth = _exact_defects(sample)
        if row.exact_verdict is None or truth is None:
            continue
        edges = ([_read_at_edge(d, band, side) for d in truth] for side in (0, 1))
        verdicts = {_decided_on(standard, sample, moved).verdict.value for moved in edges}
        reach = [Verdict(v).rank for v in verdicts | {row.exact_verdict}]
        line = Verdict(row.verdict).rank if row.verdict in set(Verdict) else -1
        row.at_limit = verdicts != {row.exact_verdict} and min(reach) <= line <= max(reach)
    compared = [r for r in rows if r.exact_verdict is not None]
    if not compared:
        return None
    clear = [r.verdict == r.exact_verdict for r in compared if not r.at_limit]
    at_limit = [r for r in compared if r.at_limit]
    differ = [r for r in at_limit if r.verdict != r.exact_verdict]
    return {
        "rule": "a part lies at a limit where the standard decides it otherwise on its "
        "exact attributes moved to either edge of what the gauge could read of them (the "
        "band measured here, guard_band.json), and the line's verdict lies between",
        "parts": len(at_limit),
        "disagreements": len(differ),
        "of": sum(r.verdict != r.exact_verdict for r in compared),  # every disagreement
        "agreement_clear": float(np.mean(clear)) if clear else None,
        "clear_parts": len(clear),
        "examples": [Path(r.path).name for r in differ[:DISAGREEMENT_EXAMPLES]],
    }


def _read_at_edge(defect: Defect, band: GuardBand, side: int) -> Defect:
    """``defect`` with each measured attribute at the lowest (``side`` 0) or highest (1)
    reading a gauge with ``band`` could give of it (:meth:`GuardBand.readings_of`)."""
    name = defect.defect_class
    moved = {a: band.readings_of(name, a, float(v))[side] for a, v in defect.attributes.items()}
    return replace(defect, attributes=moved)


def at_limits_words(at_limits: dict[str, Any]) -> str:
    """``verdict_at_limits`` in words: the agreement on the parts clear of the gauge's
    limits, and how many of the disagreements lie at one."""
    clear = at_limits["agreement_clear"]
    return (
        ("null" if clear is None else f"{clear:.4f}")
        + f" on {at_limits['clear_parts']} parts; {at_limits['disagreements']} of the "
        f"{at_limits['of']} disagreements lie within the gauge's uncertainty of a limit"
    )


def read_sample(sample: Sample) -> tuple[np.ndarray, AudioClip | None, np.ndarray | None]:
    """A sample's image, audio and defect mask, as evaluation reads them.

    Parameters
    ----------
    sample : Sample
        A sample of a dataset.

    Returns
    -------
    tuple
        ``(image, audio, mask)``: the image upright at its native bit depth, the audio
        (``None`` without a file) and the mask (bool, the image's size; all false for a
        good part without one, ``None`` for a defective part without one).

    Raises
    ------
    InputError
        For an unreadable file, or a mask of another size than its image.
    """
    image = read_image(sample.image)
    audio = read_audio(sample.audio) if sample.audio is not None else None
    mask = read_mask(sample.mask) if sample.mask is not None else None
    if mask is not None and mask.shape != image.shape[:2]:
        (h, w), (mh, mw) = image.shape[:2], mask.shape
        raise InputError(f"{sample.mask}: mask is {mw}x{mh} px, its image is {w}x{h} px")
    if mask is None and sample.is_good:
        mask = np.zeros(image.shape[:2], bool)
    return image, audio, mask


def _error_row(sample: Sample, error: str) -> Row:
    nan = float("nan")  # REVIEW without a standard too: an error is never a PASS
    cause = f"error: {_without_values(error)}"
    return Row(
        str(sample.image),
        sample.label,
        nan,
        nan,
        None,
        REVIEW,
        None,
        0.0,
        error=error,
        cause=cause,
        action=Action.REVIEW.value,
    )


def verdict_cause(result: InspectionResult) -> str:
    """What decided a part's verdict, in a few words that parts decided alike share.

    The first defect whose disposition is the verdict, as its class and the clause that
    governs it (``"dent: clause T31"``; ``"anomaly: no clause"`` for a class the standard
    does not cover); else the part's own reason without its values (a review band, a
    flagged part with nothing to measure); for a PASS, whether anything was found.
    """
    if result.verdict is Verdict.PASS:
        return "found, within tolerance" if result.decisions else "nothing found"
    for decision in result.decisions:
        if decision.action.verdict is result.verdict:
            clause = f"clause {decision.clause_id}" if decision.clause_id else "no clause"
            return f"{decision.defect.defect_class}: {clause}"
    return _without_values(result.reasons[0]) if result.reasons else result.verdict.value


def _without_values(reason: str) -> str:
    """A reason without its numbers (scores, thresholds) and its closing "needs review"."""
    words = [w for w in reason.split() if not re.search(r"\d", w)]
    return " ".join(words).removesuffix("; needs review").removesuffix(" needs review")


def _evaluate_one(
    detector, thresholds: Thresholds, standard: Standard | None, sample: Sample, dataset
):
    """(row, size pairs, image, detection, mask, result) of one sample; an unusable sample
    is an error row with ``None`` for the rest (``result``: ``None`` without a standard)."""
    mm, reference = dataset.scale_of(sample), dataset.reference_of(sample)
    try:
        image, audio, mask = read_sample(sample)
        height = (
            read_height_map(sample.height_map, dataset.height_encoding)
            if sample.height_map is not None
            else None
        )
        frame = Frame(image=image, camera="eval", mm_per_px=mm, height_map=height)
        start = time.perf_counter()
        detection = detector.detect(image, audio)
        latency = (time.perf_counter() - start) * 1000
    except UserError as exc:  # the sample's fault; anything else is a bug and is raised
        return _error_row(sample, str(exc)), [], None, None, None, None
    scores = detection_scores(detection)
    if not np.isfinite(list(scores.values())).all():
        error = f"model returned non-finite scores {scores}"
        return _error_row(sample, error), [], None, None, None, None
    flagged = flags_part(detection, thresholds)
    result, verdict, reasons = None, None, ""
    if standard is not None:
        result = decide(detection, frame, standard, thresholds, sample.part_id, reference)
        found = [d.defect for d in result.decisions]
        verdict = result.verdict.value
        reasons = "; ".join(result.reasons or (d.reason for d in result.decisions))
    else:  # the same measured defects, without a verdict
        found = part_defects(detection, thresholds, mm, image, reference)
    audible = tap_rings_wrong(detection, thresholds)
    small_mask, small_map = _shrink(mask, detection.maps[0, 0])
    row = Row(
        str(sample.image),
        sample.label,
        scores["part"],
        scores["image"],
        scores.get("audio"),
        verdict,
        _main_class(detection, found, audible) if flagged else None,
        latency,
        small_mask,
        small_map,
        part_logit=float(detection.part_logit[0]),
        image_logit=float(detection.image_logit[0]),
        flagged=flagged,
        reasons=reasons,
        cause=verdict_cause(result) if result is not None else "",
        action=result.action.value if result is not None else None,
    )
    pairs = size_pairs(found, sample, mm) if flagged and mm else []
    return row, pairs, image, detection, mask, result


def _main_class(detection, found, audible: bool = False) -> str:
    """The part's main defect: the class of its strongest region, as the line reports it
    (the class maps over the region); the image-level class scores when no region.

    A part whose tap rang wrong (``audible``) has a crack, and the crack is then its main
    defect whatever region scores highest: a crack the maps split into two lines names
    one of them scratch (``pipeline.defects_from_detection`` calls one crack only), and
    the tap, not the stronger of the two lines, is what condemns the part.
    """
    if audible and any(d.defect_class == "crack" for d in found):
        return "crack"
    if found:
        return max(found, key=lambda d: d.score).defect_class
    if not detection.classes:  # a detector that names no classes
        return "anomaly"
    return detection.classes[int(np.argmax(detection.class_scores[0]))]


def _shrink(mask: np.ndarray | None, amap: np.ndarray):
    scale = min(1.0, MAP_SIDE / max(amap.shape))
    size = (max(1, round(amap.shape[1] * scale)), max(1, round(amap.shape[0] * scale)))
    small_map = cv2.resize(amap, size, interpolation=cv2.INTER_AREA).astype(np.float16)
    if mask is None:
        return None, small_map
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return small_mask, small_map


class SizePair(NamedTuple):
    """A predicted region matched to a true defect: its measured and true sizes (mm)."""

    defect_class: str  # the true defect's
    length: float
    true_length: float
    width: float
    true_width: float | None  # not every synthesised defect records one


def matched_defects(found: list[Defect], sample: Sample) -> list[tuple[Defect, dict[str, float]]]:
    """The found defects matched to a sample's true defects.

    Returns
    -------
    list of (defect, true attributes)
        For each visible true defect with attributes and a box, the found defect of its
        class overlapping its box most; left out where that defect also covers another
        true defect's box (two specks read as one blob: its reading is neither's, and
        would read as the gauge's error).
    """
    truths = [
        t
        for t in sample.attributes.get("defects", []) or []
        if t.get("visible", True) and t.get("bbox") and t.get("attributes")
    ]
    pairs = []
    for truth in truths:
        defect_class = str(truth.get("defect_class", sample.label))
        best = _best_hit([d for d in found if d.defect_class == defect_class], truth["bbox"])
        if best is None or any(_covers(best, t["bbox"]) for t in truths if t is not truth):
            continue
        pairs.append((best, truth["attributes"]))
    return pairs


def _dent_shadings(
    matched: list[tuple[Defect, dict[str, float]]],
    pairs: list[tuple[str, dict[str, float], dict[str, float]]],
    found: list[Defect],
    readable: dict[int, DentShading],
    mm_per_px: float | None,
) -> list[tuple[dict[str, float], DentShading, float, float]]:
    """``(measured, shading, mm_per_px, true depth)`` of each matched dent of known depth
    whose shading the line reads (``readable``, by index in ``found``:
    :func:`~inspection.pipeline.readable_shading`), gentle or steep: what
    :func:`fit_shading_depth` fits the station's depth from shading on, with the reading
    (``measured``, in ``pairs``) it then gives."""
    index = {id(d): i for i, d in enumerate(found)}
    out = []
    for (defect, truth), (_, measured, _) in zip(matched, pairs, strict=True):
        read, depth = readable.get(index[id(defect)]), truth.get("depth_mm")
        if read is not None and depth is not None and mm_per_px:
            out.append((measured, read, mm_per_px, float(depth)))
    return out


class Decided(NamedTuple):
    """A part the line decided on its defects, kept to decide again with a guard band."""

    row: Row
    defects: list[Defect]  # masks dropped where the zone they place the defect in is known
    size: tuple[int, int]  # the frame's (width, height)
    part_score: float
    readable: dict[int, DentShading]  # the dents' shading the line reads, by index
    mm_per_px: float | None


def _decided(
    row: Row,
    result: InspectionResult,
    standard: Standard,
    image: np.ndarray,
    readable: dict[int, DentShading],
    mm_per_px: float | None,
) -> Decided:
    """What deciding a part again needs, without the frame-sized masks of the defects
    whose zone is known (a defect no zone holds keeps its mask: placed again by it)."""
    defects = [
        replace(d.defect, zone=d.zone, mask=None, footprint=None)
        if d.zone is not None or not standard.zones
        else d.defect
        for d in result.decisions
    ]
    size = (image.shape[1], image.shape[0])
    return Decided(row, defects, size, result.scores["part"], readable, mm_per_px)


def decide_again(
    part: Decided, standard: Standard, thresholds: Thresholds, band: GuardBand | None
) -> Verdict:
    """The verdict the line gives ``part`` with ``band`` (``--guard-band``; ``None``:
    without one): its photographed dents' depth read from their shading where the band
    holds a shading calibration (else unknown, whatever the line read with its own),
    its readings judged within the band's uncertainty, as
    :func:`~inspection.pipeline.decide` judges them."""
    shading = band.shading if band is not None and part.mm_per_px else None
    defects = [
        _photographed_depth(d, part.readable.get(i), shading, part.mm_per_px)
        for i, d in enumerate(part.defects)
    ]
    result = apply_standard(standard, defects, part.row.path, part.size, guard=band)
    return with_part_score(result, part.part_score, thresholds).verdict


def _photographed_depth(
    defect: Defect,
    read: DentShading | None,
    shading: ShadingDepth | None,
    mm_per_px: float | None,
) -> Defect:
    """A dent no profiler measured (``read``: its shading) with the depth ``shading``
    reads from it, or none without one (a photograph alone shows none); any other defect
    as it is."""
    if read is None:
        return defect
    if shading is None or not mm_per_px:
        unread = {k: v for k, v in defect.attributes.items() if k != "depth_mm"}
        return replace(defect, attributes=unread)
    return with_depth_read(defect, read, shading, mm_per_px)


def _covers(defect: Defect, box) -> bool:
    x0, y0, x1, y1 = box
    return defect.mask is not None and bool(defect.mask[y0:y1, x0:x1].any())


def _best_hit(found: list[Defect], box) -> Defect | None:
    """Of the found defects, the one whose mask covers most of a true defect's box."""
    x0, y0, x1, y1 = box
    hits = [d for d in found if _covers(d, box)]
    return max(hits, key=lambda d: d.mask[y0:y1, x0:x1].sum()) if hits else None


def guard_band_tradeoff(
    rows: list[Row],
    decided: list[Decided],
    standard: Standard,
    thresholds: Thresholds,
    band: GuardBand,
) -> dict[str, Any]:
    """What a guard band (``--guard-band``) would do on this set: every part the line
    decided on its defects (``decided``, among all the ``rows``, decided without a band)
    decided again with it (:func:`decide_again`).

    A band's margins only turn a PASS into REVIEW (a reading within them of a stricter
    clause's limit); its shading calibration reads the depth of dents the line sent to
    REVIEW for want of one, which may pass or reject them. The parts with nothing found
    stay as they were. Measured on the set the band was measured on, it is the band at
    its best: measure it on one set and pass it to the evaluation of another for the
    honest figure.

    Returns
    -------
    dict
        ``wrong_pass``, the parts the standard rejects (on their exact attributes) the
        line would pass; ``caught``, those it passed that it no longer passes;
        ``good_reviewed``, the parts the standard passes that it sends to review from
        PASS; ``reviews``, every part it sends there from PASS; ``settled``, the parts it
        takes out of REVIEW; ``toward`` and ``away``, the changed verdicts that come to
        agree with the standard's and that no longer do; ``agreement_before`` and
        ``agreement``, the line's agreement with the standard without and with it;
        ``moved``, each changed part (its file, ``from`` and ``to`` verdicts and the
        ``standard``'s), at most :data:`MOVED_LISTED`, those away from the standard first.
    """
    again = {id(p.row): decide_again(p, standard, thresholds, band).value for p in decided}
    return verdict_changes([(r, r.verdict, again.get(id(r), r.verdict)) for r in rows])


def proven_rejection_by_class(
    rows: list[Row],
    decided: list[Decided],
    standard: Standard,
    thresholds: Thresholds,
    band: GuardBand,
) -> dict[str, dict[str, Any]]:
    """What proving rejection of each class alone would do on this set
    (:func:`guard_band_tradeoff` with ``band.proving_rejection([class])``): per class
    with a band, the REJECTs of parts the standard passes it sends to review
    (``unrejected``), those of parts it rejects (``rejects_reviewed``), the false REJECTs
    left (``false_reject``) and the agreement with the standard, so that a plant proves
    rejection where its gauge's over-reads cost more than the reviews."""
    by_class = {}
    for defect_class in sorted(band.margins):
        proving = band.proving_rejection([defect_class])
        change = guard_band_tradeoff(rows, decided, standard, thresholds, proving)
        by_class[defect_class] = {k: change[k] for k in PROVEN_COLUMNS}
    return by_class


PROVEN_COLUMNS = ("unrejected", "rejects_reviewed", "false_reject", "agreement")
PROVEN_HEADER = (
    "class whose rejection is proven",
    "REJECTs the standard passes, to review",
    "REJECTs the standard rejects, to review",
    "false REJECTs left",
    "agreement",
)


def given_band_effect(
    rows: list[Row], decided: list[Decided], standard: Standard, thresholds: Thresholds
) -> dict[str, Any]:
    """What the guard band the line was given (``thresholds.guard``) changed on this set:
    every part decided on its defects (``decided``) decided again without it
    (:func:`decide_again`), as :func:`verdict_changes` from those verdicts to the line's.
    On a set the band was not measured on, the honest figure of what it does."""
    without = {id(p.row): decide_again(p, standard, thresholds, None).value for p in decided}
    return verdict_changes([(r, without.get(id(r), r.verdict), r.verdict) for r in rows])


def verdict_changes(moves: list[tuple[Row, str | None, str | None]]) -> dict[str, Any]:
    """From each part's verdict before to its verdict after (``(row, before, after)``):
    the counts :func:`guard_band_tradeoff` returns."""
    changed = [(r, old, new) for r, old, new in moves if new != old]
    compared = [(r, old, new) for r, old, new in moves if r.exact_verdict is not None]
    return {
        "wrong_pass": sum(
            new == Verdict.PASS and r.exact_verdict == Verdict.REJECT for r, _, new in moves
        ),
        "caught": sum(
            old == Verdict.PASS and r.exact_verdict == Verdict.REJECT for r, old, _ in changed
        ),
        "good_reviewed": sum(
            old == Verdict.PASS and new == Verdict.REVIEW and r.exact_verdict == Verdict.PASS
            for r, old, new in changed
        ),
        "reviews": sum(old == Verdict.PASS and new == Verdict.REVIEW for _, old, new in changed),
        "settled": sum(old == Verdict.REVIEW for _, old, _ in changed),
        "false_reject": sum(
            new == Verdict.REJECT and r.exact_verdict == Verdict.PASS for r, _, new in moves
        ),
        "unrejected": sum(
            old == Verdict.REJECT and new == Verdict.REVIEW and r.exact_verdict == Verdict.PASS
            for r, old, new in changed
        ),
        "rejects_reviewed": sum(
            old == Verdict.REJECT and new == Verdict.REVIEW and r.exact_verdict == Verdict.REJECT
            for r, old, new in changed
        ),
        "toward": sum(new == r.exact_verdict for r, _, new in changed),
        "away": sum(old == r.exact_verdict for r, old, _ in changed),
        "agreement_before": _share(old == r.exact_verdict for r, old, _ in compared),
        "agreement": _share(new == r.exact_verdict for r, _, new in compared),
        "moved": [
            {"part": Path(r.path).name, "from": old, "to": new, "standard": r.exact_verdict}
            for r, old, new in sorted(changed, key=lambda m: m[1] != m[0].exact_verdict)
        ][:MOVED_LISTED],
    }


PROVEN_REJECTION = "guard_band_proven.json"
"""The measured band, proving rejection too (:attr:`GuardBand.prove_rejection`), written
beside ``guard_band.json`` for ``--guard-band``."""

MOVED_LISTED = 50
"""The changed parts :func:`guard_band_tradeoff` lists by name, for a person to look at."""


def _share(hits) -> float | None:
    hits = list(hits)
    return float(np.mean(hits)) if hits else None


def size_pairs(found: list[Defect], sample: Sample, mm: float) -> list[SizePair]:
    """The found defects matched to a sample's true defects, for the size errors.

    Parameters
    ----------
    found : list[Defect]
        The defects the line found on the sample, with their masks.
    sample : Sample
        The sample, whose ``defects`` state each true defect's box and sizes.
    mm : float
        The sample's scale, mm per pixel.

    Returns
    -------
    list[SizePair]
        For each visible true defect with a length and a box that a found defect
        overlaps, the found defect overlapping its box most, measured where the line
        measured it: on the depression's footprint where a 3D profiler sized it
        (:func:`~inspection.pipeline.with_profile`), on its mask otherwise.
    """
    truths = [d for d in sample.attributes.get("defects", []) if d.get("visible", True)]
    if not truths or sample.mask is None:
        return []
    pairs = []
    for truth in truths:
        attributes = truth.get("attributes", {})
        length = attributes.get("length_mm")
        box = truth.get("bbox")
        if length is None or not box:
            continue
        best = _best_hit(found, box)
        if best is not None:
            sized_on = best.mask if best.footprint is None else best.footprint
            measured = measure_region(sized_on, mm)
            width = attributes.get("width_mm")
            pairs.append(
                SizePair(
                    str(truth.get("defect_class", sample.label)),
                    measured.length_mm,
                    float(length),
                    measured.width_mm_of(best.defect_class),
                    None if width is None else float(width),
                )
            )
    return pairs


def _size_metrics(pairs: list[SizePair]) -> dict[str, Any]:
    """Length error (median absolute, overall and by class) and width bias by class (median
    of measured - true: a gauge that over-reads rejects tolerable parts, one that
    under-reads passes rejectable ones)."""
    classes = sorted({p.defect_class for p in pairs})
    widths = {
        c: [
            (p.width, p.true_width)
            for p in pairs
            if p.defect_class == c and p.true_width is not None
        ]
        for c in classes
    }
    return {
        "size_error_mm_median": median_abs_error([(p.length, p.true_length) for p in pairs]),
        "size_error_mm_median_by_class": {
            c: median_abs_error([(p.length, p.true_length) for p in pairs if p.defect_class == c])
            for c in classes
        },
        "width_bias_mm_median_by_class": {
            c: median_signed_error(w) for c, w in widths.items() if w
        },
        "size_pairs": len(pairs),
    }


def _metrics(rows: list[Row], size_pairs, thresholds: Thresholds, detector) -> dict[str, Any]:
    valid = [r for r in rows if r.error is None]
    defective = [r.label != GOOD for r in valid]
    scores = [r.part_logit for r in valid]
    masks = [r.mask for r in valid]
    maps = [r.amap.astype(np.float32) for r in valid]
    latencies = [r.latency_ms for r in valid]
    metrics: dict[str, Any] = {
        "n_images": len(rows),
        "n_errors": len(rows) - len(valid),
        "classes": dict(Counter(r.label for r in rows)),
        "image_auroc": image_auroc(defective, scores),
        "image_auroc_image_only": image_auroc(defective, [r.image_logit for r in valid]),
        "pixel_auroc": pixel_auroc(masks, maps),
        "pixel_aupro": pixel_aupro(masks, maps),
        "per_class": per_class_scores([r.label for r in valid], [r.main_class for r in valid]),
        "false_reject_rate_at_miss_1pct": false_reject_rate_at_miss(defective, scores, 0.01),
        "false_reject_rate_at_threshold": _flagged_rate(valid, GOOD),
        "miss_rate_at_threshold": _miss_rate(valid),
        **_size_metrics(size_pairs),
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)) if latencies else None,
            "p95": float(np.percentile(latencies, 95)) if latencies else None,
        },
        "thresholds": {
            "image": thresholds.image,
            "pixel": thresholds.pixel,
            "audio": thresholds.audio,
            "region": thresholds.region,  # the second look's level (None: no second look)
            "version": thresholds.version,  # with any review band, guard band, search
            "profiler_dents": thresholds.profiler_dents,  # height maps searched for dents
        },
        "model_version": getattr(detector, "version", None),
        # A fused detector's two models and thresholds: what the figures were measured with.
        "fusion": (getattr(detector, "metadata", None) or {}).get("fusion"),
        "pretrained_weights": pretrained_weights(detector),
    }
    metrics["per_class_by_score"] = _per_class_auroc(valid)
    for cls, scores in metrics["per_class"].items():
        scores["detected"] = _flagged_rate(valid, cls)  # flagged, whatever the class
        if cls not in detector.classes:  # a class the model was never taught: no accuracy
            scores.update(accuracy=None, precision=None, recall=None, f1=None)
    return metrics


def pretrained_weights(detector: Detector) -> dict[str, Any] | None:
    """The pretrained weights a detector starts from, as its model recorded them
    (:attr:`~inspection.models.backbones.BackboneSpec.provenance`): a normality model's
    own, or that of the one fused with the heads; ``None`` from random weights."""
    metadata = getattr(detector, "metadata", None) or {}
    own = metadata.get("backbone")
    return own if isinstance(own, dict) else normality_backbone(metadata.get("fusion"))


def _per_class_auroc(rows: list[Row]) -> dict[str, dict[str, float | None]]:
    """Good vs each class: AUROC of the fused score and of the image score alone."""
    out = {}
    good = [r for r in rows if r.label == GOOD]
    for cls in sorted({r.label for r in rows} - {GOOD}):
        subset = good + [r for r in rows if r.label == cls]
        y = [r.label != GOOD for r in subset]
        out[cls] = {
            "auroc": image_auroc(y, [r.part_logit for r in subset]),
            "auroc_image_only": image_auroc(y, [r.image_logit for r in subset]),
        }
    return out


def _flagged_rate(rows: list[Row], label: str) -> float | None:
    """Share of ``label``'s parts the detector flags (a detection figure, not a verdict)."""
    subset = [r for r in rows if r.label == label]
    return float(np.mean([r.flagged for r in subset])) if subset else None


def _miss_rate(rows: list[Row]) -> float | None:
    bad = [r for r in rows if r.label != GOOD]
    return float(np.mean([not r.flagged for r in bad])) if bad else None


REVIEW_BAND_STARTS = (0.05, 0.1, 0.2, 0.3, 0.4)
"""Review band starts whose effect :func:`review_band_tradeoff` reports."""
REVIEW_BAND_COLUMNS = ("from", "wrong_pass", "caught", "good_reviewed", "reviews")
REVIEW_BAND_HEADER = [
    "--review-from",
    "parts the standard rejects, passed",
    "of them sent to review",
    "good parts sent to review",
    "all parts sent to review",
]


def review_band_tradeoff(
    rows: list[Row], thresholds: Thresholds, starts: tuple[float, ...] = REVIEW_BAND_STARTS
) -> list[dict[str, Any]]:
    """What a review band from each start (``--review-from``, see
    :func:`~inspection.pipeline.with_review_band`) would do to these verdicts, so that a
    plant chooses it by measurement.

    A band only turns a PASS whose part score lies in ``[start, image threshold)`` into
    REVIEW, so its effect is read off the rows without deciding again. Starts at or above
    the threshold, or above a band the rows were already decided with, are left out.

    Returns
    -------
    list[dict]
        Per start: ``from``; ``wrong_pass``, the parts the standard rejects (on their
        exact attributes) still passed; ``caught``, those the band sends to review;
        ``good_reviewed``, good parts it sends to review; ``reviews``, every part it adds.
    """
    top = thresholds.review if thresholds.review is not None else thresholds.image
    passed = [r for r in rows if r.verdict == Verdict.PASS and np.isfinite(r.score)]
    wrong = sum(r.exact_verdict == Verdict.REJECT for r in passed)
    tradeoff = []
    for start in (s for s in starts if s < top):
        banded = replace(thresholds, review=start)  # decided as the line would
        band = [r for r in passed if in_review_band(r.score, banded)]
        caught = sum(r.exact_verdict == Verdict.REJECT for r in band)
        tradeoff.append(
            {
                "from": start,
                "wrong_pass": wrong - caught,
                "caught": caught,
                "good_reviewed": sum(r.label == GOOD for r in band),
                "reviews": len(band),
            }
        )
    return tradeoff


def _verdict_metrics(rows: list[Row], standard: Standard | None, data) -> dict[str, Any]:
    """What the line would do with the parts (every row, errors included: REVIEW).

    ``verdicts`` counts PASS / REJECT / REVIEW; ``verdict_false_reject_rate`` is the share
    of good parts not passed, ``verdict_miss_rate`` of defective parts passed;
    ``verdict_agreement`` the share of parts with exact defect attributes whose verdict
    equals the standard's on those attributes (``verdict_agreement_parts`` of them);
    ``verdict_wrong_pass_rate`` the share of the parts the standard rejects on their exact
    attributes that the line passed (a defect the standard accepts, passed, is not one);
    ``verdict_reject_recall_by_class`` the share of those the line stops, by true class;
    ``verdict_disagreements`` where the two verdicts differ, by true class and verdicts.
    """
    if standard is None:
        return {
            "verdict_standard": None,
            "verdicts": None,
            "verdict_false_reject_rate": None,
            "verdict_miss_rate": None,
            "verdict_agreement": None,
            "verdict_agreement_parts": 0,
            "verdict_wrong_pass_rate": None,
            "verdict_reject_recall_by_class": None,
            "verdict_dispositions": None,
            "verdict_disagreements": None,
            "verdict_note": (
                f"no verdicts: {data} names no product in dataset.yaml and no standard was "
                "given (--standard); only detection metrics are measured"
            ),
        }
    counts = Counter(r.verdict for r in rows)
    good = [r.verdict != Verdict.PASS for r in rows if r.label == GOOD]
    bad = [r.verdict == Verdict.PASS for r in rows if r.label != GOOD]
    compared = [r.verdict == r.exact_verdict for r in rows if r.exact_verdict is not None]
    # the one error the line must not make: a part the standard rejects, passed
    wrong_pass = [r.verdict == Verdict.PASS for r in rows if r.exact_verdict == Verdict.REJECT]
    return {
        "verdict_standard": {"id": standard.id, "version": standard.version},
        "verdicts": {v.value: counts.get(v.value, 0) for v in Verdict},
        "verdict_false_reject_rate": float(np.mean(good)) if good else None,
        "verdict_miss_rate": float(np.mean(bad)) if bad else None,
        "verdict_agreement": float(np.mean(compared)) if compared else None,
        "verdict_agreement_parts": len(compared),
        "verdict_wrong_pass_rate": float(np.mean(wrong_pass)) if wrong_pass else None,
        "verdict_reject_recall_by_class": _reject_recall_by_class(rows),
        "verdict_dispositions": _dispositions(rows),
        "verdict_disagreements": _disagreements(rows),
        "verdict_note": None if compared else "no exact defect attributes: no agreement",
    }


def _reject_recall_by_class(rows: list[Row]) -> dict[str, dict[str, float | int]]:
    """Per true class, of its parts the standard rejects on their exact attributes: how
    many, and the share the line does not pass (rejected or sent to REVIEW). A defect the
    standard accepts is no miss, so a tolerable colour patch, passed, does not count."""
    rejectable: dict[str, list[bool]] = {}
    for r in rows:
        if r.exact_verdict == Verdict.REJECT:
            rejectable.setdefault(r.label, []).append(r.verdict != Verdict.PASS)
    return {
        label: {"parts": len(stopped), "recall": float(np.mean(stopped))}
        for label, stopped in sorted(rejectable.items())
    }


def _dispositions(rows: list[Row]) -> dict[str, Any] | None:
    """Of the parts both the line and the standard (on the exact attributes) reject, how
    many the line disposes of as the standard does (rework or scrap), and those it
    disposes of more mildly (reworks what the standard scraps: a critical defect read
    as a major one) or more harshly, by true class, with a few files; ``None`` when no
    part is rejected by both."""
    both = [
        r
        for r in rows
        if r.verdict == Verdict.REJECT and r.exact_verdict == Verdict.REJECT and r.action
    ]
    if not both:
        return None
    rank = {a.value: a.rank for a in Action}
    milder = [r for r in both if rank[r.action] < rank[r.exact_action]]
    harsher = [r for r in both if rank[r.action] > rank[r.exact_action]]
    return {
        "parts": len(both),
        "agreement": 1.0 - (len(milder) + len(harsher)) / len(both),
        **{
            name: {
                "parts": len(kind),
                "by_class": dict(Counter(r.label for r in kind).most_common()),
                "examples": [Path(r.path).name for r in kind[:DISAGREEMENT_EXAMPLES]],
            }
            for name, kind in (("milder", milder), ("harsher", harsher))
        },
    }


def disposition_words(dispositions: dict[str, Any]) -> str:
    """``verdict_dispositions`` in a line (``same 0.952 of 120; milder 4: scratch 3,
    dent 1; harsher 0``)."""
    words = [f"same {dispositions['agreement']:.3f} of {dispositions['parts']}"]
    for name in ("milder", "harsher"):
        kind = dispositions[name]
        classes = ", ".join(f"{c} {n}" for c, n in kind["by_class"].items())
        words.append(f"{name} {kind['parts']}" + (f": {classes}" if classes else ""))
    return "; ".join(words)


DISAGREEMENT_EXAMPLES = 3  # part files named per kind of disagreement
DISAGREEMENT_CAUSES = 2  # the line's most common causes named per kind
DISAGREEMENT_TITLE = "Where the line and the standard (on the exact attributes) disagree"
DISAGREEMENT_HEADER = [
    "class",
    "the standard says",
    "the line says",
    "parts",
    "why (parts)",
    "for example",
]


def disagreement_rows(disagreements: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """``verdict_disagreements`` as table rows under :data:`DISAGREEMENT_HEADER`."""
    return [
        (
            d["class"],
            d["standard"],
            d["line"],
            _parts_words(d),
            "; ".join(f"{c['cause']} ({c['parts']})" for c in d.get("why", [])),
            ", ".join(d["examples"]),
        )
        for d in disagreements
    ]


def _parts_words(disagreement: dict[str, Any]) -> str:
    """A kind of disagreement's parts, and how many lie at a limit where that was measured
    (not in metrics written before it was)."""
    at_limits = disagreement.get("at_limits")
    parts = str(disagreement["parts"])
    return parts if at_limits is None else f"{parts} ({at_limits} at a limit)"


def _disagreements(rows: list[Row]) -> list[dict[str, Any]]:
    """Where the line's verdict differs from the standard's on the exact attributes, by
    true class and the two verdicts, most parts first, each with what most often decided
    the line's verdict (:func:`verdict_cause`), how many of them lie within the gauge's
    uncertainty of a limit (:func:`mark_at_limits`; ``None`` where not measured) and a few
    of its files."""
    kinds: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        if r.exact_verdict is not None and r.verdict != r.exact_verdict:
            kinds.setdefault((r.label, r.exact_verdict, r.verdict or ""), []).append(r)
    ranked = sorted(kinds.items(), key=lambda kind: (-len(kind[1]), kind[0]))
    return [
        {
            "class": label,
            "standard": standard,
            "line": line,
            "parts": len(parts),
            "at_limits": _at_limits(parts),
            "why": [
                {"cause": cause, "parts": n}
                for cause, n in Counter(r.cause for r in parts).most_common(DISAGREEMENT_CAUSES)
            ],
            "examples": [Path(r.path).name for r in parts[:DISAGREEMENT_EXAMPLES]],
        }
        for (label, standard, line), parts in ranked
    ]


AT_LIMITS_LISTED = 50  # the disagreements at a limit the page names one by one


def _at_limits_table(rows: list[Row]) -> tuple:
    """The disagreements at the gauge's limits, part by part, with the line's reasons (the
    readings it decided on)."""
    listed = [
        (Path(r.path).name, r.label, r.exact_verdict or "", r.verdict or "", r.reasons)
        for r in rows[:AT_LIMITS_LISTED]
    ]
    more = f"; the first {AT_LIMITS_LISTED} of {len(rows)}" if len(rows) > AT_LIMITS_LISTED else ""
    return (
        "Disagreements within the gauge's uncertainty of a limit (a reading within its band "
        f"gives the line's verdict{more}; all in scores.csv, at_limit)",
        ["part", "class", "the standard says", "the line says", "the line's reasons"],
        listed,
    )


def _at_limits(parts: list[Row]) -> int | None:
    marked = [r.at_limit for r in parts]
    return None if None in marked else sum(marked)


def _write_scores(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "path",
                "class",
                "score",
                "verdict",
                "main_class",
                "error",
                "exact_verdict",
                "reasons",
                "at_limit",  # mark_at_limits: yes, no, or empty where not measured
            ]
        )
        for r in rows:
            writer.writerow(
                [
                    r.path,
                    r.label,
                    f"{r.score:.6f}",
                    r.verdict or "",
                    r.main_class or "",
                    r.error or "",
                    r.exact_verdict or "",
                    r.reasons,
                    "" if r.at_limit is None else ("yes" if r.at_limit else "no"),
                ]
            )


def _example_card(row: Row, image, detection, thresholds: Thresholds, mask) -> Card:
    regions = []
    if mask is not None and mask.any():
        regions.append((mask, "truth", (0, 255, 0)))
    for i, d in enumerate(defects_from_detection(detection, thresholds, None)):
        regions.append((d.mask, d.defect_class, class_colour(i + 1)))
    picture = overlay(to_uint8_rgb(image), regions, heatmap=detection.anomaly_map[0])
    scale = min(1.0, 320 / max(picture.shape[:2]))
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    lines = (
        f"score {row.score:.3f} (threshold {thresholds.image:.3f})",
        f"predicted: {row.main_class or 'good'}",
        f"verdict: {row.verdict or 'none (no standard)'}",
    )
    return Card(png_base64(picture), f"{Path(row.path).name}: {row.label}", lines, row.verdict)


def _pick_examples(cards: list[tuple[Row, Card]], n: int) -> list[Card]:
    """A few of each class, the highest-scoring good parts first among the good."""
    by_label: dict[str, list[tuple[Row, Card]]] = {}
    for row, card in cards:
        by_label.setdefault(row.label, []).append((row, card))
    per = max(1, n // max(1, len(by_label)))
    picked = []
    for label in sorted(by_label):
        items = sorted(by_label[label], key=lambda rc: -rc[0].score if label == GOOD else 0)
        picked += [card for _, card in items[:per]]
    return picked


def _gauge_figure(pairs, band: GuardBand):
    """Each matched defect's reading against its true value, one panel per class and
    attribute the guard band covers: the identity line, and the band dashed (a reading
    within ``U`` of a limit is not proven)."""
    import matplotlib.pyplot as plt

    readings, _ = gauge_readings(pairs)
    written = band.to_dict()["margins"]  # each band as the file writes it, for the titles
    panels = [(c, a) for c, per in sorted(band.margins.items()) for a in sorted(per)]
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (defect_class, attribute) in zip(axes.flat, panels, strict=False):
        reading, true = np.asarray(readings[defect_class][attribute]).T  # (N,), (N,)
        top = float(max(reading.max(), true.max())) * 1.05
        line = np.linspace(0.0, top, 50)  # (50,) readings
        above = band.margin(defect_class, attribute, line)  # (50,)
        below = band.margin_below(defect_class, attribute, line)  # (50,)
        ax.plot(line, line, color="0.4", linewidth=1)
        ax.plot(line + above, line, "--", color="tab:red", linewidth=1)
        ax.plot(line - below, line, "--", color="tab:red", linewidth=1)
        ax.scatter(true, reading, s=8, color="tab:blue", alpha=0.6)
        ax.set(xlim=(0, top), ylim=(0, top), xlabel=f"true {attribute}", ylabel="read")
        words = written_band_words(written[defect_class][attribute])
        ax.set_title(f"{defect_class} (n {len(true)}): {words}", fontsize=9)
    fig.tight_layout()
    return fig


def _write_page(
    out: Path, rows: list[Row], metrics: dict[str, Any], cards, data: str, gauge=None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    valid = [r for r in rows if r.error is None]
    y = np.array([r.label != GOOD for r in valid])
    s = np.array([r.part_logit for r in valid])
    figures = []
    if 0 < y.sum() < len(y):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        RocCurveDisplay.from_predictions(y, s, ax=ax, name="part score")
        ax.set_title("ROC")
        fig.savefig(out / "roc.png", dpi=110, bbox_inches="tight")
        figures.append(("ROC: defective vs good", figure_base64(fig)))
        fig, ax = plt.subplots(figsize=(4.5, 4))
        PrecisionRecallDisplay.from_predictions(y, s, ax=ax, name="part score")
        ax.set_title("Precision-recall")
        fig.savefig(out / "pr.png", dpi=110, bbox_inches="tight")
        figures.append(("Precision-recall", figure_base64(fig)))
    truth = [r.label for r in valid]
    pred = [r.main_class or GOOD for r in valid]
    labels = sorted(set(truth) | set(pred))
    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(
        truth, pred, labels=labels, ax=ax, xticks_rotation=45, colorbar=False
    )
    ax.set_title("True class vs predicted main defect")
    fig.savefig(out / "confusion.png", dpi=110, bbox_inches="tight")
    figures.append(("Confusion matrix", figure_base64(fig)))
    if gauge is not None:
        fig = _gauge_figure(*gauge)
        fig.savefig(out / "gauge.png", dpi=110, bbox_inches="tight")
        figures.append(("The gauge: each reading against the true size", figure_base64(fig)))
    summary = [
        (k, _fmt(metrics[k]))
        for k in (
            "image_auroc",
            "pixel_auroc",
            "pixel_aupro",
            "false_reject_rate_at_miss_1pct",
            "size_error_mm_median",
            "n_images",
            "n_errors",
        )
    ]
    summary.append(("latency p50 ms", _fmt(metrics["latency_ms"]["p50"])))
    if weights := provenance_words(metrics.get("pretrained_weights")):
        summary.append(("starts from", weights))
    if metrics["verdicts"] is not None:
        standard = metrics["verdict_standard"]
        summary.append(("verdict standard", f"{standard['id']} ({standard['version']})"))
        summary += [(f"verdict {k}", str(v)) for k, v in metrics["verdicts"].items()]
        summary += [
            (k, _fmt(metrics[k]))
            for k in ("verdict_false_reject_rate", "verdict_miss_rate", "verdict_agreement")
        ]
        if metrics.get("verdict_at_limits"):
            words = at_limits_words(metrics["verdict_at_limits"])
            summary.append(("verdict agreement clear of the gauge's limits", words))
    if metrics["verdict_note"]:
        summary.append(("verdicts", metrics["verdict_note"]))
    per_class = [
        (
            c,
            *(_fmt(v[k]) for k in ("accuracy", "precision", "recall", "f1")),
            _fmt(metrics["per_class_by_score"].get(c, {}).get("auroc")),
            _fmt(metrics["size_error_mm_median_by_class"].get(c)),
        )
        for c, v in metrics["per_class"].items()
    ]
    tables = [
        (
            "Per class",
            ["class", "accuracy", "precision", "recall", "f1", "AUROC", "length error mm"],
            per_class,
        )
    ]
    if metrics.get("verdict_reject_recall_by_class"):
        recall = [
            (c, str(v["parts"]), _fmt(v["recall"]))
            for c, v in metrics["verdict_reject_recall_by_class"].items()
        ]
        tables.append(
            (
                "Parts the standard rejects: the share the line stops (rejects or reviews)",
                ["class", "parts the standard rejects", "recall"],
                recall,
            )
        )
    if metrics.get("verdict_dispositions"):
        kinds = metrics["verdict_dispositions"]
        disposed = [
            (name, str(kinds[name]["parts"]), ", ".join(kinds[name]["examples"]))
            for name in ("milder", "harsher")
        ]
        tables.append(
            (
                "Parts both reject: the line's disposition against the standard's ("
                + disposition_words(kinds)
                + "; milder: reworks what the standard scraps)",
                ["disposition", "parts", "for example"],
                disposed,
            )
        )
    if metrics.get("verdict_disagreements"):
        differ = disagreement_rows(metrics["verdict_disagreements"])
        tables.append((DISAGREEMENT_TITLE, DISAGREEMENT_HEADER, differ))
    if at_limit := [r for r in rows if r.at_limit and r.verdict != r.exact_verdict]:
        tables.append(_at_limits_table(at_limit))
    if metrics.get("review_band"):
        band = [[str(b[k]) for k in REVIEW_BAND_COLUMNS] for b in metrics["review_band"]]
        tables.append(("Review band: what --review-from would change", REVIEW_BAND_HEADER, band))
    if metrics.get("guard_band"):
        tables.append(_guard_band_table(metrics))
    if metrics.get("proven_rejection_by_class"):
        tables.append(_proven_by_class_table(metrics))
    tables += _moved_tables(metrics)
    write_html_report(
        out / "index.html",
        title=f"Evaluation of {metrics.get('model_version')} on {data}",
        summary=summary,
        tables=tables,
        figures=figures,
        cards=cards,
    )


def _guard_band_table(metrics: dict[str, Any]) -> tuple:
    """The page's table of the gauge's guard band (what it changes: :func:`_moved_tables`)."""
    band = metrics["guard_band"]
    rows = [
        (c, a, written_band_words(u), str(band["pairs"].get(c, "")))
        for c, per in band["margins"].items()
        for a, u in per.items()
    ]
    title = (
        "Guard band (--guard-band guard_band.json): each side holds 97.5 % of the readings' "
        "errors, 95 % in all (+ the truth above the reading, − under it; ± where they agree); "
        f"proving rejection too (a reading beyond a limit by less than its band is REVIEW): "
        f"--guard-band {PROVEN_REJECTION}"
    )
    shading = band.get("shading_depth")
    if shading:  # the dents' depth_mm band above is this reading's
        title += (
            f"; a dent's depth_mm read from its shading (light from "
            f"{shading['azimuth_deg']:.0f}°, gain {shading['gain']:.3g}, {shading['pairs']} "
            "dents; alone: --guard-band shading_depth.json)"
        )
        if (read := shading_depth_of(shading)) is not None and read.steep_words:
            title += f"; {read.steep_words}"
    return (
        title,
        ["class", "attribute", "band (+ above / − under the reading)", "defects matched"],
        rows,
    )


def _proven_by_class_table(metrics: dict[str, Any]) -> tuple:
    """The page's table of what proving rejection of each class alone would change."""
    title = (
        f'Proving rejection class by class (give the classes as "prove_rejection": '
        f"[...] in {PROVEN_REJECTION}); with guard_band.json alone, agreement "
        f"{_fmt(metrics['guard_band_tradeoff']['agreement'])}"
    )
    return title, list(PROVEN_HEADER), proven_by_class_rows(metrics)


def proven_by_class_rows(metrics: dict[str, Any]) -> list[tuple[str, ...]]:
    """``proven_rejection_by_class`` as the table's rows (:data:`PROVEN_HEADER`)."""
    return [
        (c, *(_fmt(change[k]) for k in PROVEN_COLUMNS))
        for c, change in metrics["proven_rejection_by_class"].items()
    ]


def band_effects(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(what, change)`` of each guard band whose effect on the set ``metrics`` holds:
    the one the line was given, and those it measured (:func:`guard_band_tradeoff`)."""
    given = metrics.get("guard_band_given")
    effects = [(f"the given --guard-band {given['file']} changed", given)] if given else []
    return effects + [
        (f"--guard-band {name} would change", change)
        for key, name in (
            ("guard_band_tradeoff", "guard_band.json"),
            ("proven_rejection_tradeoff", PROVEN_REJECTION),
            ("shading_depth_tradeoff", "shading_depth.json"),
        )
        if (change := metrics.get(key))
    ]


def _moved_tables(metrics: dict[str, Any]) -> list[tuple]:
    """The page's tables of the parts each guard band decides otherwise on this set."""
    header = ["part", "before", "after", "the standard's"]
    return [
        (
            f"What {what} on this set, part by part: {tradeoff_words(change)}",
            header,
            [(m["part"], m["from"], m["to"], m["standard"] or "") for m in change["moved"]],
        )
        for what, change in band_effects(metrics)
    ]


def tradeoff_words(change: dict[str, Any]) -> str:
    """What a guard band would change on the set it was measured on
    (:func:`guard_band_tradeoff`), in words."""
    agreement = ""
    if change["agreement"] is not None:
        agreement = (
            f"agreement with the standard {change['agreement_before']:.3f} -> "
            f"{change['agreement']:.3f}; "
        )
    rejections = ""
    if change["unrejected"] or change["rejects_reviewed"]:  # a band that proves rejection
        rejections = (
            f", {change['unrejected']} it passes sent to review from REJECT "
            f"({change['false_reject']} still rejected), {change['rejects_reviewed']} it "
            "rejects sent to review from REJECT"
        )
    return (
        agreement + f"{change['caught']} part(s) the standard rejects no longer passed "
        f"({change['wrong_pass']} passed), {change['good_reviewed']} it passes sent to "
        f"review{rejections}, {change['settled']} taken out of review; {change['toward']} "
        f"verdict(s) moved to the standard's, {change['away']} away from it"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
