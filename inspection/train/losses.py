"""Training losses for the detection model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inspection.models.model import DetectionOutput


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Binary focal loss: defect pixels are rare, so easy background pixels are damped."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    return ((1 - p_t) ** gamma * bce).mean()


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
        "seg": focal_loss(maps[:, :1], target[:, :1]) * 5.0
        + soft_dice_loss(maps[:, 0], target[:, 0]),
        "cls_map": (
            F.binary_cross_entropy_with_logits(maps[:, 1:], target[:, 1:], reduction="none")
            * batch["class_weight"]
        ).mean(),
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
