"""``inspection console``: serve the operator console; ``inspection console users add``.

Gradio and the models are imported inside the commands, so ``inspection --help`` stays
light.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from inspection.errors import UserError
from inspection.standards.schema import check_language
from inspection.terminal import (
    GuardBandFile,
    NoVerify,
    Port,
    ReviewFrom,
    UserErrorsExit,
    console,
)

console_app = typer.Typer(
    help="The operator console (Gradio): live line, review queue, ask, audit, standards, "
    "models, statistics.",
    cls=UserErrorsExit,
    invoke_without_command=True,
)
users_app = typer.Typer(help="Who may log in to the console.", no_args_is_help=True)
console_app.add_typer(users_app, name="users")

UsersFile = Annotated[
    Path | None,
    typer.Option(
        "--users",
        help="User list (YAML, from `inspection console users add`). Without one there is "
        "no login and the console serves 127.0.0.1 only.",
    ),
]


@console_app.callback()
def console_command(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            help="Records database the line daemon writes (SQLAlchemy URL or SQLite file). "
            "Default: a fresh database fed by the simulated line."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="Model directory (with its decoder) for questions and audits."),
    ] = None,
    port: Port = 7860,
    host: Annotated[str, typer.Option(help="Address to bind (needs --users unless loopback).")] = (
        "127.0.0.1"
    ),
    users: UsersFile = None,
    lang: Annotated[str, typer.Option(help="Labels: en or zh.")] = "en",
    session_hours: Annotated[
        float, typer.Option(help="A login lasts this long, then asks again.")
    ] = 12.0,
    whisper: Annotated[
        Path | None,
        typer.Option(
            help="Whisper for spoken questions: an openai-whisper checkpoint (.pt) or a "
            "CTranslate2 folder; default: the bundled English tiny.en (pretrained extra)."
        ),
    ] = None,
    mm_per_px: Annotated[
        float | None, typer.Option(help="Station scale for the measurements of questions/audits.")
    ] = None,
    normality: Annotated[
        Path | None,
        typer.Option(
            help="Fuse this feature normality model of the product (inspection train "
            "--normal-only) with the model for questions and audits."
        ),
    ] = None,
    review_from: ReviewFrom = None,
    guard_band: GuardBandFile = None,
    no_verify: NoVerify = False,
) -> None:
    """Serve the operator console (Ctrl-C stops it)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        from inspection.console.app import build_console, check_serving, launch_console
        from inspection.console.auth import UserDirectory
    except ImportError as error:
        raise UserError(
            f"the console needs the console extra: pip install 'inspection[console]' ({error})"
        ) from None
    check_language(lang, "--lang")
    check_serving(users is not None, host, session_hours)  # before anything is built
    directory = None if users is None else UserDirectory.load(users)
    for name, path in (("model", model), ("normality model", normality)):
        if path is not None and not path.exists():
            raise UserError(f"no {name} at {path}")
    if normality is not None and normality.is_dir():  # models load on first use: check now
        from inspection.models.checkpoint import read_checkpoint

        if not read_checkpoint(normality, verify=not no_verify).config.is_normality:
            raise UserError(
                f"{normality}: not a feature normality model (inspection train --normal-only)"
            )
    with console.status("building the console"):
        blocks = build_console(
            db,
            model,
            users=directory,
            language=lang,
            whisper=whisper,
            mm_per_px=mm_per_px,
            verify=not no_verify,
            normality=normality,
            review_from=review_from,
            guard_band=guard_band,
        )
    where = "the simulated line" if db is None else db
    login = f"{len(directory.names())} users" if directory else "no login (loopback only)"
    console.print(f"console of {where} on http://{host}:{port} ({login})")
    launch_console(blocks, host=host, port=port, session_hours=session_hours)


@users_app.command("add")
def add_user_command(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="operator or engineer.")],
    users: Annotated[Path, typer.Option("--users", help="User list to create or update.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Add a user (or set their role and password); the password is stored hashed."""
    from inspection.console.auth import add_user, check_user

    check_user(name, role)  # not after the operator has typed a password twice
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    add_user(users, name, role, password)
    console.print(f"{name} ({role}) saved in {users}")


@users_app.command("list")
def list_users_command(
    users: Annotated[Path, typer.Option("--users", help="User list to read.")],
) -> None:
    """List the users and their roles (never their password hashes)."""
    from inspection.console.auth import UserDirectory

    directory = UserDirectory.load(users)
    for name in directory.names():
        console.print(f"{name}\t{directory.get(name).role}")  # type: ignore[union-attr]
