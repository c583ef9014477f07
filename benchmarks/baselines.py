"""Our model against the baselines, side by side on the same data, in one run.

python benchmarks/baselines.py --data TRAIN --eval-data HELD_OUT --minutes 10 [--normal-only]

Every learned method trains for the same minutes on the same machine, one after the
other, from the same training images and the same synthesised anomalies (the project's
own recipes: nothing is downloaded); every method's image threshold is set the same way
(1 % false rejects on the same held-out good training images); all are scored by the same
``inspection.evaluate`` on the same held-out parts. Methods:

- ours: ``inspection train`` (``--config``, default ``small``) for the budget.
- classical: the threshold/blob pipeline lines used before deep learning: local contrast
  (the image minus its median-blurred self), normalised by its spread on good training
  parts; the part score is the top-0.1 % response; no training.
- resnet18: a timm ResNet-18 from scratch on the same batches, as a multi-label image
  classifier (anomalous + one output per class); its map is its image score everywhere.
- draem: anomalib's DRAEM (its reconstructive and discriminative sub-networks and its
  loss: L2 + SSIM + focal), trained on good images with the project's synthesised
  anomalies as its anomaly source (anomalib's own needs the DTD download). Its map has
  no classes. Its reconstructive U-Net is heavy: on a 2-core CPU one step of 8 crops at
  256 px takes about 145 s, so a budget of minutes gives it a handful of steps; give it
  a GPU (or `--minutes` in hours) before reading its row.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from inspection.datasets import load_dataset
from inspection.evaluate import evaluate
from inspection.models import get_config, load_model
from inspection.models.detector import TiledDetector, TorchDetector
from inspection.models.outputs import Detection
from inspection.models.preprocess import PreprocessOptions
from inspection.pipeline import Thresholds, thresholds_of
from inspection.train.anomalies import synthesise_anomaly
from inspection.train.data import BatchMaker, Item, load_items, training_samples
from inspection.train.trainer import TrainOptions, train

CLASSES = get_config("small").classes
TARGET_FRR = 0.01


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def _classless(amap_logit: np.ndarray, image_logit: np.ndarray) -> Detection:
    """A Detection of a method that finds anomalies but names no class (``classes=()``:
    evaluation then reports no per-class accuracy for it, rather than a made-up one)."""
    amap_logit = np.asarray(amap_logit, np.float32).reshape(
        len(image_logit), 1, *amap_logit.shape[-2:]
    )
    b = len(image_logit)
    return Detection(
        maps=amap_logit,
        image_logit=np.asarray(image_logit, np.float32),
        class_logits=np.zeros((b, 0), np.float32),
        audio_logit=None,
        part_logit=np.asarray(image_logit, np.float32),
        patch_tokens=np.zeros((b, 1, 1), np.float32),
        audio_tokens=None,
        grid=(1, 1),
        classes=(),
    )


class ClassicalDetector:
    """Local contrast, normalised on good parts: the pre-deep-learning line inspection."""

    version = "classical-local-contrast"
    classes = ()

    def __init__(self, good_images: list[np.ndarray], kernel: int = 21):
        self.kernel = kernel
        responses = np.concatenate([self._response(im).ravel() for im in good_images])
        self.scale = float(np.percentile(responses, 99.9)) + 1e-6

    def _response(self, image: np.ndarray) -> np.ndarray:
        grey = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2GRAY)
        grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        return np.abs(grey.astype(np.float32) - cv2.medianBlur(grey, self.kernel))

    def detect(self, image: np.ndarray, audio=None) -> Detection:
        response = self._response(image) / self.scale  # 1.0 = the good parts' 99.9th pct
        top = np.sort(response.ravel())[-max(1, response.size // 1000) :].mean()
        return _classless(4 * (response - 1), np.array([4 * (top - 1)]))


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


class DraemDetector(TiledDetector):
    """anomalib's DRAEM behind the tiled-detector interface (inputs in [0, 1])."""

    classes = ()

    def __init__(self, net: torch.nn.Module, config):
        self.net, self.config, self.version = net.eval(), config, "anomalib-draem-scratch"

    def run(self, images: np.ndarray, mel=None) -> Detection:
        with torch.inference_mode():
            out = self.net(torch.from_numpy(_unnormalise(images, self.config)))
        # softmax probabilities of "anomalous", as logits
        return _classless(_logit(out.anomaly_map.numpy()), _logit(out.pred_score.numpy()))


def _unnormalise(images: np.ndarray, config) -> np.ndarray:
    mean = np.asarray(config.image_mean, np.float32)[:, None, None]
    std = np.asarray(config.image_std, np.float32)[:, None, None]
    return np.ascontiguousarray(images * std + mean, dtype=np.float32)


def _budgeted(minutes: float, name: str):
    """Step numbers until ``minutes`` have passed, with a progress bar."""
    deadline, step = time.monotonic() + minutes * 60, 0
    with tqdm(desc=name, unit="step", mininterval=5.0) as bar:
        while time.monotonic() < deadline:
            yield step
            step += 1
            bar.update(1)


def train_resnet(maker: BatchMaker, minutes: float, batch_size: int = 8) -> torch.nn.Module:
    import timm

    net = timm.create_model("resnet18", pretrained=False, num_classes=1 + len(CLASSES))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    net.train()
    for step in _budgeted(minutes, "resnet18"):
        batch = maker.batch(step, batch_size)
        logits = net(torch.from_numpy(batch.images))  # (B, 1+K)
        target = torch.from_numpy(
            np.concatenate([batch.image_labels[:, None], batch.class_labels], 1)
        )
        loss = F.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net


def _draem_batch(good: list[Item], size: int, step: int, batch_size: int, seed: int = 0):
    """(augmented, clean, mask) in [0, 1], as DRAEM trains: half the crops get an anomaly."""
    rng = np.random.default_rng([seed, step])
    augmented, clean, masks = [], [], []
    for _ in range(batch_size):
        image = good[int(rng.integers(len(good)))].image
        y = int(rng.integers(0, image.shape[0] - size + 1))
        x = int(rng.integers(0, image.shape[1] - size + 1))
        crop = image[y : y + size, x : x + size]
        mask = np.zeros((size, size), bool)
        out = crop
        if rng.random() < 0.5:
            anomaly = synthesise_anomaly(rng, crop)
            out, mask = anomaly.image, anomaly.mask
        augmented.append(out)
        clean.append(crop)
        masks.append(mask)

    def chw(images: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255)

    return chw(augmented), chw(clean), torch.from_numpy(np.stack(masks)[:, None].astype(np.int64))


def train_draem(good: list[Item], size: int, minutes: float, batch_size: int = 8):
    from anomalib.models.image.draem.loss import DraemLoss
    from anomalib.models.image.draem.torch_model import DraemModel

    net = DraemModel()
    loss_fn = DraemLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)  # DRAEM's published rate
    net.train()
    for step in _budgeted(minutes, "draem"):
        augmented, clean, mask = _draem_batch(good, size, step, batch_size)
        reconstruction, prediction = net(augmented)
        loss = loss_fn(clean, reconstruction, mask, prediction)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net


def calibrated(detector, held: list[Item]) -> Thresholds:
    """Image threshold at a 1 % false-reject rate on held-out good images (as ours)."""
    scores = [float(detector.detect(item.image).part_score[0]) for item in held]
    pixels = np.concatenate([detector.detect(it.image).anomaly_map[0].ravel() for it in held[:8]])
    return Thresholds(
        image=float(np.quantile(scores, 1 - TARGET_FRR)),
        pixel=float(np.quantile(pixels, 0.999)),
        version="held-out-good",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="training data (its train split)")
    parser.add_argument("--eval-data", help="held-out parts (default: --data's test split)")
    parser.add_argument("--minutes", type=float, default=10.0, help="budget of each method")
    parser.add_argument("--config", default="small", help="our model's config")
    parser.add_argument("--normal-only", action="store_true")
    parser.add_argument("--methods", default="ours,classical,resnet18,draem")
    parser.add_argument("--out", default="runs/baselines")
    args = parser.parse_args()
    out = Path(args.out)
    methods = args.methods.split(",")
    if "draem" in methods and importlib.util.find_spec("anomalib") is None:
        print("draem: skipped, anomalib is not installed (pip install -e '.[bench]')")
        methods.remove("draem")
    torch.manual_seed(0)

    config = get_config(args.config)
    prep = PreprocessOptions.from_config(config)
    good_s, labelled_s = training_samples(load_dataset(args.data), args.normal_only)
    order = np.random.default_rng(0).permutation(len(good_s))  # the trainer's split
    n_hold = max(1, round(0.1 * len(good_s)))
    held = load_items([good_s[i] for i in order[:n_hold]], prep, "held-out good")
    good = load_items([good_s[i] for i in order[n_hold:]], prep, "good")
    labelled = load_items(labelled_s, prep, "labelled")
    maker = BatchMaker(good, labelled, CLASSES, prep, config.n_mels, config.n_audio_frames, 0)

    detectors = {}
    seconds = {}
    for name in methods:
        start = time.monotonic()
        if name == "ours":
            options = TrainOptions(
                data=Path(args.data),
                out=out / "ours-model",
                config=args.config,
                normal_only=args.normal_only,
                max_minutes=args.minutes,
                steps=1_000_000,
                from_scratch=True,  # as the baselines: the shipped default saw this line
            )
            train(options)
            model = load_model(options.out)
            detectors[name] = (TorchDetector(model), thresholds_of(model.metadata))
        elif name == "classical":
            detector = ClassicalDetector([it.image for it in good[:100]])
            detectors[name] = (detector, calibrated(detector, held))
        elif name == "resnet18":
            detector = ResNetDetector(train_resnet(maker, args.minutes), config)
            detectors[name] = (detector, calibrated(detector, held))
        elif name == "draem":
            detector = DraemDetector(train_draem(good, config.image_size, args.minutes), config)
            detectors[name] = (detector, calibrated(detector, held))
        else:
            raise SystemExit(f"unknown method {name!r}")
        seconds[name] = time.monotonic() - start

    eval_data = args.eval_data or args.data
    results = {
        name: evaluate(detector, thresholds, eval_data, out / name, progress=False)
        for name, (detector, thresholds) in detectors.items()
    }
    _print_table(results, seconds)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {
            "image_auroc": m["image_auroc"],
            "pixel_auroc": m["pixel_auroc"],
            "per_class": {c: v["accuracy"] for c, v in m["per_class"].items()},
            "per_class_auroc": {c: v["auroc"] for c, v in m["per_class_by_score"].items()},
            "seconds": seconds[name],
        }
        for name, m in results.items()
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _print_table(results: dict, seconds: dict) -> None:
    classes = sorted({c for m in results.values() for c in m["per_class"]})
    ours = (results.get("ours") or next(iter(results.values())))["image_auroc"] or 1e-9
    head = f"{'method':<10} {'s':>6} {'img AUROC':>9} {'/ ours':>6} {'px AUROC':>8} "
    print(head + " ".join(f"{c[:9]:>9}" for c in classes) + "   (per-class accuracy)")
    for name, m in results.items():
        accs = [m["per_class"].get(c, {}).get("accuracy") for c in classes]
        cells = " ".join(f"{a:9.3f}" if a is not None else f"{'n/a':>9}" for a in accs)
        px = f"{m['pixel_auroc']:8.3f}" if m["pixel_auroc"] is not None else f"{'n/a':>8}"
        auroc = m["image_auroc"]
        print(f"{name:<10} {seconds[name]:6.0f} {auroc:9.4f} {auroc / ours:6.3f} {px} {cells}")


if __name__ == "__main__":
    main()
