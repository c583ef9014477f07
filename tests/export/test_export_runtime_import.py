"""The edge runtime's modules import without torch."""

from __future__ import annotations

from edge_guard import run_without_torch

TORCH_FREE = (
    "inspection.export.runtime",
    "inspection.models",
    "inspection.models.config",
    "inspection.models.registry",
    "inspection.models.outputs",
    "inspection.models.preprocess",
    "inspection.models.audio",
    "inspection.models.checkpoint",
    "inspection.models.detector",
)


def test_runtime_imports_without_torch():
    result = run_without_torch(
        f"""
        import importlib

        for name in {TORCH_FREE!r}:
            importlib.import_module(name)
        from inspection.models import get_config, list_models
        from inspection.models.audio import mel_filters

        assert "tiny" in list_models() and get_config("tiny").image_size == 64
        assert mel_filters(80).shape == (80, 201)
        assert "torch" not in sys.modules, [m for m in sys.modules if "torch" in m]
        """
    )
    assert result.returncode == 0, result.stderr
