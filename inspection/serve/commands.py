"""``inspection serve``: run the report service; ``inspection serve keys add|revoke|list``."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from inspection.errors import UserError
from inspection.terminal import NoVerify, Port, console, err_console

serve_app = typer.Typer(
    help="The cloud report service: edge payloads in, cross-checked reports out.",
    invoke_without_command=True,
)
keys_app = typer.Typer(help="API keys of the report service (stored hashed).", no_args_is_help=True)
serve_app.add_typer(keys_app, name="keys")

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="The service's SQLite file (reports and keys); default runs/serve/service.db.",
    ),
]


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@serve_app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Port = 8080,
    decoder: Annotated[
        Path | None, typer.Option(help="Report decoder folder; default models/default/decoder.")
    ] = None,
    adapter: Annotated[
        str | None,
        typer.Option(help="LoRA adapter to use ('none': the base); default the active one."),
    ] = None,
    standards: Annotated[
        list[Path] | None,
        typer.Option("--standards", help="Folder or file of standards (repeatable)."),
    ] = None,
    db: DbOption = None,
    max_batch: Annotated[int, typer.Option(help="Most parts decoded together.")] = 16,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits to fill after its first part.")
    ] = 20.0,
    max_queue: Annotated[int, typer.Option(help="Parts waiting at most (then 503).")] = 512,
    max_payload_bytes: Annotated[int, typer.Option(help="Largest request body (then 413).")] = 16
    * 1024
    * 1024,
    device: Annotated[str, typer.Option(help="Torch device of the decoder.")] = "cpu",
    timeout_s: Annotated[
        float, typer.Option(help="A request waits this long for its report (then 503).")
    ] = 600.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    no_verify: NoVerify = False,
) -> None:
    """Run the report service (FastAPI + uvicorn) until interrupted.

    A host other than loopback needs at least one API key (inspection serve keys add
    NAME). On loopback with no key at all the service runs open, for development.
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from inspection.serve.app import create_app
    from inspection.serve.auth import KeyStore
    from inspection.serve.settings import ServeSettings

    settings = ServeSettings(
        **{k: v for k, v in {"decoder_dir": decoder, "db_path": db}.items() if v is not None},
        **({"standards_dirs": tuple(standards)} if standards else {}),
        adapter=adapter,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_payload_bytes=max_payload_bytes,
        device=device,
        decode_timeout_s=timeout_s,
        verify=not no_verify,
        open_without_keys=is_loopback(host),
    )
    keys = KeyStore(settings.keys_path)
    n_keys = sum(not k.revoked for k in keys.list())
    keys.close()
    if n_keys == 0 and not is_loopback(host):
        raise UserError(
            f"refusing to listen on {host} without an API key: add one with "
            f"`inspection serve keys add NAME --db {settings.keys_path}`"
        )
    if n_keys == 0:
        err_console.print(
            f"warning: no API key in {settings.keys_path}: serving {host} without "
            "authentication until one is added",
            highlight=False,
        )
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def _keys(db: Path | None, *, create: bool = False):
    """The key store at ``db``; only ``keys add`` (``create``) may start a new file: listing or
    revoking at a mistyped path must not invent an empty store and report no keys."""
    from inspection.serve.auth import KeyStore
    from inspection.serve.settings import default_db_path

    path = db or default_db_path()
    if not create and not Path(path).is_file():
        raise UserError(
            f"no API key database at {path} (`inspection serve keys add NAME` creates one)"
        )
    return KeyStore(path)


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    db: DbOption = None,
) -> None:
    """Create an API key and print its token (shown this once; only its hash is kept)."""
    keys = _keys(db, create=True)
    token = keys.add(name)
    err_console.print(
        f"key {name!r} added to {keys.path}; its token, shown only now:", highlight=False
    )
    print(token)  # plain stdout, so that `TOKEN=$(inspection serve keys add edge-1)` works


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key to revoke.")], db: DbOption = None
) -> None:
    """Revoke an API key: its token gets 403 from then on."""
    keys = _keys(db)
    keys.revoke(name)
    console.print(f"key {name!r} revoked", highlight=False)


@keys_app.command("list")
def keys_list(db: DbOption = None) -> None:
    """The keys: names and dates (never tokens)."""
    keys = _keys(db).list()
    table = Table("name", "created", "revoked")
    for key in keys:
        table.add_row(key.name, key.created_at, key.revoked_at or "")
    console.print(table)
