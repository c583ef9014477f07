"""Training losses for the detection model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inspection.models.model import DetectionOutput

RIM_PX = 6  # clean pixels this close to a defect are weighed apart (see balanced_bce)


def balanced_bce(logits: Tensor, target: Tensor, rim_px: int = 0) -> Tensor:
    """Binary cross-entropy averaged over defect pixels and over clean pixels apart, summed.

    Defect pixels are rare (a 3-pixel spot among 65k clean ones): a plain mean lets the
    model ignore them, and a focal loss stops pushing clean pixels down once they sit at
    a few per cent, which leaves soft Dice stuck at 1 (measured: a map that could not
    overfit one batch). Balanced, a defect's pixels weigh as much as all the clean ones.

    That balance alone lets a halo around each defect go unpunished (a few hundred clean
    pixels among 65k): with ``rim_px``, the clean pixels within that distance of a defect
    are averaged a third time, so the map keeps the defect's true outline, which is what
    measurement in mm and the region's class depend on (measured: a 4 x 6 px spot came
    out as a 367 px region without it).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    neg = 1 - target
    loss = _mean_over(bce, target) + _mean_over(bce, neg)
    if rim_px:
        near = F.max_pool2d(target, 2 * rim_px + 1, stride=1, padding=rim_px)  # dilated
        loss = loss + _mean_over(bce, near * neg)
    return loss


def _mean_over(values: Tensor, weight: Tensor) -> Tensor:
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def pixel_class_loss(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Cross-entropy over the K class channels at defect pixels of a known class.

    Which defect a pixel shows is one choice among K (a softmax), learned only where
    there is a defect to classify; whether it is a defect at all is channel 0's job.
    """
    labelled = (target.sum(1) > 0) & (weight.amax(1) > 0)  # (B, H, W)
    if not labelled.any():
        return logits.sum() * 0.0  # keeps the graph (and DDP) whole
    ce = F.cross_entropy(logits, target.argmax(1), reduction="none")  # (B, H, W)
    return ce[labelled].mean()


def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """1 - Dice over each image's map; rewards getting the region's shape right."""
    p = torch.sigmoid(logits).flatten(1)  # (B, H*W)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def detection_loss(out: DetectionOutput, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """All terms, by name; ``"total"`` is what is optimised."""
    maps, target = out.maps, batch["maps"]  # (B, 1+K, S, S)
    terms = {
        "seg": balanced_bce(maps[:, :1], target[:, :1], rim_px=RIM_PX)
        + soft_dice_loss(maps[:, 0], target[:, 0]),
        "cls_map": pixel_class_loss(maps[:, 1:], target[:, 1:], batch["class_weight"]),
        "image": F.binary_cross_entropy_with_logits(out.image_logit, batch["image_labels"]),
        "cls": (
            F.binary_cross_entropy_with_logits(
                out.class_logits, batch["class_labels"], reduction="none"
            ).mean(1)
            * batch["class_known"]
        ).mean(),
    }
    part_target = batch["image_labels"]
    if out.audio_logit is not None and "audio_labels" in batch:
        terms["audio"] = F.binary_cross_entropy_with_logits(out.audio_logit, batch["audio_labels"])
        part_target = torch.maximum(part_target, batch["audio_labels"])
    terms["part"] = F.binary_cross_entropy_with_logits(out.part_logit, part_target)
    terms["total"] = sum(terms.values())
    return terms
