"""The edge runtime's modules import without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
    code = textwrap.dedent(
        f"""
        import importlib, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("torch is not allowed on the edge")

        sys.meta_path.insert(0, NoTorch())
        for name in {TORCH_FREE!r}:
            importlib.import_module(name)
        from inspection.models import get_config, list_models
        from inspection.models.audio import mel_filters

        assert "tiny" in list_models() and get_config("tiny").image_size == 64
        assert mel_filters(80).shape == (80, 201)
        assert "torch" not in sys.modules, [m for m in sys.modules if "torch" in m]
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
