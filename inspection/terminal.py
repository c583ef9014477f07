"""The command line's consoles and its one way to stop with an error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from inspection.errors import UserError

console = Console()
err_console = Console(stderr=True)

NoVerify = Annotated[
    bool,
    typer.Option(
        "--no-verify",
        help="Load the model without checking its files' SHA-256 (development only).",
    ),
]
"""The option of every command that loads a model (see :mod:`inspection.models.checkpoint`)."""

ReviewFrom = Annotated[
    float | None,
    typer.Option(
        help="A review band: a part that would pass with a part score of at least this "
        "(under the model's image threshold) goes to REVIEW instead. Default: none.",
    ),
]
"""The option of the commands that decide parts (:func:`~inspection.pipeline.with_review_band`)."""

GuardBandFile = Annotated[
    Path | None,
    typer.Option(
        "--guard-band",
        help="A guard band (the guard_band.json `inspection evaluate` writes): a defect whose "
        "reading lies within the measurement's uncertainty of a clause's limit goes to "
        "REVIEW instead of passing (its guard_band_proven.json: instead of rejecting too, "
        "where the reading lies beyond a limit by less); a photographed dent's depth is "
        "read from its shading where the file holds that calibration (its "
        "shading_depth.json: that alone). "
        "Default: none (readings taken as exact, a depth only from a profiler).",
    ),
]
"""The option of the commands that decide parts (:func:`~inspection.pipeline.with_guard_band`)."""

ProfilerDents = Annotated[
    bool,
    typer.Option(
        "--profiler-dents",
        help="Search each part's height map (a 3D profiler's) for dents the camera missed, "
        "on the part's face (walls bound it: its edge, holes, pockets). For faces with no "
        "designed recess as gently dished as a dent (an embossed dish is a depression "
        "too), or with such recesses masked out of its export (NaN). Default: the height "
        "map measures the dents found.",
    ),
]
"""The option of the commands that decide parts with height maps
(:func:`~inspection.pipeline.with_profiler_dents`)."""

Port = Annotated[
    int, typer.Option(min=0, max=65535, help="TCP port to listen on (0: any free one).")
]
"""The option of every command that serves: a port out of range is a usage error."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


class UserErrorsExit(TyperGroup):
    """The root command group: a :class:`~inspection.errors.UserError` raised by any
    command is printed as ``error: ...`` and exits 2; any other exception is a bug and
    keeps its traceback. The one place where commands' input errors become messages."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            fail(str(exc))
