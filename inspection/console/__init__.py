"""The operator console (Gradio): live line view, review queue, ask, audit, standards,
models, statistics, with logins and roles.

>>> from inspection.console import build_console, launch_console  # doctest: +SKIP
>>> launch_console(build_console())  # the simulated line on http://127.0.0.1:7860

Names load on first use: importing the package (as the command line does) loads neither
Gradio nor SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "build_console": "inspection.console.app",
    "launch_console": "inspection.console.app",
    "ConsoleService": "inspection.console.service",
    "StandardLibrary": "inspection.console.standards",
    "UserDirectory": "inspection.console.auth",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
