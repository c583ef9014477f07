"""Evaluation metrics for defect detection, torch-free.

Image level: AUROC and the false-reject rate at a bounded miss rate. Pixel level:
AUROC and AUPRO (area under the per-region-overlap curve up to 30 % false-positive
rate, as in MVTec AD), which weights every defect region equally so that one large
defect cannot hide many missed small ones. Per class: the share of parts of a class
that are rejected with that class as their main defect.

Every function returns ``None`` where the data cannot define the metric (one class
only, no masks), so an evaluation on partial data reports nulls instead of crashing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

GOOD = "good"


def image_auroc(is_defective: Sequence[bool], scores: Sequence[float]) -> float | None:
    """AUROC of part scores against defective/good labels."""
    y = np.asarray(is_defective, dtype=bool)
    if y.all() or not y.any():
        return None
    return _roc_auc(y, np.asarray(scores, dtype=np.float64))


def _roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    # scikit-learn (with scipy) takes a second or more to import: only a command that
    # computes an AUROC pays it, not every `inspection --help` (nor the torch-free core).
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def threshold_for_frr(good_scores: Sequence[float], target_frr: float) -> float:
    """The threshold (``score >= threshold`` rejects) that passes a new good part with
    probability at least ``1 - target_frr``, from ``n`` held-out good scores.

    Split conformal: it passes the ``ceil((n + 1) (1 - target_frr))``-th smallest of them
    (a plain quantile of a few goods sits below that and rejects more than it promised).
    With fewer than ``1 / target_frr - 1`` goods no order statistic can promise the rate:
    the threshold then passes every held-out good, and a new good is rejected with
    probability ``1 / (n + 1)``.
    """
    scores = np.sort(np.asarray(good_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no good scores to set a threshold from")
    k = min(math.ceil((scores.size + 1) * (1.0 - target_frr)), scores.size)
    return float(np.nextafter(scores[k - 1], np.inf))  # just above: the k-th passes


def false_reject_rate_at_miss(
    is_defective: Sequence[bool], scores: Sequence[float], miss_rate: float = 0.01
) -> float | None:
    """Share of good parts rejected at the highest threshold that misses at most
    ``miss_rate`` of the defective parts."""
    y = np.asarray(is_defective, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.all() or not y.any():
        return None
    defective = np.sort(s[y])
    allowed_misses = int(np.floor(miss_rate * defective.size))
    threshold = defective[allowed_misses]  # parts scoring >= threshold are rejected
    return float(np.mean(s[~y] >= threshold))


def _pixels(
    masks: Sequence[np.ndarray | None], maps: Sequence[np.ndarray], max_side: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pairs of (mask, map) at a common, bounded resolution; images without a mask skipped."""
    out_masks, out_maps = [], []
    for mask, amap in zip(masks, maps, strict=True):
        if mask is None:
            continue
        mask = np.asarray(mask, dtype=np.uint8)
        amap = np.asarray(amap, dtype=np.float32)
        if amap.shape != mask.shape:
            amap = cv2.resize(amap, mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
        scale = max_side / max(mask.shape)
        if scale < 1:
            size = (max(1, round(mask.shape[1] * scale)), max(1, round(mask.shape[0] * scale)))
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            amap = cv2.resize(amap, size, interpolation=cv2.INTER_AREA)
        out_masks.append(mask > 0)
        out_maps.append(amap)
    return out_masks, out_maps


def pixel_auroc(
    masks: Sequence[np.ndarray | None], maps: Sequence[np.ndarray], max_side: int = 256
) -> float | None:
    """AUROC over all pixels of the images that have a mask (good images: all-zero masks)."""
    m, a = _pixels(masks, maps, max_side)
    if not m:
        return None
    y = np.concatenate([x.ravel() for x in m])
    if y.all() or not y.any():
        return None
    return _roc_auc(y, np.concatenate([x.ravel() for x in a]))


def pixel_aupro(
    masks: Sequence[np.ndarray | None],
    maps: Sequence[np.ndarray],
    fpr_limit: float = 0.3,
    max_side: int = 256,
    n_thresholds: int = 400,
) -> float | None:
    """Normalised area under the per-region-overlap curve for FPR in ``[0, fpr_limit]``."""
    m, a = _pixels(masks, maps, max_side)
    if not m:
        return None
    regions, region_sizes, background = [], [], []
    for mask, amap in zip(m, a, strict=True):
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            region = labels == i
            regions.append(amap[region])
            region_sizes.append(region.sum())
        background.append(amap[~mask])
    if not regions:
        return None
    background_scores = np.sort(np.concatenate(background))
    if background_scores.size == 0:
        return None
    sorted_regions = [np.sort(r) for r in regions]
    every = np.concatenate([background_scores, *sorted_regions])
    thresholds = np.append(np.unique(np.quantile(every, np.linspace(0, 1, n_thresholds))), np.inf)
    # A pixel is flagged when its score >= threshold.
    fprs = 1.0 - np.searchsorted(background_scores, thresholds, "left") / background_scores.size
    pros = np.array(
        [
            np.mean([1.0 - np.searchsorted(r, t, "left") / r.size for r in sorted_regions])
            for t in thresholds
        ]
    )
    return _area_up_to(fprs, pros, fpr_limit) / fpr_limit


def _area_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under the curve ``y(x)`` from 0 to ``limit`` (interpolated)."""
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    inside = x <= limit
    xs, ys = list(x[inside]), list(y[inside])
    if not inside.all():
        i = int(np.argmax(~inside))  # first point past the limit
        x0, y0 = (x[i - 1], y[i - 1]) if i > 0 else (0.0, 0.0)
        xs.append(limit)
        ys.append(y0 + (y[i] - y0) * (limit - x0) / max(x[i] - x0, 1e-12))
    return float(np.trapezoid(ys, xs))


def per_class_scores(
    true_classes: Sequence[str], predicted_classes: Sequence[str | None]
) -> dict[str, dict[str, float | None]]:
    """Per defect class: accuracy, precision, recall, F1.

    ``predicted_classes[i]`` is the main defect class of a rejected part, or ``None``
    (or ``"good"``) for a part that was not rejected. The accuracy of class ``c`` is the
    share of parts of class ``c`` rejected with ``c`` as their main defect (equal to its
    recall); precision is the share of parts rejected as ``c`` that are of class ``c``.
    """
    truth = np.asarray(true_classes, dtype=object)
    pred = np.asarray(
        [p if p not in (None, GOOD) else GOOD for p in predicted_classes], dtype=object
    )
    out: dict[str, dict[str, float | None]] = {}
    for cls in sorted(set(truth.tolist()) - {GOOD}):
        tp = int(np.sum((truth == cls) & (pred == cls)))
        n_true, n_pred = int(np.sum(truth == cls)), int(np.sum(pred == cls))
        recall = tp / n_true if n_true else None
        precision = tp / n_pred if n_pred else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision and recall
            else (0.0 if n_true and n_pred else None)
        )
        out[cls] = {"accuracy": recall, "precision": precision, "recall": recall, "f1": f1}
    return out


def median_abs_error(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Median of ``|measured - true|`` over matched pairs."""
    if not pairs:
        return None
    return float(np.median([abs(a - b) for a, b in pairs]))


def median_signed_error(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Median of ``measured - true`` over matched pairs: a gauge's bias (positive: it
    over-reads)."""
    if not pairs:
        return None
    return float(np.median([a - b for a, b in pairs]))


def rouge_l(candidate: str, reference: str, characters: bool = False) -> float:
    """ROUGE-L F1: the longest common subsequence of tokens over both lengths.

    Tokens are whitespace-separated words, or single characters (``characters=True``,
    for Chinese, which has no spaces). Two empty texts score 1.
    """
    a = list(candidate.replace(" ", "")) if characters else candidate.split()
    b = list(reference.replace(" ", "")) if characters else reference.split()
    if not a or not b:
        return float(a == b)
    lcs = _lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    row = [0] * (len(b) + 1)  # one row of the dynamic programme at a time
    for x in a:
        prev_diag, row[0] = 0, 0
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


REPORT_METRICS = (
    "report_valid_json_rate",
    "report_field_accuracy",
    "report_defect_exact_rate",
    "report_verdict_accuracy",
    "cross_check_agreement",
    "rouge_l",
    "reports_per_second",
)
"""The report decoder's headline figures (see ``inspection.decoder.evaluate``)."""
