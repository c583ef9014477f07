"""``inspection daemon --config edge/station.yaml``: run a station until SIGTERM.

Exposed as :func:`daemon_command` (a typer command function; the CLI wires it in) and
runnable on its own: ``python -m inspection.station.commands --config FILE``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def run_daemon(config_path: Path) -> int:
    """Load the config, run the daemon in this process until stopped; the exit code."""
    from inspection.station.config import load_config
    from inspection.station.daemon import StationDaemon
    from inspection.station.metrics import configure_logging

    config = load_config(config_path)
    configure_logging(config.log_level, config.log_json)
    daemon = StationDaemon(config)
    daemon.install_signal_handlers()
    return daemon.run()


def daemon_command(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="Station config (YAML); INSPECTION_* overrides it."),
    ] = Path("edge/station.yaml"),
) -> None:
    """Run an inspection station: capture, decide within the cycle time, actuate, record."""
    from inspection.errors import UserError
    from inspection.terminal import fail

    try:
        code = run_daemon(config)
    except UserError as error:
        fail(str(error))
    raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    typer.run(daemon_command)
