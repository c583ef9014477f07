"""``inspection train``: fit a detection model on good images (and labelled defects).

Deterministic per seed (batch ``k`` is a function of ``(seed, k)``), resumable (weights,
optimiser and step are checkpointed), bounded in time (``max_minutes``: the model at the
deadline is calibrated and saved), and calibrated: thresholds are set on held-out good
images and stored in the checkpoint, so verdicts mean something out of the box.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from inspection.config import default_model_dir
from inspection.datasets import load_dataset
from inspection.errors import ModelError, UserError
from inspection.metrics import image_auroc, threshold_for_frr
from inspection.models import create_model, get_config, load_model, read_checkpoint, save_model
from inspection.models.backbones import get_backbone
from inspection.models.checkpoint import WEIGHTS_FILE, CheckpointInfo, same_architecture
from inspection.models.config import METHODS, NORMALITY_METHODS
from inspection.models.detector import TorchDetector
from inspection.models.preprocess import MAX_SIDE, PreprocessOptions
from inspection.train.anomalies import synthesise_anomaly
from inspection.train.data import BatchMaker, Item, load_items, training_samples
from inspection.train.losses import detection_loss
from inspection.train.schedule import DeadlinePlan, run_problems, set_lr

STATE_FILE = "train_state.pt"
CALIBRATION_RESERVE = 0.05  # least share of a --max-minutes budget kept for calibration
CALIBRATION_MAX_SHARE = 0.2  # most: past it, fewer held-out images are scored
MIN_CALIBRATION_IMAGES = 10
CALIBRATION_MARGIN = 1.25  # on the timed cost: the machine's noise, and saving the model
LOG_FILE = "train_log.jsonl"
DEFAULT_CONFIG = "small"


class TrainError(UserError):
    """A run that cannot start as asked: an unknown config, a missing checkpoint or
    device, contradictory options. The message says which; the CLI prints it without a
    traceback (other exceptions are bugs and keep theirs)."""


@dataclass(frozen=True)
class TrainOptions:
    """What ``inspection train`` takes."""

    data: Path
    out: Path
    config: str | None = None  # None: DEFAULT_CONFIG, or the --init / --resume model's own
    normal_only: bool = False
    device: str = "cpu"
    max_minutes: float | None = None
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    anomaly_prob: float = 0.5
    holdout: float = 0.1
    target_frr: float = 0.01
    checkpoint_every: int = 200
    resume: bool = False
    init: Path | None = None  # start from this model's weights (same architecture)
    from_scratch: bool = False  # random weights even where the shipped default fits
    max_side: int | None = None  # scale frames down to this longest side before tiling
    progress: bool = True
    method: str = "auto"  # heads, padim, patchcore; auto: see resolved_method
    backbone: str | None = None  # pretrained backbone of a normality model
    silhouette: bool = True  # a normality model learns whether frames show a part on a background
    colour_patches: bool = True  # and how far off a good face's boxes read (patches' search)

    def __post_init__(self) -> None:
        if self.init is not None and self.from_scratch:
            raise TrainError("--init and --from-scratch contradict each other: choose one")
        if self.method not in ("auto", *METHODS):
            raise TrainError(f"--method must be auto or one of {', '.join(METHODS)}")
        if self.from_scratch and self.resolved_method in NORMALITY_METHODS:
            raise TrainError(
                f"--from-scratch trains heads from random weights; a {self.resolved_method} "
                "model starts from its pretrained backbone (leave --from-scratch out, or use "
                "--method heads)"
            )
        problems = run_problems(self.steps, self.batch_size, self.lr, self.max_minutes)
        if problems:
            raise TrainError("; ".join(problems))

    @property
    def resolved_method(self) -> str:
        """``auto`` is the best measured method for the data: a PaDiM normality model on a
        pretrained backbone for good images alone (``--normal-only``) when no heads
        config, ``--init``, ``--resume`` or ``--from-scratch`` asks for trained heads;
        else trained heads (they learn the defect classes from labelled and synthesised
        defects)."""
        if self.method != "auto":
            return self.method
        if (named := _config_method(self.config)) in NORMALITY_METHODS:
            return named  # --config padim-lite0-context: the config says what it is
        heads_asked = (
            self.config is not None or self.init is not None or self.resume or self.from_scratch
        )
        return "padim" if self.normal_only and not heads_asked else "heads"

    @property
    def config_name(self) -> str:
        return self.config or DEFAULT_CONFIG


@dataclass(frozen=True)
class TrainResult:
    out: Path
    steps: int
    seconds: float
    images_per_second: float
    final_loss: float
    thresholds: dict[str, float]
    holdout_auroc: float | None  # good held-out images vs the same with synthetic defects
    stopped_by_deadline: bool
    started_from: Path | None  # the checkpoint whose weights the run started from
    history: list[dict[str, float]] = field(default_factory=list)
    silhouette: dict[str, Any] | None = None  # a normality model's part silhouette rule
    grain: dict[str, Any] | None = None  # a normality model's rule for lines along the grain
    colour_patches: dict[str, Any] | None = None  # and for faint colour patches


def _config_method(config: str | None) -> str | None:
    """The method the config named by ``--config`` declares (``None`` when there is no
    config, or it cannot be read: the run that uses it says why)."""
    if config is None:
        return None
    try:
        return get_config(config).method
    except (FileNotFoundError, KeyError, ValueError):
        return None


def train(
    options: TrainOptions,
    begun: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrainResult:
    """Train, calibrate and save a model to ``options.out``.

    Parameters
    ----------
    options
        The run.
    begun
        The ``clock()`` reading that ``options.max_minutes`` counts from (default: now).
        The CLI passes its own start, so that importing torch (5-10 s on a cold disk) is
        inside the budget the user gave.
    clock
        Seconds, monotonic: what the deadline, the schedule's pace and calibration's
        timed cost are measured with. Tests pass a simulated one, so that what a
        deadline run does depends on no machine's speed.
    """
    begun = clock() if begun is None else begun
    if options.resolved_method != "heads":
        from inspection.train.normality import fit_normality

        return fit_normality(replace(options, method=options.resolved_method), begun, clock)
    if (named := _config_method(options.config)) in NORMALITY_METHODS:
        raise TrainError(
            f"--config {options.config} is a {named} normality model: trained heads need a "
            f"heads config (leave --method out, or use --method {named})"
        )
    device, continued = check_can_start(options)
    torch.manual_seed(options.seed)
    out = options.out
    model, optimizer, start_step, elapsed0, planned = _model_and_state(options, device, continued)
    config = model.config
    # A resumed run keeps the scale it started at; a new model gets the one asked for.
    max_side = options.max_side or model.metadata.get(MAX_SIDE)
    try:
        prep = PreprocessOptions.from_config(config, max_side=max_side)
    except ValueError as exc:
        raise TrainError(str(exc)) from exc
    if max_side is not None:  # every detector of this model works at that scale
        model.metadata[MAX_SIDE] = max_side

    dataset = load_dataset(options.data)
    good_samples, labelled_samples = training_samples(dataset, options.normal_only)
    if not good_samples:
        raise TrainError(f"{options.data}: no good images to train on (none in its train split)")
    fit, holdout = split_holdout(good_samples, options)
    good = load_items(fit, prep, "loading good images")
    labelled = load_items(labelled_samples, prep, "loading labelled defects")
    held = load_items(holdout, prep, "loading held-out images")
    if not good or not held:
        raise TrainError(f"{options.data}: too few readable good images to train and calibrate")
    maker = BatchMaker(
        good,
        labelled,
        config.classes,
        prep,
        config.n_mels,
        config.n_audio_frames,
        options.seed,
        options.anomaly_prob,
    )

    budget = None if options.max_minutes is None else options.max_minutes * 60 - elapsed0
    reserve = 0.0
    if budget is not None:
        n_calibrate, reserve = plan_calibration(
            len(held), seconds_per_detection(model, held[0], clock), budget
        )
        held = held[:n_calibrate]
    started = clock()
    # Seconds of training left, counted from `started`: loading is spent already.
    deadline = None if budget is None else budget - reserve - (started - begun)
    # The learning-rate schedule spans the steps the run will really make, so the model
    # at the deadline has finished annealing (the plan is kept for --resume).
    plan = DeadlinePlan(options.steps, deadline, start_step, started, planned)
    history: list[dict[str, float]] = []
    step, stopped = start_step, False
    bar = tqdm(
        total=plan.total,
        initial=start_step,
        desc="training",
        unit="step",
        disable=not options.progress,
        dynamic_ncols=True,
        mininterval=2.0,  # a non-TTY log gets a line every 2 s, not every step
    )
    model.train()
    out.mkdir(parents=True, exist_ok=True)  # only now: a run refused above writes nothing
    log = (out / LOG_FILE).open("a", encoding="utf-8")
    # A run resumed without the --max-minutes it began with has no deadline to stop it:
    # it ends where that deadline's plan did (its schedule spans those steps, and past
    # them the learning rate stays at its 2 % floor), not at the step limit.
    last = options.steps if deadline is not None else min(options.steps, plan.total)
    while step < last:
        now = clock()
        if plan.expired(now):
            stopped = True
            break
        if plan.update(step, now):
            bar.total = plan.total  # the bar shows the steps the deadline allows, and their ETA
            bar.refresh()
        set_lr(optimizer, options.lr, step, plan.total)
        batch = _to_torch(maker.batch(step, options.batch_size), device)
        out_ = model(batch["images"], batch.get("mel"))
        terms = detection_loss(out_, batch)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        record = {"step": step, **{k: v.item() for k, v in terms.items()}}
        history.append(record)
        log.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{record['total']:.3f}", seg=f"{record['seg']:.3f}")
        bar.update(1)
        if step % options.checkpoint_every == 0:
            elapsed = elapsed0 + clock() - started
            _checkpoint(model, optimizer, step, elapsed, plan.planned, out)
    bar.close()
    log.close()
    seconds = clock() - started
    model.eval()
    thresholds, auroc = calibrate(model, held, options)
    model.metadata.update(
        {
            "thresholds": thresholds,
            "holdout_auroc": auroc,
            "train": _jsonable(asdict(options)),
            "steps": step,
            "products": dataset.products,
        }
    )
    if config.backbone:  # the card says which weights the tower starts from
        model.metadata["backbone"] = get_backbone(config.backbone).provenance
    _checkpoint(model, optimizer, step, elapsed0 + seconds, plan.planned, out)
    done = step - start_step
    return TrainResult(
        out=out,
        steps=step,
        seconds=seconds,
        images_per_second=done * options.batch_size / max(seconds, 1e-9),
        final_loss=float(np.mean([h["total"] for h in history[-50:]])) if history else math.nan,
        thresholds=thresholds,
        holdout_auroc=auroc,
        stopped_by_deadline=stopped,
        started_from=Path(model.metadata["init"]) if "init" in model.metadata else None,
        history=history,
    )


def split_holdout(good_samples: list, options: TrainOptions) -> tuple[list, list]:
    """(fit, held-out) good samples: a seeded ``options.holdout`` share held out for
    calibration (at least one; all of them are fitted on too when they are that few)."""
    order = np.random.default_rng(options.seed).permutation(len(good_samples))
    n_hold = max(1, round(options.holdout * len(good_samples)))
    holdout = [good_samples[i] for i in order[:n_hold]]
    return [good_samples[i] for i in order[n_hold:]] or holdout, holdout


def calibrate(
    model,
    held: list[Item],
    options: TrainOptions,
    as_new: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[dict[str, float], float | None]:
    """Thresholds from held-out good images, and a sanity AUROC on synthetic defects.

    The image threshold passes a new good part with probability ``1 - target_frr``
    (:func:`~inspection.metrics.threshold_for_frr`: every held-out good when they are too
    few to promise that), the audio threshold likewise; the pixel threshold is the 99.9th
    percentile of their anomaly maps (a defect region must stand out from everything a
    good surface shows). All are recorded as measured; :func:`~inspection.pipeline.thresholds_of`
    lifts the pixel and audio ones to their heads' own boundary (0.5) when lower.

    ``as_new``: a context in which ``model`` scores the held-out images, and the synthetic
    defects made on them, as if it had not fitted on them (PaDiM fits on them too and
    scores them leave-one-out: a synthetic defect is mostly the fitted image around it).
    """
    detector = TorchDetector(model)
    rng = np.random.default_rng([options.seed, 999_983])
    good_scores, bad_scores, pixels, audio_scores = [], [], [], []
    for item in tqdm(
        held, desc="calibrating", leave=False, disable=not options.progress, mininterval=2.0
    ):
        anomaly = synthesise_anomaly(rng, item.image)
        with as_new():
            det = detector.detect(item.image, item.audio, item.frame_shape)
            bad = detector.detect(anomaly.image, frame_shape=item.frame_shape)
        good_scores.append(float(det.image_score[0]))
        pixels.append(det.anomaly_map[0].ravel()[:: max(1, det.anomaly_map[0].size // 20000)])
        if det.audio_score is not None:
            audio_scores.append(float(det.audio_score[0]))
        bad_scores.append(float(bad.image_score[0]))
    thresholds = {
        "image": threshold_for_frr(good_scores, options.target_frr) if good_scores else 0.5,
        "pixel": float(np.quantile(np.concatenate(pixels), 0.999)) if pixels else 0.5,
        "audio": threshold_for_frr(audio_scores, options.target_frr) if audio_scores else 0.5,
        "held_out_good": len(good_scores),
    }
    labels = [False] * len(good_scores) + [True] * len(bad_scores)
    return thresholds, image_auroc(labels, good_scores + bad_scores)


def recalibrate(
    model_dir: str | Path,
    good: str | Path,
    out: str | Path,
    target_frr: float = 0.01,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, float], dict[str, float]]:
    """A trained model with its thresholds set again on good images it never trained on.

    The thresholds a run records are set on the few good images it held out (a tenth of
    its good images): the image threshold, an order statistic near the top of them, moves
    with them. A plant sets them again on its own line's good parts, as many as it has
    (:func:`calibrate`, the same measure). The weights are unchanged; the model is written
    to ``out`` with the new thresholds, under a new version.

    Parameters
    ----------
    model_dir
        The trained model.
    good
        A dataset whose good images (every split) the model has not trained on.
    out
        The folder to write the recalibrated model to; refused if it holds a model.
    target_frr
        The share of good parts the image threshold may flag.
    seed
        Seed of the synthetic defects the sanity AUROC is measured on.
    progress
        Show a progress bar.

    Returns
    -------
    tuple of dict
        The model's thresholds before, and those written (``image``, ``pixel``,
        ``audio``, ``held_out_good``).
    """
    out = Path(out)
    if (out / WEIGHTS_FILE).exists():
        raise TrainError(f"{out} holds a model already: give a new folder")
    if not 0 < target_frr < 1:
        raise TrainError(f"target FRR {target_frr:g}: a share between 0 and 1 is needed")
    model = load_model(model_dir).eval()
    prep = PreprocessOptions.from_config(model.config, max_side=model.metadata.get(MAX_SIDE))
    samples = [s for s in load_dataset(good).samples if s.is_good]
    held = load_items(samples, prep, "loading good images")
    if not held:
        raise TrainError(f"{good}: no readable good images to calibrate on")
    options = TrainOptions(Path(good), out, seed=seed, target_frr=target_frr, progress=progress)
    before = dict(model.metadata.get("thresholds") or {})
    thresholds, auroc = calibrate(model, held, options)
    recalibrated = {"from": model.model_version, "good": str(good), "target_frr": target_frr}
    metadata = {**model.metadata, "thresholds": thresholds, "holdout_auroc": auroc}
    save_model(model, out, extra={**metadata, "recalibrated": recalibrated})  # sets metadata
    return before, thresholds


def seconds_per_detection(
    model, item: Item, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds one full-image detection takes on this machine (timed after a warm-up)."""
    detector = TorchDetector(model.eval())
    detector.detect(item.image, item.audio)
    start = clock()
    detector.detect(item.image, item.audio)
    seconds = clock() - start
    model.train()
    return seconds


def plan_calibration(n_held: int, seconds_per_detect: float, budget: float) -> tuple[int, float]:
    """Held-out images to calibrate on, and the seconds of a budget to keep for it.

    Calibration runs two detections per held-out image (the image, and a synthetic
    defect on it), and their cost grows with the image: a 1024 px image is 16 tiles or
    more. So the reserve is the timed cost, at least :data:`CALIBRATION_RESERVE` of the
    budget; past :data:`CALIBRATION_MAX_SHARE`, fewer images are scored (never fewer than
    :data:`MIN_CALIBRATION_IMAGES`), so a 20-minute run of large images ends in 20
    minutes instead of overrunning by its calibration (a 3-minute run of 900 px images
    overran by 32 s with a fixed 5 %).
    """
    per_image = 2 * seconds_per_detect * CALIBRATION_MARGIN
    n = n_held
    if n * per_image > CALIBRATION_MAX_SHARE * budget:
        fits = int(CALIBRATION_MAX_SHARE * budget // per_image)
        n = max(min(n_held, MIN_CALIBRATION_IMAGES), fits)
    return n, max(CALIBRATION_RESERVE * budget, n * per_image)


def starting_checkpoint(options: TrainOptions) -> Path | None:
    """The checkpoint a new run starts from, or ``None`` for random weights.

    ``options.init`` when given; else, unless ``options.from_scratch``, the shipped
    default model (``<models_dir>/default``) when it has the architecture of
    ``options.config``: a pretrained start, as ImageNet weights are for other tools. Its
    features were learned on thousands of synthesised and labelled defects, which 20
    minutes on a new product's good images cannot teach (magnetic tile, good images
    only, 20 minutes: image AUROC 0.72-0.74 from random weights, 0.74-0.76 from the
    default; see ``benchmarks/README.md``).
    """
    if options.init is not None or options.from_scratch:
        return options.init
    return default_model_dir() if _shipped_start(options) is not None else None


def _shipped_start(options: TrainOptions) -> CheckpointInfo | None:
    """The shipped default's header when a new run starts from it (see
    :func:`starting_checkpoint`), read once: the model is then built from it."""
    if options.init is not None or options.from_scratch:
        return None
    shipped = default_model_dir()
    if not (shipped / WEIGHTS_FILE).is_file():  # no shipped default here: random weights
        return None
    try:
        info = read_checkpoint(shipped)
    except ModelError as exc:  # there but corrupt: say so, never start silently from random
        raise TrainError(f"{exc}; pass --from-scratch to train from random weights") from exc
    return info if same_architecture(info.config, get_config(options.config_name)) else None


def check_can_start(options: TrainOptions) -> tuple[torch.device, CheckpointInfo | None]:
    """Check what a run needs before anything is written; return its device and the
    checkpoint it continues (``--resume`` / ``--init``; ``None`` for a new run), whose
    header is then read once.

    Raises
    ------
    TrainError
        An unknown config or device, CUDA asked for where there is none, ``--resume``
        without a run to resume, an ``--init`` that is not a model, or a ``--config``
        that contradicts the model ``--init`` or ``--resume`` continues.
    """
    try:
        device = torch.device(options.device)
    except RuntimeError as exc:
        raise TrainError(f"--device {options.device!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {options.device}: torch sees no CUDA device here")
    try:
        asked = get_config(options.config_name)
    except FileNotFoundError as exc:
        raise TrainError(f"--config {options.config_name}: no such file") from exc
    except (KeyError, ValueError) as exc:
        raise TrainError(str(exc.args[0])) from exc
    if options.resume:
        if not (options.out / STATE_FILE).exists():
            raise TrainError(f"--resume: no {STATE_FILE} in {options.out}: nothing to resume")
        continued, flag = options.out, "--resume"
    elif options.init is not None:
        continued, flag = options.init, "--init"
    else:
        return device, None
    try:
        info = read_checkpoint(continued)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainError(f"{flag}: {exc}") from exc
    if options.config is not None and not same_architecture(info.config, asked):
        raise TrainError(
            f"{flag} {continued} is a {info.config.name!r} model; --config {options.config} "
            "contradicts it (leave --config out to keep the model's own)"
        )
    return device, info


def _model_and_state(options: TrainOptions, device: torch.device, continued: CheckpointInfo | None):
    state_file = options.out / STATE_FILE
    if options.resume:  # check_can_start has seen the state file and read `continued`
        model = load_model(continued, device=str(device))
        optimizer = _optimizer(model, options)
        state = torch.load(state_file, map_location=device, weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        planned = state.get("planned_steps")
        return model, optimizer, int(state["step"]), float(state["elapsed"]), planned
    start = continued or _shipped_start(options)  # --init's header, or the default's
    if start is not None:
        # Fine-tuning: the weights go on, the optimiser and the schedule start afresh.
        model = load_model(start, device=str(device))
        init = options.init or default_model_dir()
        model.metadata = {"init": str(init), "init_version": model.model_version}
    else:
        model = create_model(options.config_name, device=str(device))
    return model, _optimizer(model, options), 0, 0.0, None


def _optimizer(model, options: TrainOptions) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)


def _to_torch(batch, device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: torch.from_numpy(v).to(device) for k, v in batch.__dict__.items() if v is not None}
    out["class_weight"] = out["class_weight"].expand_as(out["maps"][:, 1:])
    return out


def _checkpoint(model, optimizer, step: int, elapsed: float, planned: int | None, out: Path):
    save_model(model, out, extra=model.metadata)
    state = {
        "optimizer": optimizer.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "planned_steps": planned,
    }
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / STATE_FILE)  # atomic: an interrupted save never leaves a torn state


def _jsonable(d: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}
