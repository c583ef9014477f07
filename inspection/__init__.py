"""Multimodal industrial visual inspection."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("inspection")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
