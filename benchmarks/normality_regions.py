"""The normality model's own regions on a part only the heads flag (fusion.fuse).

A region only the normality model finds (its ``anomaly`` class, which the standards do
not list, so REVIEW) now counts only on a part the normality model flags itself. Before,
it counted on every part the fused score flags, so a stray speck over the normality
model's pixel threshold (its 99.9th percentile of good pixels) sent a part the heads had
flagged for a tolerable colour patch to REVIEW. Each part is detected once by each model
(the shipped default, the product's normality model, as the demo fuses them); then fused
both ways and decided (`second_look.verdict_row`: agreement with the standard on the exact
attributes, rejectable parts passed, parts the standard passes rejected or sent to
REVIEW).

The rule before is had by raising the normality model's part logit to its threshold on a
part the heads flag (there the fused part is flagged either way; on a part neither flags
no region is judged but the heads' second look, which leaves the normality model's out).

    inspection synth --out runs/val-tile --n 300 --seed 11 --product tile --train-ratio 0
    python benchmarks/normality_regions.py --data runs/val-tile --normality runs/normality/tile-560

Results: benchmarks/README.md, section "The normality model's regions on a part only the
heads flag".
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from second_look import verdict_row
from stroke_join import line_parser, load_line
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.models.fusion import fuse, threshold_logit
from inspection.pipeline import thresholds_of


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    if args.normality is None:
        raise SystemExit("--normality is needed: the rule is the fused detector's")
    standard = ev.dataset_standard(dataset)
    heads_t, normality_t = detector.heads_thresholds, detector.normality_thresholds
    heads_image, normality_image = (
        threshold_logit(heads_t.image),
        threshold_logit(normality_t.image),
    )
    before, now = [], []
    for sample in tqdm(dataset.samples, desc="detecting", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        heads = detector.heads.detect(image, audio)
        normality = detector.normality.detect(image)
        now.append((sample, image, fuse(heads, normality, heads_t, normality_t)))
        if heads.part_logit[0] >= heads_image:  # the heads flag it: the normality model speaks
            raised = np.maximum(normality.part_logit, np.float32(normality_image))
            normality = replace(normality, part_logit=raised)
        before.append((sample, image, fuse(heads, normality, heads_t, normality_t)))
    thresholds = thresholds_of(metadata)
    product = dataset.metadata["product"]
    print(f"{product}: {len(now)} parts, second look {metadata['fusion']['second_look']}")
    verdict_row(now, dataset, standard, thresholds)  # warm-up: not timed
    for name, parts in (("every part", before), ("parts it flags", now)):
        print(f"{name:15s}", verdict_row(parts, dataset, standard, thresholds), flush=True)


if __name__ == "__main__":
    main()
