"""The guard band (ISO 14253-1 guarded acceptance, inspection.standards.guard) as built:
measured on one synthetic set, applied to another (``guard_band.py`` measured hand-set
bands before it was built). The calibration set's parts are detected and
decided once; each defect found is matched to the true defect it covers
(``evaluate.matched_defects``) and the band fitted per class and attribute
(``measure_guard_band``). The held-out set's parts are detected once and decided five
times, side by side in one run: with the readings taken as exact; with a band holding 95 %
of the errors' size on both sides of a reading (``|reading - true|``, as built until
2026-12-07); and with each side fitted on its own errors (how far the truth lies above
the reading, and how far under it), holding 97.5 % of them (as built: the interval with
equal tails) or 95 %; and with the band as built proving rejection too (ISO 14253-1's
other half: a reading beyond a limit by less than its band is REVIEW, not REJECT; built
2026-12-07 as ``prove_rejection``), of every class and of each class alone.

Per setting: verdict agreement with the standard on the exact attributes, rejectable
parts passed (by true class), parts the standard passes rejected, good parts and parts
the standard passes sent to REVIEW, and the median time of ``pipeline.decide``.

    inspection synth --out runs/val-tile --n 300 --seed 11 --product tile --train-ratio 0
    inspection synth --out runs/heldout-tile --n 300 --seed 7 --product tile --train-ratio 0
    python benchmarks/measured_guard_band.py --calibrate runs/val-tile --data runs/heldout-tile \\
        --normality runs/normality/tile-560

Results: benchmarks/README.md, sections "Guard bands", "Guard bands, each side on its
own errors" and "Proving rejection too".
"""

from __future__ import annotations

from pathlib import Path

from second_look import verdict_row
from stroke_join import detected_parts, line_parser, load_line

from inspection import evaluate as ev
from inspection.datasets import load_dataset
from inspection.pipeline import decide, thresholds_of, with_guard_band
from inspection.standards import GuardBand, measure_guard_band
from inspection.standards.guard import fit_band, gauge_readings, written_band_words
from inspection.types import Frame


def symmetric_band(band: GuardBand, readings) -> GuardBand:
    """``band``'s classes and attributes, each with one band of the errors' size."""
    grouped, _ = gauge_readings(readings)
    margins = {c: {a: fit_band(grouped[c][a]) for a in per} for c, per in band.margins.items()}
    return GuardBand(margins, band.pairs, band.source)


def main() -> None:
    parser = line_parser(__doc__)
    parser.add_argument("--calibrate", type=Path, required=True, help="set the band is fitted on")
    args = parser.parse_args()
    detector, metadata, dataset = load_line(args)
    standard = ev.dataset_standard(dataset)
    thresholds = thresholds_of(metadata)
    calibration = load_dataset(args.calibrate)
    readings = []
    for sample, image, detection in detected_parts(detector, calibration):
        frame = Frame(image=image, camera="bench", mm_per_px=calibration.scale_of(sample))
        reference = calibration.reference_of(sample)
        result = decide(detection, frame, standard, thresholds, sample.part_id, reference)
        matched = ev.matched_defects([d.defect for d in result.decisions], sample)
        readings += [(d.defect_class, dict(d.attributes), dict(t)) for d, t in matched]
    band = measure_guard_band(readings, source=str(args.calibrate))
    bands = {
        "both sides": symmetric_band(band, readings),
        "each 97.5%": band,
        "each 95%": measure_guard_band(readings, source=str(args.calibrate), quantile=0.9),
        "proven": band.proving_rejection(),
    } | {f"proven {c}": band.proving_rejection([c]) for c in sorted(band.margins)}
    print(f"{dataset.metadata.get('product')}: band fitted on {args.calibrate}")
    for name, fitted in list(bands.items())[:3]:  # "proven ..." are "each 97.5%"'s band
        print(f"  {name}:")
        for defect_class, per in fitted.to_dict()["margins"].items():
            words = ", ".join(f"{a} {written_band_words(u)}" for a, u in per.items())
            print(f"    {defect_class} ({band.pairs[defect_class]} defects): {words}")
    parts = detected_parts(detector, dataset)
    settings = {"exact": thresholds} | {
        name: with_guard_band(thresholds, fitted) for name, fitted in bands.items()
    }
    for name, setting in settings.items():
        print(f"{name:10s}", verdict_row(parts, dataset, standard, setting), flush=True)


if __name__ == "__main__":
    main()
