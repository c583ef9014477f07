"""The cloud report service (``inspection serve``): edge payloads in, reports out.

FastAPI + uvicorn. ``POST /v1/reports`` takes an
:class:`~inspection.edge.payload.EdgePayload`, re-applies the part's standard to its
measured defects, decodes the report (dynamic batching in front of the decoder),
cross-checks it with the rules and keeps the first answer per part id (SQLite). API
keys are stored hashed (``inspection serve keys add|revoke|list``).

Nothing here imports torch or FastAPI at package import: :func:`create_app` and the
command line load what they need.
"""

from __future__ import annotations

from inspection.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def create_app(*args, **kwargs):
    """See :func:`inspection.serve.app.create_app` (imported on first use)."""
    from inspection.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)
