"""A crack only where the tap test rings wrong: on a part whose tap rings true, the
regions the maps call a crack take their next strongest class instead (every crack of the
synthetic line, visible or internal, lowers the part's fundamental: see
inspection/synth/audio.py). Each part of a synthetic set is detected once (the shipped
default, fused with the product's normality model as the demo runs it), then decided
with and without the rule.

    inspection synth --out runs/val-tile --n 300 --seed 11 --product tile --train-ratio 0
    python benchmarks/crack_tap.py --data runs/val-tile --normality runs/normality/tile-560

Results: benchmarks/README.md, section "A crack only where the tap rings wrong, and the
normality map's smoothing".
"""

from __future__ import annotations

from dataclasses import replace

from second_look import verdict_row
from stroke_join import line_parser, load_line
from tqdm import tqdm

from inspection import evaluate as ev
from inspection.models.outputs import Detection
from inspection.pipeline import tap_rings_wrong, thresholds_of


def without_crack(detection: Detection, crack: int) -> Detection:
    """The detection with the crack channel of its class maps (logits) out of reach."""
    maps = detection.maps.copy()
    maps[:, 1 + crack] = -1e9  # (B, 1 + K, H, W): a softmax over the K classes
    return replace(detection, maps=maps)


def main() -> None:
    args = line_parser(__doc__).parse_args()
    detector, metadata, dataset = load_line(args)
    thresholds = thresholds_of(metadata)
    standard = ev.dataset_standard(dataset)
    crack = list(detector.classes).index("crack")
    parts, ruled = [], []
    for sample in tqdm(dataset.samples, desc="detecting", unit="part", mininterval=2.0):
        image, audio, _ = ev.read_sample(sample)
        detection = detector.detect(image, audio)
        parts.append((sample, image, detection))
        rings_true = detection.audio_score is not None and not tap_rings_wrong(
            detection, thresholds
        )
        ruled.append((sample, image, without_crack(detection, crack) if rings_true else detection))
    print(dataset.metadata["product"], args.data)
    print("  as shipped     ", verdict_row(parts, dataset, standard, thresholds))
    print("  crack needs tap", verdict_row(ruled, dataset, standard, thresholds), flush=True)


if __name__ == "__main__":
    main()
