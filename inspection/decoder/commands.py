"""Command line of the report decoder: ``inspection decoder``, ``adapters`` and ``ask``.

Registered on the main app by :mod:`inspection.cli`; torch is imported only when a
command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from inspection.config import default_model_dir
from inspection.errors import UserError
from inspection.metrics import REPORT_METRICS
from inspection.terminal import NoVerify, console, fail

decoder_app = typer.Typer(help="Train and evaluate the report decoder.", no_args_is_help=True)
adapters_app = typer.Typer(
    help="LoRA adapters of a decoder: one per product or standard.", no_args_is_help=True
)

DecoderDir = Annotated[Path, typer.Option("--decoder", help="Decoder directory.")]
ShippedDecoderDir = Annotated[
    Path | None,
    typer.Option("--decoder", help="Decoder directory (default: the shipped model's)."),
]
StandardFiles = Annotated[
    list[Path] | None,
    typer.Option("--standard", help="Standard file or product name (repeatable)."),
]


@decoder_app.command("train")
def decoder_train(
    out: Annotated[Path, typer.Option(help="Decoder directory to write.")],
    config: Annotated[str, typer.Option(help="Decoder config: tiny, small, base.")] = "small",
    init: Annotated[Path | None, typer.Option(help="Fine-tune this decoder instead.")] = None,
    standard: StandardFiles = None,
    generated_fraction: Annotated[
        float, typer.Option(help="Share of parts under freshly generated standards.")
    ] = 0.7,
    question_fraction: Annotated[float, typer.Option(help="Share of questions.")] = 0.15,
    unmeasured_fraction: Annotated[
        float, typer.Option(help="Share of parts drawn with a clause needing an unmeasured value.")
    ] = 0.0,
    steps: Annotated[int, typer.Option(help="Optimisation steps planned.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Parts per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    max_minutes: Annotated[float | None, typer.Option(help="Stop and save by then.")] = None,
    seed: Annotated[int, typer.Option(help="Seed; runs are deterministic per seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT.")] = False,
) -> None:
    """Train the decoder (fusion, projector, LM) on generated standards and parts."""
    from inspection.decoder.train import DecoderTrainOptions, train_decoder

    result = train_decoder(
        DecoderTrainOptions(
            out=out,
            config=config,
            init=init,
            standards=tuple(_standard_paths(standard)),
            generated_fraction=generated_fraction,
            question_fraction=question_fraction,
            unmeasured_fraction=unmeasured_fraction,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            max_minutes=max_minutes,
            seed=seed,
            device=device,
            resume=resume,
        )
    )
    _print_training(result)


@decoder_app.command("evaluate")
def decoder_evaluate(
    decoder: DecoderDir,
    out: Annotated[Path, typer.Option(help="Folder for metrics.json.")],
    n: Annotated[int, typer.Option(min=1, help="Held-out parts.")] = 1000,
    seed: Annotated[
        int, typer.Option(help="Seed of the held-out parts (not a training one).")
    ] = 1_000_003,
    standard: StandardFiles = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Parts decoded together.")] = 16,
    adapter: Annotated[
        str | None, typer.Option(help="Adapter to use ('none': the base alone).")
    ] = None,
) -> None:
    """Score reports on held-out parts, under freshly generated standards or given ones.

    Each part's targets are written by the rule engine."""
    metrics = _evaluate(decoder, n, seed, standard, batch_size, adapter)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print_report_metrics(metrics, f"decoder {decoder}")
    console.print(f"wrote {out / 'metrics.json'}")


def _evaluate(
    decoder_dir: Path,
    n: int,
    seed: int,
    standard: list[Path] | None,
    batch_size: int,
    adapter: str | None = None,
) -> dict:
    from inspection.decoder.evaluate import held_out_requests, score_reports
    from inspection.decoder.lora import adapters, base_only, load_decoder, use_adapter
    from inspection.standards import load_standard

    model = load_decoder(decoder_dir)
    if adapter == "none":
        base_only(model)
    elif adapter is not None:
        if adapter not in adapters(model):
            saved = ", ".join(adapters(model)) or "none"
            raise UserError(f"--adapter: no adapter {adapter!r} in {decoder_dir} (saved: {saved})")
        use_adapter(model, adapter)
    standards = [load_standard(p) for p in _standard_paths(standard)]
    requests = held_out_requests(model, n, seed, standards, 0.0 if standards else 1.0)
    metrics = score_reports(model, requests, batch_size=batch_size)
    names = [s.id for s in standards] or ["generated (unseen)"]
    return {"standards": names, "seed": seed, **metrics}


def print_report_metrics(metrics: dict, title: str) -> None:
    """The decoder's figures as a table."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (*REPORT_METRICS, "decoder_tokens_per_second"):
        value = metrics.get(key)
        table.add_row(key, "null" if value is None else f"{value:.4f}")
    for field, value in (metrics.get("report_field_accuracy_by_field") or {}).items():
        table.add_row(f"  {field}", "null" if value is None else f"{value:.4f}")
    table.add_row("parts", str(metrics.get("report_parts")))
    console.print(table)


@decoder_app.command("ship")
def decoder_ship(
    decoder: DecoderDir,
    to: Annotated[Path, typer.Option(help="Where to write it (e.g. models/default/decoder).")],
) -> None:
    """Copy a trained decoder for shipping: float16 weights, configs, tokenizer, adapters.

    No optimiser state or training log is copied."""
    import shutil

    import torch

    from inspection.decoder.lora import ADAPTERS_DIR
    from inspection.decoder.model import ReportDecoder

    model = ReportDecoder.load(decoder)
    if to.exists():
        shutil.rmtree(to)
    model.save(to, dtype=torch.float16)
    if (decoder / ADAPTERS_DIR).is_dir():
        shutil.copytree(
            decoder / ADAPTERS_DIR,
            to / ADAPTERS_DIR,
            ignore=shutil.ignore_patterns("train_state.pt", "train_log.jsonl"),
        )
    size = sum(p.stat().st_size for p in to.rglob("*") if p.is_file())
    console.print(f"shipped {decoder} to {to} ({size / 1e6:.1f} MB)")


def shipped_decoder_dir() -> Path:
    """The shipped default's decoder, ``<models_dir>/default/decoder`` (read when a
    command runs, so ``INSPECTION_MODELS_DIR`` and the working directory don't matter)."""
    return default_model_dir() / "decoder"


@adapters_app.command("list")
def adapters_list(decoder: ShippedDecoderDir = None) -> None:
    """The adapters saved with a decoder; * marks the active one."""
    from inspection.decoder.lora import saved_adapters
    from inspection.decoder.model import check_decoder_dir

    decoder = decoder or shipped_decoder_dir()
    check_decoder_dir(decoder)
    table = Table(title=f"adapters of {decoder}")
    for column in ("", "name", "standard", "version", "steps", "field accuracy"):
        table.add_column(column)
    for a in saved_adapters(decoder):
        accuracy = a.info.get("metrics", {}).get("report_field_accuracy")
        table.add_row(
            "*" if a.active else "",
            a.name,
            str(a.info.get("standard_id", "?")),
            str(a.info.get("standard_version", "?")),
            str(a.info.get("steps", "?")),
            "?" if accuracy is None else f"{accuracy:.4f}",
        )
    console.print(table)


@adapters_app.command("train")
def adapters_train(
    name: Annotated[str, typer.Option(help="Adapter name (e.g. the product line).")],
    standard: Annotated[Path, typer.Option(help="The new standard (file or product).")],
    decoder: ShippedDecoderDir = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Parts per step.")] = 16,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    max_minutes: Annotated[float | None, typer.Option(help="Stop and save by then.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue the run.")] = False,
    activate: Annotated[bool, typer.Option(help="Make it the active adapter.")] = False,
    eval_parts: Annotated[int, typer.Option(min=1, help="Held-out parts to score it on.")] = 200,
) -> None:
    """Fine-tune a LoRA adapter of the decoder to a new standard (the base is frozen)."""
    from inspection.decoder.lora import INFO_FILE, LoraOptions, adapter_dir, set_active_adapter
    from inspection.decoder.train import DecoderTrainOptions, train_decoder
    from inspection.standards import load_standard

    decoder = decoder or shipped_decoder_dir()
    path = _standard_paths([standard])[0]
    target = adapter_dir(decoder, name)
    result = train_decoder(
        DecoderTrainOptions(
            out=target,
            init=decoder,
            standards=(path,),
            generated_fraction=0.0,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            max_minutes=max_minutes,
            seed=seed,
            device=device,
            adapter=name,
            lora=LoraOptions(rank=rank, alpha=2 * rank),
            resume=resume,
        )
    )
    _print_training(result)
    metrics = _evaluate(decoder, eval_parts, seed + 1_000_003, [path], batch_size, name)
    parsed = load_standard(path)
    info = {
        "standard_id": parsed.id,
        "standard_version": parsed.version,
        "standard_file": str(path),
        "steps": result.steps,
        "trainable_parameters": result.trainable_parameters,
        "metrics": metrics,
    }
    (target / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print_report_metrics(metrics, f"adapter {name} on {parsed.id}")
    if activate:
        set_active_adapter(decoder, name)
        console.print(f"{name} is now the active adapter")


@adapters_app.command("activate")
def adapters_activate(
    name: Annotated[str, typer.Argument(help="Adapter name, or 'none' for the base alone.")],
    decoder: ShippedDecoderDir = None,
) -> None:
    """Choose the adapter that loaded decoders use."""
    from inspection.decoder.lora import set_active_adapter
    from inspection.decoder.model import check_decoder_dir

    decoder = decoder or shipped_decoder_dir()
    check_decoder_dir(decoder)
    try:
        set_active_adapter(decoder, None if name == "none" else name)
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]))
    console.print(f"active adapter of {decoder}: {name}")


def ask_command(
    question: Annotated[str, typer.Argument(help="The question, in English or Chinese.")],
    image: Annotated[Path, typer.Option(help="The part's image.")],
    audio: Annotated[Path | None, typer.Option(help="Its tap-test recording (WAV).")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Detection model directory (default: the shipped one).")
    ] = None,
    decoder: Annotated[
        Path | None, typer.Option(help="Decoder directory (default: MODEL/decoder).")
    ] = None,
    standard: Annotated[Path, typer.Option(help="Standard file or product.")] = Path("bracket"),
    mm_per_px: Annotated[
        float | None, typer.Option(help="Station scale; without it sizes go to review.")
    ] = None,
    no_verify: NoVerify = False,
) -> None:
    """Answer a question about one part from its tokens, measurements and the standard.

    The rule engine's verdict is printed beside the answer and stands: an answer that
    contradicts it says so.
    """
    from rich.markup import escape

    from inspection.decoder.lora import load_decoder
    from inspection.decoder.reporting import ask_part
    from inspection.decoder.schema import check_question
    from inspection.io import read_audio, read_image
    from inspection.models import load_model
    from inspection.models.detector import TorchDetector
    from inspection.pipeline import Inspector, thresholds_of
    from inspection.standards import load_standard
    from inspection.types import Frame, Observation

    # The user's input first, before the models load: each refusal is a UserError.
    check_question(question)
    parsed = load_standard(_standard_paths([standard])[0])
    frame = Frame(image=read_image(image), camera="cli", mm_per_px=mm_per_px)
    clip = read_audio(audio) if audio is not None else None
    model = model or default_model_dir()
    with console.status(
        f"loading {model} and inspecting {image.name} ({frame.width}x{frame.height})"
    ):
        detection_model = load_model(model, verify=not no_verify)
        report_decoder = load_decoder(decoder or model / "decoder", verify=not no_verify)
        inspector = Inspector(
            TorchDetector(detection_model), parsed, thresholds_of(detection_model.metadata)
        )
        observation = Observation(image.stem, "cli", (frame,), audio=clip)
        result, answer = ask_part(inspector, report_decoder, observation, question)
    shown = escape(answer.text or answer.error or "")  # the decoder's words are not markup
    console.print(f"[bold]{shown}[/bold]" if answer.text else f"[red]{shown}[/red]", soft_wrap=True)
    console.print(
        f"rule engine: {result.verdict.value} ({len(result.decisions)} defect(s)); "
        f"answered in {answer.seconds * 1000:.0f} ms",
        highlight=False,
    )
    if not answer.agreed:
        console.print(
            "[yellow]the decoder's answer disagreed with the rules, whose verdict stands: "
            f"{escape('; '.join(answer.disagreements))}[/yellow]",
            highlight=False,
            soft_wrap=True,
        )


def _standard_paths(values: list[Path] | None) -> list[Path]:
    from inspection.config import standard_path

    paths = [standard_path(v) for v in values or []]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        fail(f"no standard file {', '.join(missing)}")
    return paths


def _print_training(result) -> None:
    console.print(
        f"{result.steps} steps in {result.seconds / 60:.1f} min "
        f"({result.examples_per_second:.1f} parts/s, {result.tokens_per_second:.0f} tok/s), "
        f"loss {result.final_loss:.4f}, {result.trainable_parameters:,} trainable parameters"
        + (" [stopped at the deadline]" if result.stopped_by_deadline else "")
    )
    console.print(f"written to {result.out}")
