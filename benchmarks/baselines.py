"""Our model against the baselines, side by side on the same data, in one run.

python benchmarks/baselines.py --data DATA --model models/default --minutes 10

Baselines, each behind the same detector interface and scored by the same
``inspection.evaluate``:
- classical: the threshold/blob pipeline lines used before deep learning: local
  contrast (the image minus its median-blurred self), normalised by its spread on good
  training parts; the part score is the top-0.1 % response; no training.
- resnet18: a timm ResNet-18 from scratch, trained for the same minutes on the same
  batches (good images with the same synthesised anomalies, and labelled defects where
  the data has them), as a multi-label image classifier (anomalous + one per class).
anomalib's DRAEM is left out: anomalib and Lightning do not install offline here with
the pinned torch (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inspection.datasets import load_dataset
from inspection.evaluate import evaluate, thresholds_of
from inspection.models import get_config, load_model
from inspection.models.detector import TiledDetector, TorchDetector
from inspection.models.outputs import Detection
from inspection.models.preprocess import PreprocessOptions
from inspection.pipeline import Thresholds
from inspection.train.data import BatchMaker, load_items, training_samples

CLASSES = get_config("small").classes


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def _detection(amap: np.ndarray, image_p: float, class_p: np.ndarray) -> Detection:
    return Detection(
        maps=np.concatenate(
            [_logit(amap)[None, None], np.full((1, len(CLASSES), *amap.shape), -9.0, np.float32)],
            axis=1,
        ),
        image_logit=_logit(np.array([image_p])),
        class_logits=_logit(class_p[None]),
        audio_logit=None,
        part_logit=_logit(np.array([image_p])),
        patch_tokens=np.zeros((1, 1, 1), np.float32),
        audio_tokens=None,
        grid=(1, 1),
        classes=CLASSES,
    )


class ClassicalDetector:
    """Local contrast, normalised on good parts: the pre-deep-learning line inspection."""

    version = "classical-local-contrast"
    classes = CLASSES

    def __init__(self, good_images: list[np.ndarray], kernel: int = 21):
        self.kernel = kernel
        responses = np.concatenate([self._response(im).ravel() for im in good_images])
        self.scale = float(np.percentile(responses, 99.9)) + 1e-6

    def _response(self, image: np.ndarray) -> np.ndarray:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        return np.abs(grey.astype(np.float32) - cv2.medianBlur(grey, self.kernel))

    def detect(self, image: np.ndarray, audio=None) -> Detection:
        response = self._response(image) / self.scale  # 1.0 = the good parts' 99.9th pct
        amap = 1 / (1 + np.exp(-4 * (response - 1)))  # (H, W) in 0..1
        top = np.sort(response.ravel())[-max(1, response.size // 1000) :].mean()
        return _detection(
            amap.astype(np.float32),
            float(1 / (1 + np.exp(-4 * (top - 1)))),
            np.full(len(CLASSES), 0.5, np.float32),
        )


class ResNetDetector(TiledDetector):
    """A timm ResNet-18 image classifier behind the tiled-detector interface."""

    def __init__(self, net: torch.nn.Module, config):
        self.net, self.config, self.version = net.eval(), config, "resnet18-scratch"

    def run(self, images: np.ndarray, mel=None) -> Detection:
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(images)).numpy()  # (B, 1+K)
        b, s = len(images), self.config.image_size
        return Detection(
            maps=np.broadcast_to(logits[:, :, None, None], (b, 1 + len(CLASSES), s, s)).copy(),
            image_logit=logits[:, 0],
            class_logits=logits[:, 1:],
            audio_logit=None,
            part_logit=logits[:, 0],
            patch_tokens=np.zeros((b, 1, 1), np.float32),
            audio_tokens=None,
            grid=(1, 1),
            classes=CLASSES,
        )


def train_resnet(maker: BatchMaker, minutes: float, batch_size: int = 8) -> torch.nn.Module:
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=1 + len(CLASSES))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    deadline, step = time.monotonic() + minutes * 60, 0
    net.train()
    while time.monotonic() < deadline:
        batch = maker.batch(step, batch_size)
        logits = net(torch.from_numpy(batch.images))  # (B, 1+K)
        target = torch.from_numpy(
            np.concatenate([batch.image_labels[:, None], batch.class_labels], 1)
        )
        loss = F.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    print(f"resnet18: {step} steps in {minutes} min")
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--minutes", type=float, default=10.0, help="ResNet-18 budget")
    parser.add_argument("--normal-only", action="store_true")
    parser.add_argument("--out", default="runs/baselines")
    args = parser.parse_args()

    model = load_model(args.model)
    config = model.config
    prep = PreprocessOptions.from_config(config)
    good_s, labelled_s = training_samples(load_dataset(args.data), args.normal_only)
    good = load_items(good_s, prep, "good")
    labelled = load_items(labelled_s, prep, "labelled")
    maker = BatchMaker(good, labelled, CLASSES, prep, config.n_mels, config.n_audio_frames, 0)
    classical = ClassicalDetector([it.image for it in good[:100]])
    resnet = ResNetDetector(train_resnet(maker, args.minutes), config)
    detectors = {
        "ours": (TorchDetector(model), thresholds_of(model.metadata)),
        "classical": (classical, Thresholds(image=0.5, pixel=0.5)),
        "resnet18": (resnet, Thresholds(image=0.5, pixel=0.5)),
    }
    results = {}
    for name, (detector, thresholds) in detectors.items():
        results[name] = evaluate(
            detector, thresholds, args.data, Path(args.out) / name, progress=False
        )
    print(
        f"{'method':<10} {'image AUROC':>12} {'ratio':>6} "
        + " ".join(f"{c[:8]:>9}" for c in CLASSES)
    )
    ours = results["ours"]["image_auroc"] or 1e-9
    for name, m in results.items():
        accs = [m["per_class"].get(c, {}).get("accuracy") for c in CLASSES]
        cells = " ".join(f"{a:9.3f}" if a is not None else f"{'n/a':>9}" for a in accs)
        print(f"{name:<10} {m['image_auroc']:12.4f} {m['image_auroc'] / ours:6.3f} {cells}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(
        json.dumps(
            {
                k: {"image_auroc": v["image_auroc"], "per_class": v["per_class"]}
                for k, v in results.items()
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
