"""The torch-free core imports and works without torch, as on an edge box.

One fresh Python that refuses to import torch imports every module of the core in turn
and names each that needs torch, with the traceback that shows its import chain.
"""

from __future__ import annotations

from edge_guard import run_without_torch

# What an edge box runs: read a frame, measure, decide by the standard, verify the model.
TORCH_FREE_CORE = (
    "inspection.types",
    "inspection.errors",
    "inspection.config",
    "inspection.io",
    "inspection.measure",
    "inspection.metrics",
    "inspection.standards",
    "inspection.pipeline",
    "inspection.models.card",
    "inspection.export.runtime",
)
# The model side the ONNX runtime stands on.
TORCH_FREE_MODELS = (
    "inspection.models",
    "inspection.models.config",
    "inspection.models.registry",
    "inspection.models.outputs",
    "inspection.models.preprocess",
    "inspection.models.audio",
    "inspection.models.checkpoint",
    "inspection.models.detector",
)


IMPORT_EACH = """
import importlib
import traceback

needs_torch = []
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if "torch is not allowed" not in str(exc):
            raise  # another import error: a bug, not torch
        needs_torch.append(name)
        traceback.print_exc()
assert not needs_torch, f"these modules need torch: {{needs_torch}}"
"""


def test_the_torch_free_core_imports_without_torch():
    result = run_without_torch(IMPORT_EACH.format(modules=TORCH_FREE_CORE + TORCH_FREE_MODELS))
    assert result.returncode == 0, result.stderr


def test_the_guard_names_a_module_that_needs_torch():
    """The check above can fail: the trainer imports torch, and is named."""
    result = run_without_torch(
        IMPORT_EACH.format(modules=("inspection.types", "inspection.train.trainer"))
    )
    assert result.returncode != 0
    assert "these modules need torch: ['inspection.train.trainer']" in result.stderr, result.stderr


def test_runtime_imports_without_torch():
    result = run_without_torch(
        """
        from inspection.models import get_config, list_models
        from inspection.models.audio import mel_filters

        assert "tiny" in list_models() and get_config("tiny").image_size == 64
        assert mel_filters(80).shape == (80, 201)
        """
    )
    assert result.returncode == 0, result.stderr


def test_a_part_is_read_measured_decided_and_its_model_verified_without_torch(
    tmp_path, bracket_standard
):
    """End to end on the torch-free path: an 8 mm scratch in zone A (clause 4.1.1 scraps
    scratches over 5 mm) read from a PNG, measured, judged by the rules and by the line's
    decision from a detection; a model bundle with one flipped byte fails its manifest."""
    assert any(c.id == "4.1.1" for c in bracket_standard.clauses)  # what the body relies on
    result = run_without_torch(
        f"""
        from pathlib import Path

        import numpy as np

        from inspection.config import get_settings
        from inspection.io import read_image, write_image
        from inspection.measure import defects_from_mask
        from inspection.models.card import verify_manifest, write_manifest
        from inspection.models.outputs import Detection
        from inspection.pipeline import Thresholds, decide
        from inspection.standards import apply_standard, load_standard
        from inspection.types import Frame, Verdict

        tmp = Path({str(tmp_path)!r})
        standard = load_standard(get_settings().standards_dir / "bracket.yaml")
        image = np.full((200, 200, 3), 200, np.uint8)
        image[100:102, 60:140] = 20  # a scratch 80 px long: 8 mm at 0.1 mm/px
        write_image(tmp / "part.png", image)
        read = read_image(tmp / "part.png")
        assert read.shape == (200, 200, 3) and read.dtype == np.uint8

        scratch = read.mean(axis=-1) < 60
        defects = defects_from_mask(scratch, "scratch", mm_per_px=0.1)
        assert len(defects) == 1 and 7.5 < defects[0].attributes["length_mm"] < 8.5
        by_rules = apply_standard(standard, defects, "p1", image_size=(200, 200))
        assert by_rules.verdict == Verdict.REJECT, by_rules

        classes = tuple(c.id for c in standard.defect_classes)
        maps = np.full((1, 1 + len(classes), 200, 200), -8.0, np.float32)
        maps[0, 0][scratch] = 8.0
        maps[0, 1 + classes.index("scratch")][scratch] = 8.0
        detection = Detection(
            maps=maps,
            image_logit=np.array([6.0], np.float32),
            class_logits=np.zeros((1, len(classes)), np.float32),
            audio_logit=None,
            part_logit=np.array([6.0], np.float32),
            patch_tokens=np.zeros((1, 1, 4), np.float32),
            audio_tokens=None,
            grid=(1, 1),
            classes=classes,
        )
        on_line = decide(detection, Frame(read, mm_per_px=0.1), standard, Thresholds())
        assert on_line.verdict == Verdict.REJECT, on_line

        bundle = tmp / "model"
        bundle.mkdir()
        (bundle / "weights.bin").write_bytes(bytes(range(256)) * 16)
        write_manifest(bundle)
        assert verify_manifest(bundle) == []
        data = bytearray((bundle / "weights.bin").read_bytes())
        data[1000] ^= 0xFF
        (bundle / "weights.bin").write_bytes(bytes(data))
        try:
            problems = verify_manifest(bundle)
        except ValueError as exc:  # a refusal (ModelError) is as good as a listed problem
            problems = [str(exc)]
        assert any("weights.bin" in p for p in problems), problems
        """
    )
    assert result.returncode == 0, result.stderr
