"""The one family of errors a user's input can cause.

Every error that says "the input you gave cannot be used" (a file, an option, a model
directory, a standard) is a :class:`UserError`: the command line prints its message as
one line and exits with status 2. Any other exception is a bug and keeps its traceback.
Torch-free, so the edge runtime raises the same errors.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input that cannot be used; the message names the file or option and the problem.

    A ``ValueError`` so that code which already treats bad values as ``ValueError``
    keeps working.
    """


class ModelError(UserError):
    """A model that cannot be loaded: missing or corrupt files, a file whose SHA-256
    differs from its ``manifest.json``, a config that does not parse."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (PyYAML's, for one, spans several)."""
    return " ".join(str(exc).split())
