"""Flip test-time augmentation of the heads: each input also runs mirrored left-right, the
two maps and logits averaged (or the larger kept), fused with the product's normality
model as the line fuses it. Side by side on the same parts: the heads as shipped, flip
mean, flip max, each decided by the line's rules under the product's standard.

    inspection synth --out runs/heldout-tile --n 300 --seed 7 --product tile --train-ratio 0
    python benchmarks/flip_tta.py --data runs/heldout-tile --normality runs/normality/tile-560

Results: benchmarks/README.md, section "Flip test-time augmentation of the heads".
"""

from __future__ import annotations

import dataclasses

import numpy as np
from second_look import verdict_row
from stroke_join import line_parser
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.datasets import load_dataset
from inspection.metrics import image_auroc
from inspection.models import load_model
from inspection.models.detector import TorchDetector
from inspection.pipeline import thresholds_of, with_normality

COMBINE = {"mean": lambda a, b: (a + b) / 2, "max": np.maximum}
_LOGITS = ("image_logit", "class_logits", "part_logit")


class FlipDetector(TorchDetector):
    """The heads on each input and on its mirror image, combined (maps mirrored back)."""

    def __init__(self, model, combine: str):
        super().__init__(model)
        self.combine = COMBINE[combine]

    def run(self, images, mel=None, frame_shape=None):
        plain = super().run(images, mel, frame_shape)
        mirrored = super().run(np.ascontiguousarray(images[..., ::-1]), mel, frame_shape)
        both = {"maps": (plain.maps, mirrored.maps[..., ::-1])}
        both |= {f: (getattr(plain, f), getattr(mirrored, f)) for f in _LOGITS}
        return dataclasses.replace(plain, **{f: self.combine(*ab) for f, ab in both.items()})


def main() -> None:
    args = line_parser(__doc__).parse_args()
    if args.normality is None:
        raise SystemExit("--normality: the product's normality model (as the line fuses it)")
    model, dataset = load_model(args.model), load_dataset(args.data)
    standard = ev.dataset_standard(dataset)
    samples = [(s, *ev.read_sample(s)[:2]) for s in dataset.samples]
    labels = np.array([not s.is_good for s, _, _ in samples])
    for name, heads in (
        ("as shipped", TorchDetector(model)),
        ("flip mean", FlipDetector(model, "mean")),
        ("flip max", FlipDetector(model, "max")),
    ):
        detector, metadata = with_normality(heads, args.normality)
        parts = [
            (sample, image, detector.detect(image, audio))
            for sample, image, audio in tqdm(samples, desc=name, unit="part", mininterval=5.0)
        ]
        scores = np.array([float(d.part_score[0]) for _, _, d in parts])
        auroc = image_auroc(labels, scores)
        row = verdict_row(parts, dataset, standard, thresholds_of(metadata))
        print(f"{name:10s}  part AUROC {auroc:.4f}  {row}", flush=True)


if __name__ == "__main__":
    main()
