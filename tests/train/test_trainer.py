"""Training: a tiny run learns, is deterministic, and resumes after an interruption."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from inspection.models import create_model, load_model, save_model
from inspection.synth import synthesize
from inspection.train import data as train_data
from inspection.train.trainer import (
    CALIBRATION_MAX_SHARE,
    CALIBRATION_RESERVE,
    MIN_CALIBRATION_IMAGES,
    STATE_FILE,
    TrainError,
    TrainOptions,
    plan_calibration,
    train,
)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("line") / "bracket"
    synthesize(
        out, n=40, seed=11, product="bracket", size=64, workers=1, train_ratio=0.8, progress=False
    )
    return out


def _options(data: Path, out: Path, **changes) -> TrainOptions:
    base = TrainOptions(
        data=data,
        out=out,
        config="tiny",
        normal_only=True,
        steps=12,
        batch_size=4,
        checkpoint_every=6,
        progress=False,
        holdout=0.2,
    )
    return replace(base, **changes)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def _power_cut_at(cut: int, monkeypatch):
    """Make training die at step ``cut``, as a power cut would; returns the real batch."""
    real_batch = train_data.BatchMaker.batch

    def crash(self, step, batch_size):
        if step == cut:
            raise KeyboardInterrupt("power cut")
        return real_batch(self, step, batch_size)

    monkeypatch.setattr(train_data.BatchMaker, "batch", crash)
    return real_batch


def test_resume_after_interruption_equals_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    straight = train(_options(tiny_data, tmp_path / "straight"))
    assert straight.steps == 12

    real_batch = _power_cut_at(9, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(_options(tiny_data, tmp_path / "cut"))
    monkeypatch.setattr(train_data.BatchMaker, "batch", real_batch)
    resumed = train(_options(tiny_data, tmp_path / "cut", resume=True))
    assert resumed.steps == 12
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "cut")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_run_resumed_without_its_deadline_ends_where_its_plan_did(
    tiny_data, tmp_path, monkeypatch
):
    """A run planned by its --max-minutes to 8 of its 12 steps, resumed without the flag,
    stops at 8 (the schedule has annealed there), where it went on to the step limit at
    the schedule's floor rate with no deadline at all."""
    real_batch = _power_cut_at(7, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(_options(tiny_data, tmp_path / "cut"))
    monkeypatch.setattr(train_data.BatchMaker, "batch", real_batch)
    state_path = tmp_path / "cut" / STATE_FILE
    state = torch.load(state_path, weights_only=False)
    assert state["step"] == 6
    state["planned_steps"] = 8  # as a deadline's plan records it
    torch.save(state, state_path)
    resumed = train(_options(tiny_data, tmp_path / "cut", resume=True))
    assert resumed.steps == 8


def test_resume_without_state_is_an_error(tiny_data, tmp_path):
    with pytest.raises(TrainError, match="train_state"):
        train(_options(tiny_data, tmp_path / "none", resume=True))
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config": "nosuch"}, "unknown model 'nosuch'"),
        ({"config": "missing.yaml"}, "--config missing.yaml: no such file"),
        ({"init": "not-a-model"}, "--init: .*no such checkpoint"),
        ({"init": "tiny", "config": "tiny-conv"}, "is a 'tiny' model; --config tiny-conv"),
        ({"device": "cpux"}, "--device 'cpux'"),
        ({"max_side": 32}, "under the model's tile"),
    ],
)
def test_a_run_that_cannot_start_is_refused_before_writing(tiny_data, tmp_path, changes, message):
    if changes.get("init") == "tiny":
        save_model(create_model("tiny"), tmp_path / "tiny")
    if "init" in changes:
        changes["init"] = tmp_path / changes["init"]
    with pytest.raises(TrainError, match=message):
        train(_options(tiny_data, tmp_path / "out", **changes))
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: nothing to refuse")
def test_cuda_without_a_gpu_is_refused(tiny_data, tmp_path):
    with pytest.raises(TrainError, match="no CUDA device"):
        train(_options(tiny_data, tmp_path / "out", device="cuda"))


def test_init_fine_tunes_from_a_trained_model(tiny_data, tmp_path):
    first = train(_options(tiny_data, tmp_path / "first", steps=6))
    first_weights = _weights(first.out)
    # No --config: the run takes the --init model's own.
    tuned = train(
        _options(tiny_data, tmp_path / "tuned", steps=3, init=first.out, lr=1e-9, config=None)
    )
    assert tuned.steps == 3  # a fresh schedule: the step count starts again at 0
    # A learning rate of 1e-9 leaves the weights where --init put them, not at a fresh draw.
    for name, value in _weights(tuned.out).items():
        torch.testing.assert_close(value, first_weights[name], rtol=1e-4, atol=1e-5, msg=name)
    model = load_model(tuned.out)
    assert model.metadata["init_version"] == load_model(first.out).model_version
    assert model.metadata["steps"] == 3


@pytest.fixture()
def shipped_tiny(tmp_path, monkeypatch) -> Path:
    """A models directory whose shipped ``default`` is a tiny model."""
    from inspection.config import get_settings

    models_dir = tmp_path / "models"
    save_model(create_model("tiny"), models_dir / "default")
    monkeypatch.setenv("INSPECTION_MODELS_DIR", str(models_dir))
    get_settings.cache_clear()
    yield models_dir / "default"
    get_settings.cache_clear()


def test_a_new_run_starts_from_the_shipped_default_of_its_architecture(
    tiny_data, tmp_path, shipped_tiny
):
    result = train(_options(tiny_data, tmp_path / "warm", steps=2, lr=1e-9))
    assert result.started_from == shipped_tiny
    shipped = _weights(shipped_tiny)
    for name, value in _weights(result.out).items():  # lr 1e-9: still the shipped weights
        torch.testing.assert_close(value, shipped[name], rtol=1e-4, atol=1e-5, msg=name)
    assert load_model(result.out).metadata["init_version"] == load_model(shipped_tiny).model_version


def test_from_scratch_or_another_architecture_starts_from_random_weights(
    tiny_data, tmp_path, shipped_tiny
):
    from inspection.train.trainer import starting_checkpoint

    assert starting_checkpoint(_options(tiny_data, tmp_path)) == shipped_tiny
    assert starting_checkpoint(_options(tiny_data, tmp_path, from_scratch=True)) is None
    assert starting_checkpoint(_options(tiny_data, tmp_path, config="tiny-conv")) is None
    result = train(_options(tiny_data, tmp_path / "cold", steps=2, from_scratch=True))
    assert result.started_from is None
    assert "init" not in load_model(result.out).metadata


def test_a_corrupt_shipped_default_is_refused_not_silently_replaced_by_random_weights(
    tiny_data, tmp_path, shipped_tiny
):
    from inspection.train.trainer import starting_checkpoint

    (shipped_tiny / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="--from-scratch"):
        starting_checkpoint(_options(tiny_data, tmp_path))
    assert starting_checkpoint(_options(tiny_data, tmp_path, from_scratch=True)) is None


def test_init_and_from_scratch_together_are_refused(tiny_data, tmp_path):
    with pytest.raises(TrainError, match="--from-scratch"):
        _options(tiny_data, tmp_path, init=tmp_path, from_scratch=True)


class SimClock:
    """Simulated seconds for deadline runs: a training step costs ``step_seconds`` and a
    detection ``detect_seconds``; loading, saving and everything else cost nothing. A
    deadline run then does the same on any machine, however loaded (on a real clock a
    busy 2-core machine spent a 3 s budget loading, and made no step)."""

    def __init__(self, monkeypatch, step_seconds: float = 1.0, detect_seconds: float = 0.0):
        from inspection.models.detector import TorchDetector

        self.now = 1000.0
        real_batch, real_detect = train_data.BatchMaker.batch, TorchDetector.detect

        def batch(maker, step, batch_size):
            self.now += step_seconds
            return real_batch(maker, step, batch_size)

        def detect(detector, *args, **kwargs):
            self.now += detect_seconds
            return real_detect(detector, *args, **kwargs)

        monkeypatch.setattr(train_data.BatchMaker, "batch", batch)
        monkeypatch.setattr(TorchDetector, "detect", detect)

    def __call__(self) -> float:
        return self.now


def test_deadline_stops_and_still_saves_a_calibrated_model(tiny_data, tmp_path, monkeypatch):
    clock = SimClock(monkeypatch, step_seconds=1.0)
    budget = 15.0  # seconds: 15 steps, less calibration's reserve
    result = train(
        _options(tiny_data, tmp_path / "quick", steps=10_000, max_minutes=budget / 60),
        clock=clock,
    )
    assert result.stopped_by_deadline
    assert budget * (1 - CALIBRATION_RESERVE) <= result.steps <= budget
    model = load_model(tmp_path / "quick")
    assert set(model.metadata["thresholds"]) >= {"image", "pixel", "audio"}
    assert model.metadata["thresholds"]["held_out_good"] == 6  # every held-out image
    assert model.metadata["steps"] == result.steps
    assert model.metadata["products"] == ["bracket"]  # the line's products it has seen


def test_deadline_run_with_slow_detections_ends_within_its_budget(tiny_data, tmp_path, monkeypatch):
    """Calibration's cost is timed and reserved: with detections as slow as on large
    images (0.3 s each, 2 per held-out image) a 12 s run still ends in 12 s; a fixed 5 %
    reserve (0.6 s) would train for 11 s and overrun by the whole calibration (3.6 s)."""
    clock = SimClock(monkeypatch, step_seconds=1.0, detect_seconds=0.3)
    begun = clock()
    result = train(
        _options(tiny_data, tmp_path / "timed", steps=10_000, max_minutes=0.2), clock=clock
    )
    assert result.stopped_by_deadline and result.thresholds["held_out_good"] == 6
    assert clock() - begun <= 0.2 * 60, clock() - begun  # training and calibration


def test_deadline_counts_from_the_given_start(tiny_data, tmp_path, monkeypatch):
    """The CLI starts the clock before importing torch: time spent before train() is
    inside --max-minutes, not added to it."""
    clock = SimClock(monkeypatch, step_seconds=1.0)
    begun = clock() - 6.0  # 6 of the 12 s already spent (imports, say)
    result = train(
        _options(tiny_data, tmp_path / "late", steps=10_000, max_minutes=0.2),
        begun=begun,
        clock=clock,
    )
    assert result.stopped_by_deadline
    assert result.steps <= 6  # the 6 s left, not 12
    assert clock() - begun <= 0.2 * 60


@pytest.mark.slow
def test_max_side_is_recorded_and_every_detector_uses_it(tiny_data, tmp_path):
    """--max-side is the model's: the line, evaluate and the edge graph tile at it."""
    pytest.importorskip("onnxruntime")
    from inspection.export.onnx import export_onnx
    from inspection.export.runtime import OnnxDetector
    from inspection.models.detector import TorchDetector
    from inspection.models.preprocess import plan_tiles

    result = train(_options(tiny_data, tmp_path / "scaled", steps=2, max_side=96))
    model = load_model(result.out)
    assert model.metadata["max_side"] == 96
    onnx = OnnxDetector(export_onnx(model, tmp_path / "edge.onnx", with_audio=True))
    frame = np.random.default_rng(0).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    for detector in (TorchDetector(model), onnx):
        options = detector.preprocess_options
        assert options.max_side == 96
        assert len(plan_tiles(frame.shape[:2], options).boxes) == 4  # 35 at native size
        assert detector.detect(frame).anomaly_map.shape[-2:] == (256, 320)


def test_a_resumed_run_keeps_its_max_side(tiny_data, tmp_path, monkeypatch):
    real_batch = _power_cut_at(7, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(_options(tiny_data, tmp_path / "cut", max_side=96))
    monkeypatch.setattr(train_data.BatchMaker, "batch", real_batch)
    train(_options(tiny_data, tmp_path / "cut", resume=True))  # --max-side not repeated
    assert load_model(tmp_path / "cut").metadata["max_side"] == 96


def test_max_side_under_the_tile_is_refused(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="max_side 32 is under the model's tile"):
        train(_options(tiny_data, tmp_path / "refused", max_side=32))


def test_calibration_keeps_the_floor_share_when_it_is_cheap():
    n, reserve = plan_calibration(67, 0.05, budget=1200)
    assert n == 67 and reserve == pytest.approx(CALIBRATION_RESERVE * 1200)


def test_calibration_of_large_images_reserves_its_timed_cost():
    n, reserve = plan_calibration(30, 1.0, budget=1200)  # 2 detections an image
    assert n == 30 and CALIBRATION_RESERVE * 1200 < reserve < CALIBRATION_MAX_SHARE * 1200
    assert reserve >= 30 * 2 * 1.0


def test_calibration_scores_fewer_images_rather_than_overrun():
    n, reserve = plan_calibration(90, 2.5, budget=1200)  # 1500 px images
    assert MIN_CALIBRATION_IMAGES <= n < 90
    assert n * 2 * 2.5 <= reserve <= CALIBRATION_MAX_SHARE * 1200
    n, _ = plan_calibration(90, 60.0, budget=600)  # hopeless: still a usable threshold
    assert n == MIN_CALIBRATION_IMAGES
    assert plan_calibration(4, 60.0, budget=600)[0] == 4


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 120 real steps: minutes on a loaded 2-core machine
def test_tiny_training_learns(tiny_data, tmp_path):
    from inspection.io import read_image
    from inspection.metrics import image_auroc, pixel_auroc
    from inspection.models import create_model
    from inspection.models.detector import TorchDetector
    from inspection.train.anomalies import synthesise_anomaly

    result = train(
        _options(
            tiny_data, tmp_path / "learn", steps=120, batch_size=8, lr=3e-3, checkpoint_every=1000
        )
    )
    losses = np.array([h["total"] for h in result.history])
    assert losses[-20:].mean() < 0.85 * losses[:20].mean()
    thresholds = load_model(tmp_path / "learn").metadata["thresholds"]
    assert 0 < thresholds["image"] < 1
    # Good images against the same images with synthetic defects: the trained model
    # must localise and score them well above chance, and above the untrained model.
    goods = [read_image(p) for p in sorted((tiny_data / "train" / "good").glob("*.png"))[:24]]
    rng = np.random.default_rng(5)
    # Three a good image: one draw of 24 spreads 0.66-0.80 in pixel AUROC by seed alone.
    anomalies = [synthesise_anomaly(rng, g) for g in goods for _ in range(3)]
    scores = {}
    for name, model in (
        ("trained", load_model(tmp_path / "learn")),
        ("untrained", create_model("tiny")),
    ):
        detector = TorchDetector(model)
        maps = [detector.detect(a.image).anomaly_map[0] for a in anomalies]
        image_scores = [
            float(detector.detect(im).image_score[0]) for im in goods + [a.image for a in anomalies]
        ]
        scores[name] = (
            pixel_auroc([a.mask for a in anomalies], maps),
            image_auroc([False] * len(goods) + [True] * len(anomalies), image_scores),
        )
    assert scores["trained"][0] > 0.7, scores
    assert scores["trained"][0] > scores["untrained"][0] + 0.1, scores
    assert scores["trained"][1] > 0.6, scores
