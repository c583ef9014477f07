"""The command line's consoles and its one way to stop with an error."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)
