"""The part's silhouette: regions only the normality model finds on the background beside
the part, dropped (fusion.fuse's ``interior``, silhouette.part_interior). Each part of a
synthetic set is detected once by the heads and once by the product's normality model,
then fused and decided without and with the station's silhouette rule (the one the
normality model recorded, else learned here from its good parts, as the fit learns it).

Per setting: verdict agreement with the standard on the exact attributes, rejectable
parts passed (by true class), parts the standard passes rejected, good parts and parts
the standard passes sent to REVIEW, image AUROC of the fused part score, the median time
of the fusion (outline included, on a part the normality model flags itself, as the
line outlines) and of `pipeline.decide` per part, both settings in the
same run. With ``--texture DIR`` (real images filling the frame, e.g. magnetic tile), the
share of its images that give a plausible silhouette, and whether a rule is learned.

    inspection synth --out runs/val-bracket --n 300 --seed 11 --product bracket --train-ratio 0
    python benchmarks/part_silhouette.py --data runs/val-bracket \\
        --normality runs/normality/bracket-560 --texture ../shared/data/magnetic-tile

Results: benchmarks/README.md, section "The part's silhouette".
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from second_look import verdict_row
from stroke_join import line_parser, load_line
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.datasets import load_dataset
from inspection.io import read_image
from inspection.metrics import image_auroc
from inspection.models.fusion import fuse
from inspection.pipeline import thresholds_of
from inspection.silhouette import learn_silhouette, outline, part_interior
from inspection.train.normality import STATION_FRAMES  # as the fit learns the rule


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--good", type=Path, default=None, help="good frames to learn from")
    parser.add_argument("--texture", type=Path, default=None)
    args = parser.parse_args()
    detector, metadata, dataset = load_line(args)
    if detector.silhouette is None:  # a normality model fitted before the rule: as the fit
        good = load_dataset(args.good or args.data).samples
        frames = (read_image(s.image) for s in good if s.is_good)
        detector.silhouette = learn_silhouette(
            f for f, _ in zip(frames, range(STATION_FRAMES), strict=False)
        )
    print(f"{dataset.metadata.get('product')}: rule {detector.silhouette}")
    if detector.silhouette is not None:
        rows = _fused_rows(detector, dataset)
        standard = ev.dataset_standard(dataset)
        thresholds = thresholds_of(metadata)
        for name in ("without", "with"):
            parts = [(s, image, fused[name]) for s, image, fused, _ in rows]
            auroc = image_auroc(
                [not s.is_good for s, _, _ in parts], [float(d.part_score[0]) for _, _, d in parts]
            )
            fusing = 1000 * float(np.median([seconds[name] for *_, seconds in rows]))
            print(
                f"{name:8s}",
                verdict_row(parts, dataset, standard, thresholds),
                f"image AUROC {auroc:.4f}  fuse p50 {fusing:.2f} ms",
                flush=True,
            )
        found = sum(fused["outlined"] for _, _, fused, _ in rows)
        print(f"frames given a silhouette: {found} of {len(rows)}")
    if args.texture is not None:
        _texture_row(args.texture)


def _fused_rows(detector, dataset) -> list[tuple]:
    """``(sample, image, {"without", "with", "outlined"}, seconds)`` for every part: fused
    as before the rule, and as the line fuses (``FusedDetector.fuse``)."""
    rows = []
    h_t, n_t = detector.heads_thresholds, detector.normality_thresholds
    for sample in tqdm(dataset.samples, desc="detecting", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        heads, normality = detector.heads.detect(image, audio), detector.normality.detect(image)
        fused, seconds = {}, {}
        start = time.perf_counter()
        fused["without"] = fuse(heads, normality, h_t, n_t)
        seconds["without"] = time.perf_counter() - start
        start = time.perf_counter()
        fused["with"] = detector.fuse(heads, normality, image)
        seconds["with"] = time.perf_counter() - start
        fused["outlined"] = part_interior(image, detector.silhouette) is not None
        rows.append((sample, image, fused, seconds))
    return rows


def _texture_row(root: Path) -> None:
    samples = load_dataset(root).samples
    found = [outline(read_image(s.image)) for s in tqdm(samples, desc="outlining", unit="img")]
    separations = np.array([o.separation for o in found])
    good = [s for s in samples if s.is_good][:STATION_FRAMES]
    rule = learn_silhouette(read_image(s.image) for s in good)
    print(
        f"{root}: {sum(o.plausible for o in found)} of {len(found)} images give a plausible "
        f"silhouette (between-class share median {np.median(separations):.3f}, "
        f"max {separations.max():.3f}); rule learned from {len(good)} good images: {rule}"
    )


if __name__ == "__main__":
    main()
