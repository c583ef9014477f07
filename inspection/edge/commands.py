"""Command line of the edge box: ``inspection edge install|rollback|status|serve``.

Torch-free: what an edge box runs imports numpy, OpenCV, ONNX Runtime and FastAPI only,
each inside the command that needs it (``inspection --help`` stays fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from inspection.terminal import (
    GuardBandFile,
    Port,
    ProfilerDents,
    ReviewFrom,
    UserErrorsExit,
    console,
)

edge_app = typer.Typer(
    help="Run exported bundles on an edge box: install, roll back, serve.",
    no_args_is_help=True,
    cls=UserErrorsExit,  # also when run on its own: a UserError is one line, exit 2
)

Home = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Edge home folder (env INSPECTION_EDGE_HOME; default ~/.local/share/inspection/edge).",
    ),
]
PublicKey = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Ed25519 public key bundles must be signed with (default: HOME/trusted.pub).",
    ),
]
Threads = Annotated[int | None, typer.Option(help="ONNX Runtime threads (default: its own).")]


@edge_app.command("install")
def install_command(
    bundle: Annotated[Path, typer.Argument(help="The exported bundle folder.")],
    home: Home = None,
    public_key: PublicKey = None,
    threads: Threads = None,
) -> None:
    """Verify a bundle, self-test it, and make it current (the old one becomes previous)."""
    from inspection.edge.install import install_bundle

    installed = install_bundle(bundle, home=home, public_key=public_key, threads=threads)
    signed = f", signed by {installed.signed_by}" if installed.signed_by else ""
    console.print(
        f"installed and activated bundle {installed.version} (model {installed.model_version}"
        f"{signed}) in {installed.path.parent.parent}"
    )


@edge_app.command("rollback")
def rollback_command(home: Home = None, public_key: PublicKey = None) -> None:
    """Make the previous bundle current again."""
    from inspection.edge.install import rollback

    bundle = rollback(home, public_key=public_key)
    console.print(f"rolled back to bundle {bundle.version} (model {bundle.model_version})")


@edge_app.command("status")
def status_command(
    home: Home = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The current and previous bundles and what is installed."""
    from inspection.edge.install import status

    state = status(home)
    if as_json:
        typer.echo(json.dumps(state.to_json(), indent=2))
        return
    missing = "" if state.home.is_dir() else " (no such folder: nothing installed there)"
    console.print(f"home:      {state.home}{missing}", highlight=False, soft_wrap=True)
    console.print(f"current:   {state.current or '-'}")
    console.print(f"previous:  {state.previous or '-'}")
    console.print(f"installed: {', '.join(state.installed) or '-'}")
    for key, value in state.details.items():
        console.print(f"{key}: {value}")


@edge_app.command("serve")
def serve_command(
    bundle: Annotated[
        Path | None, typer.Option(help="Serve this bundle folder (default: HOME's current).")
    ] = None,
    home: Home = None,
    public_key: PublicKey = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless a token).")] = (
        "127.0.0.1"
    ),
    port: Port = 8600,
    product: Annotated[
        str | None, typer.Option(help="Default product (a request may name another).")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split point: fused or tokens (default: the bundle's).")
    ] = None,
    threads: Threads = None,
    cloud: Annotated[
        str | None, typer.Option(help="Report service URL: payloads are queued and sent.")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the cloud's API key (with --cloud).")
    ] = None,
    outbox: Annotated[Path | None, typer.Option(help="Outbox SQLite file (with --cloud).")] = None,
    api_token_file: Annotated[
        Path | None,
        typer.Option(help="Bearer token this API requires (needed off loopback)."),
    ] = None,
    review_from: ReviewFrom = None,
    guard_band: GuardBandFile = None,
    profiler_dents: ProfilerDents = False,
) -> None:
    """Serve POST /v1/inspect, /healthz and /readyz for one bundle."""
    from inspection.edge.server import check_bind, load_service, read_token, serve

    check_bind(host, read_token(api_token_file) if api_token_file else None)  # before loading
    service = load_service(
        bundle_dir=bundle,
        home=home,
        public_key=public_key,
        product=product,
        split=split,
        threads=threads,
        cloud=cloud,
        token_file=token_file,
        outbox_path=outbox,
        api_token_file=api_token_file,
        review_from=review_from,
        guard_band=guard_band,
        profiler_dents=profiler_dents,
    )
    state = "ready" if service.ready else "NOT READY (self-test failed: /v1/inspect answers 503)"
    console.print(
        f"bundle {service.runtime.bundle.version}: {state}; self-test "
        f"{service.selftest.parts} parts; serving on http://{host}:{port}"
    )
    serve(service, host=host, port=port)
