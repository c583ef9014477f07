"""The ``inspection`` command line.

Commands import what they need when they run, so ``inspection --help`` stays fast and
the edge runtime's commands never pull in torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from inspection.audit.commands import audit_command
from inspection.console.commands import console_app
from inspection.datasets.commands import export_reviews_command
from inspection.decoder.commands import adapters_app, ask_command, decoder_app
from inspection.edge.commands import edge_app
from inspection.records.commands import records_app
from inspection.serve.commands import serve_app
from inspection.station.commands import daemon_command
from inspection.terminal import (
    GuardBandFile,
    NoVerify,
    ProfilerDents,
    ReviewFrom,
    UserErrorsExit,
    console,
    err_console,
    fail,
)

app = typer.Typer(
    name="inspection",
    cls=UserErrorsExit,
    help="Multimodal industrial visual inspection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
standards_app = typer.Typer(
    help="Validate, render and apply defect standards.", no_args_is_help=True
)
datasets_app = typer.Typer(help="Load and check datasets.", no_args_is_help=True)
app.add_typer(standards_app, name="standards")
app.add_typer(datasets_app, name="datasets")
datasets_app.command("export-reviews")(export_reviews_command)
app.add_typer(console_app, name="console")

keys_app = typer.Typer(help="Keys that sign edge bundles.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(edge_app, name="edge")
app.add_typer(serve_app, name="serve")
app.add_typer(records_app, name="records")
app.command("daemon")(daemon_command)

app.add_typer(decoder_app, name="decoder")
app.add_typer(adapters_app, name="adapters")
app.command("ask")(ask_command)
app.command("audit")(audit_command)


@app.command()
def transcribe(
    audio: Annotated[Path, typer.Argument(help="A recording (WAV, FLAC, OGG).")],
    whisper: Annotated[
        Path | None,
        typer.Option(help="openai-whisper checkpoint (.pt) or CTranslate2 Whisper folder; "
                     "default: the bundled English tiny.en (pretrained extra)."),
    ] = None,
) -> None:  # fmt: skip
    """Transcribe a spoken note or question, offline."""
    from inspection.io import read_audio
    from inspection.transcribe import Transcriber

    clip = read_audio(audio)
    transcript = Transcriber(whisper).transcribe(clip.samples)
    if transcript.text:
        console.print(transcript.text, highlight=False, markup=False)
    else:
        err_console.print("no speech heard in the recording", highlight=False)
    err_console.print(f"{transcript.model}: {transcript.seconds:.1f} s", highlight=False)


@app.command()
def version() -> None:
    """Print the package version."""
    from importlib.metadata import version as pkg_version

    console.print(pkg_version("inspection"))


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder (MVTec AD layout + manifest.jsonl).")],
    n: Annotated[int, typer.Option(help="Number of parts.")] = 1000,
    seed: Annotated[
        int, typer.Option(help="Random seed; the output is deterministic per seed.")
    ] = 0,
    product: Annotated[str, typer.Option(help="Product: bracket, panel or tile.")] = "bracket",
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    train_ratio: Annotated[float, typer.Option(help="Share of parts in train/good.")] = 0.5,
    defect_ratio: Annotated[float, typer.Option(help="Share of defective test parts.")] = 0.7,
    train_defect_ratio: Annotated[
        float, typer.Option(help="Share of defective (labelled) train parts; 0: good only.")
    ] = 0.0,
    height: Annotated[
        bool,
        typer.Option(
            help="Also write each part's height map (float32 TIFF in mm, as a 3D profiler "
            "registered to the camera sees the face), on which dents are measured."
        ),
    ] = False,
    defect_class: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="A defect class to draw (repeatable; default: all of them), e.g. dent alone "
            "for limit samples of known depth to calibrate a station on (inspection evaluate).",
        ),
    ] = None,
) -> None:
    """Synthesise a production line run: part images, defect masks and tap-test audio."""
    from inspection.synth import synthesize

    try:
        summary = synthesize(
            out,
            n=n,
            seed=seed,
            product=product,
            size=size,
            workers=workers,
            train_ratio=train_ratio,
            defect_ratio=defect_ratio,
            train_defect_ratio=train_defect_ratio,
            height=height,
            **({} if defect_class is None else {"classes": defect_class}),
        )
    except ValueError as exc:
        fail(str(exc))
    table = Table(
        title=f"{summary.n} parts of {product} in {summary.seconds:.1f} s "
        f"({summary.parts_per_second:.0f} parts/s) -> {out}"
    )
    table.add_column("split")
    table.add_column("label")
    table.add_column("parts", justify="right")
    for split, labels in summary.counts.items():
        for label, count in labels.items():
            table.add_row(split, label, str(count))
    console.print(table)


@standards_app.command("validate")
def standards_validate(
    files: Annotated[list[Path], typer.Argument(help="Standard YAML files.")],
) -> None:
    """Validate standards; every problem is printed with its file, line and field.

    Exits 1 when there is one; a file that is not there is a mistyped command (exit 2)."""
    from inspection.standards import StandardError, load_standard

    for path in files:
        if not path.exists():
            fail(f"{path}: no such file")
    failed = False
    for path in files:
        try:
            standard = load_standard(path)
        except StandardError as exc:
            failed = True
            for problem in exc.problems:
                err_console.print(f"[red]✗[/red] {problem}", highlight=False)
            continue
        console.print(
            f"[green]✓[/green] {path}: {standard.id} rev {standard.revision} "
            f"version {standard.version} ({len(standard.clauses)} clauses)",
            highlight=False,
        )
    if failed:
        raise typer.Exit(1)


@standards_app.command("render")
def standards_render(
    file: Annotated[Path, typer.Argument(help="Standard YAML file or product name.")],
    lang: Annotated[str, typer.Option(help="Language: en or zh.")] = "en",
) -> None:
    """Print a standard as the prompt text the report decoder reads."""
    from inspection.standards import render_standard

    typer.echo(render_standard(_load_standard(file), lang))


@standards_app.command("apply")
def standards_apply(
    file: Annotated[Path, typer.Argument(help="Standard YAML file or product name.")],
    manifest: Annotated[
        Path | None, typer.Option(help="Dataset manifest.jsonl (or its folder): judge its parts.")
    ] = None,
    defects: Annotated[
        Path | None,
        typer.Option(help="JSON file: a list of defects {defect_class, attributes, zone}."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 30,
) -> None:
    """Apply a standard to measured defects: severity, action and the clause cited.

    A defect the standard cannot decide (a NaN, infinite or negative measurement, a zone
    the standard does not declare, an unknown zone whose zones disagree) is REVIEW, with
    its reason printed under the table.
    """
    from inspection.standards import apply_standard, read_defects

    standard = _load_standard(file)
    if (manifest is None) == (defects is None):
        fail("give exactly one of --manifest or --defects")
    if defects is not None:
        parts = [("defects", read_defects(defects), None, None)]
    else:
        parts = list(_manifest_parts(manifest))
    results = [
        (label, apply_standard(standard, found, part_id=part_id, image_size=size))
        for part_id, found, label, size in parts
    ]
    _print_results(results, limit, title=f"{standard.id} rev {standard.revision}")
    if defects is not None:  # one part: say why, defect by defect
        (_, result), *_ = results
        for i, decision in enumerate(result.decisions[:limit], 1):
            console.print(
                f"{i}. {decision.action}: {decision.reason}", markup=False, soft_wrap=True
            )
    if json_out:
        json_out.write_text(json.dumps([r.to_json() for _, r in results], indent=1))


def _manifest_parts(path: Path):
    """(part_id, ground-truth defects, label, image size) for each part of a manifest."""
    from inspection.datasets import load_manifest
    from inspection.standards.defects import manifest_defects

    if path.is_dir():
        path = path / "manifest.jsonl"
    for sample in load_manifest(path).samples:
        where = f"{path}: part {sample.part_id}"
        found = manifest_defects(sample.attributes.get("defects", []), where)
        size = sample.attributes.get("image_size")
        yield sample.part_id, found, sample.label, tuple(size) if size else None


def _print_results(results, limit: int, title: str) -> None:
    from collections import Counter

    table = Table(title=title)
    for col in ("part", "label", "verdict", "action", "severity", "clauses"):
        table.add_column(col)
    colours = {"PASS": "green", "REJECT": "red", "REVIEW": "yellow"}
    for label, r in results[:limit]:
        table.add_row(
            r.part_id,
            label or "",
            f"[{colours[r.verdict]}]{r.verdict}[/]",
            r.action,
            r.severity or "",
            ", ".join(r.clauses),
        )
    console.print(table)
    counts = Counter(r.verdict.value for _, r in results)
    console.print("  ".join(f"{v}: {counts.get(v, 0)}" for v in ("PASS", "REVIEW", "REJECT")))


@datasets_app.command("check")
def datasets_check(
    path: Annotated[
        Path, typer.Argument(help="Dataset folder (MVTec, folder-per-class) or .jsonl")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
) -> None:
    """Decode every file and report problems; exits 1 when any file is broken.

    A dataset that is not there is a mistyped command (exit 2)."""
    from inspection.datasets import DatasetError, check_dataset, print_check_report

    if not path.exists():
        fail(f"{path}: no such file or folder")
    try:
        report = check_dataset(path)
    except DatasetError as exc:
        fail(str(exc))
    print_check_report(report, console)
    if json_out:
        json_out.write_text(json.dumps(report.to_json(), indent=1))
    if not report.ok:
        raise typer.Exit(1)


@datasets_app.command("merge")
def datasets_merge(
    sources: Annotated[list[Path], typer.Argument(help="Datasets to merge (any layout).")],
    out: Annotated[Path, typer.Option(help="Folder for the merged manifest.jsonl.")],
) -> None:
    """List several datasets in one manifest, to train one model on several products.

    The files stay where they are."""
    from inspection.datasets import DatasetError, load_dataset, merge_datasets

    try:
        manifest = merge_datasets(sources, out)
        merged = load_dataset(manifest)
    except DatasetError as exc:
        fail(str(exc))
    console.print(
        f"wrote {manifest}: {len(merged.samples)} samples of {len(sources)} datasets; "
        f"products: {', '.join(merged.products) or 'not stated'}"
    )


@app.command("train")
def train_command(
    data: Annotated[
        Path, typer.Option(help="Dataset: MVTec folder, folder-per-class or manifest.")
    ],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    config: Annotated[
        str | None,
        typer.Option(
            help="Model config: tiny, small, base or a YAML (default: small, or the "
            "--init / --resume model's own)."
        ),
    ] = None,
    normal_only: Annotated[bool, typer.Option(help="Use good images only.")] = False,
    method: Annotated[
        str,
        typer.Option(
            help="heads (train the detection heads), padim or patchcore (fit a feature "
            "normality model on a pretrained backbone, in minutes). auto: padim with "
            "--normal-only and no --config/--init/--resume, else heads."
        ),
    ] = "auto",
    backbone: Annotated[
        str | None,
        typer.Option(help="Pretrained backbone of padim/patchcore (default efficientnet-lite0)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop, calibrate and save by then.")
    ] = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps planned.")] = 3000,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed; runs are deterministic per seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT.")] = False,
    init: Annotated[
        Path | None,
        typer.Option(help="Fine-tune from this model's weights (its own config)."),
    ] = None,
    from_scratch: Annotated[
        bool,
        typer.Option(
            help="Start from random weights (default: from the shipped default model "
            "when it has this config's architecture)."
        ),
    ] = False,
    max_side: Annotated[
        int | None,
        typer.Option(
            help="Scale frames down so their longest side is at most this many px before "
            "tiling (default: tile at native resolution). Bounds the tiles of a large "
            "frame; recorded in the model, so the line, evaluate and the edge use it too."
        ),
    ] = None,
    silhouette: Annotated[
        bool,
        typer.Option(
            help="padim/patchcore: learn from the good frames whether they show the part on "
            "a background, and if so judge only the regions that reach into the part "
            "(--no-silhouette: judge the whole frame)."
        ),
    ] = True,
    colour_patches: Annotated[
        bool,
        typer.Option(
            help="padim/patchcore: learn from the good frames how far off the surface around "
            "it a box of their faces reads, and search each frame for the faint colour "
            "patches past that which the map missed (--no-colour-patches: no search)."
        ),
    ] = True,
) -> None:
    """Train a detection model, from good images alone with --normal-only."""
    import time

    begun = time.monotonic()  # --max-minutes counts the imports below too
    from inspection.datasets import DatasetError
    from inspection.train.trainer import TrainError, TrainOptions, train

    try:
        options = TrainOptions(
            data=data,
            out=out,
            config=config,
            normal_only=normal_only,
            device=device,
            max_minutes=max_minutes,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            resume=resume,
            init=init,
            from_scratch=from_scratch,
            max_side=max_side,
            method=method,
            backbone=backbone,
            silhouette=silhouette,
            colour_patches=colour_patches,
        )
        result = train(options, begun=begun)
    except (TrainError, DatasetError) as exc:
        fail(str(exc))
    if result.steps == 0:  # a normality model: fitted, not trained
        console.print(
            f"fitted on {result.images_per_second * result.seconds:.0f} good images in "
            f"{result.seconds / 60:.1f} min"
            + (" [extraction stopped at the deadline]" if result.stopped_by_deadline else "")
        )
        console.print(_silhouette_line(result.silhouette, silhouette))
        console.print(_grain_line(result.grain))
        console.print(_patches_line(result.colour_patches, colour_patches))
    else:
        console.print(
            f"{result.steps} steps in {result.seconds / 60:.1f} min "
            f"({result.images_per_second:.1f} img/s), "
            f"loss {result.final_loss:.3f} (mean of the last 50 steps)"
            + (" [stopped at the deadline]" if result.stopped_by_deadline else "")
        )
        start = result.started_from or "random weights (--from-scratch, or no shipped model fits)"
        console.print(f"started from {start}")
    console.print(f"thresholds {result.thresholds}; held-out AUROC {result.holdout_auroc}")
    console.print(f"model written to {result.out}")


def _silhouette_line(rule: dict | None, asked: bool) -> str:
    """What the fit learned of the part's silhouette, in one line."""
    if not asked:
        return "part silhouette: not learned (--no-silhouette): the whole frame is judged"
    if rule is None:
        return (
            "part silhouette: none (the good frames do not show one part on a background): "
            "the whole frame is judged"
        )
    return (
        f"part silhouette: learned from {rule['good_parts']} good frames (the part covers "
        f"{rule['min_area']:.0%}-{rule['max_area']:.0%} of a frame); a region only the "
        "normality model finds that reaches nowhere into the part is the background's"
    )


def _grain_line(rule: dict | None) -> str:
    """What the fit learned of the parts' grain, in one line."""
    if rule is None:
        return "grain: not searched (the good frames' faces have no grain, or show lines in it)"
    return (
        f"grain: searched for scratches along it ({rule['with_lines']} of "
        f"{rule['good_parts']} good frames show a line in it)"
    )


def _patches_line(rule: dict | None, asked: bool) -> str:
    """What the fit learned of the good faces' colour, in one line."""
    from inspection.patches import PatchRule

    if not asked:
        return "colour patches: not searched (--no-colour-patches)"
    if rule is None:
        return "colour patches: not searched (too few good frames show a face to read)"
    return (
        f"colour patches: searched from ΔE {PatchRule.from_dict(rule).level:.2f} off the "
        f"surface around them (the most a box of {rule['good_parts']} good faces read was "
        f"{rule['good_max']:.2f})"
    )


DISAGREEMENTS_SHOWN = 5  # kinds of disagreement `inspection evaluate` prints


@app.command("evaluate")
def evaluate_command(
    model: Annotated[
        Path, typer.Option(help="Model directory (or edge bundle folder, or .onnx edge graph).")
    ],
    data: Annotated[Path, typer.Option(help="Dataset to evaluate on.")],
    out: Annotated[Path, typer.Option(help="Output folder: metrics.json, scores.csv, plots.")],
    split: Annotated[
        str, typer.Option(help="Split to evaluate ('all' for every sample).")
    ] = "test",
    decoder: Annotated[
        Path | None,
        typer.Option(help="Report decoder to score too (default: MODEL/decoder if present)."),
    ] = None,
    standard: Annotated[
        Path | None,
        typer.Option(
            help="Decide verdicts (and score reports) under this standard "
            "(default: the product's in dataset.yaml)."
        ),
    ] = None,
    reports: Annotated[bool, typer.Option(help="Score the decoder's reports.")] = True,
    normality: Annotated[
        Path | None,
        typer.Option(
            help="Fuse this feature normality model of the product (inspection train "
            "--normal-only) with MODEL: a region only it finds goes to REVIEW."
        ),
    ] = None,
    review_from: ReviewFrom = None,
    guard_band: GuardBandFile = None,
    profiler_dents: ProfilerDents = False,
    no_verify: NoVerify = False,
) -> None:
    """Evaluate a model: metrics.json, scores.csv, plots, index.html and guard_band.json.

    The guard band (the gauge's uncertainty per class and attribute) is written where the
    data gives the defects' true sizes; where it gives photographed dents' depths, how the
    station's light shades them too, and shading_depth.json (that and its band alone)."""
    from inspection.evaluate import evaluate
    from inspection.models.backbones import provenance_words
    from inspection.pipeline import line_thresholds, load_detector

    detector, metadata = load_detector(model, verify=not no_verify, normality=normality)
    thresholds = line_thresholds(
        metadata, review_from=review_from, guard_band=guard_band, profiler_dents=profiler_dents
    )
    if decoder is None and (model / "decoder").is_dir():
        decoder = model / "decoder"
    report_decoder = None
    if reports and decoder is not None:
        from inspection.decoder.lora import load_decoder

        report_decoder = load_decoder(decoder, verify=not no_verify)
    metrics = evaluate(
        detector,
        thresholds,
        data,
        out,
        split=None if split == "all" else split,
        decoder=report_decoder,
        standard=_load_standard(standard) if standard is not None else None,
    )
    if profiler_dents and not metrics["height_maps"]:
        err_console.print(
            f"warning: --profiler-dents: no part of {data} has a height map (a manifest's "
            "`height`): nothing was searched",
            highlight=False,
            soft_wrap=True,
        )
    table = Table(title=f"{model} on {data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "image_auroc",
        "pixel_auroc",
        "pixel_aupro",
        "false_reject_rate_at_miss_1pct",
        "size_error_mm_median",
    ):
        value = metrics[key]
        table.add_row(key, "null" if value is None else f"{value:.4f}")
    bias = metrics["width_bias_mm_median_by_class"]  # measured - true: + over-reads
    if bias:
        table.add_row("width bias mm, median", "  ".join(f"{c} {v:+.3f}" for c, v in bias.items()))
    table.add_row("latency p50 ms", f"{metrics['latency_ms']['p50'] or 0:.1f}")
    if weights := provenance_words(metrics["pretrained_weights"], brief=True):
        table.add_row("starts from", weights)
    if metrics["verdicts"] is not None:  # the line's verdicts, from pipeline.decide
        table.add_row("verdicts", "  ".join(f"{k} {v}" for k, v in metrics["verdicts"].items()))
        for key in ("verdict_false_reject_rate", "verdict_miss_rate", "verdict_agreement"):
            value = metrics[key]
            table.add_row(key, "null" if value is None else f"{value:.4f}")
        recall = metrics["verdict_reject_recall_by_class"]
        if recall:  # of the parts the standard rejects, the share the line stops
            stopped = (f"{c} {v['recall']:.3f} ({v['parts']})" for c, v in recall.items())
            table.add_row("reject recall by class (parts)", "  ".join(stopped))
        if metrics["verdict_at_limits"]:  # the disagreements no line with this gauge decides
            from inspection.evaluate import at_limits_words

            words = at_limits_words(metrics["verdict_at_limits"])
            table.add_row("verdict agreement clear of the gauge's limits", words)
        if metrics["verdict_dispositions"]:  # rework where the standard scraps, or vice versa
            from inspection.evaluate import disposition_words

            words = disposition_words(metrics["verdict_dispositions"])
            table.add_row("disposition of the parts both reject", words)
    console.print(table)
    if metrics["verdict_note"]:
        console.print(metrics["verdict_note"])
    if metrics["verdict_disagreements"]:  # the most common first; index.html has them all
        from inspection.evaluate import DISAGREEMENT_HEADER, DISAGREEMENT_TITLE, disagreement_rows

        differ = Table(title=DISAGREEMENT_TITLE)
        for header in DISAGREEMENT_HEADER:
            differ.add_column(header)
        for row in disagreement_rows(metrics["verdict_disagreements"][:DISAGREEMENTS_SHOWN]):
            differ.add_row(*row)
        console.print(differ)
    if metrics["review_band"]:
        from inspection.evaluate import REVIEW_BAND_COLUMNS, REVIEW_BAND_HEADER

        band = Table(title="what a review band (--review-from) would change")
        for header in REVIEW_BAND_HEADER:
            band.add_column(header, justify="right")
        for row in metrics["review_band"]:
            band.add_row(*(str(row[k]) for k in REVIEW_BAND_COLUMNS))
        console.print(band)
    if metrics["guard_band"]:
        _print_guard_band(metrics, out)
    _print_band_effects(metrics)
    if metrics.get("proven_rejection_by_class"):
        _print_proven_by_class(metrics)
    if report_decoder is not None:
        from inspection.decoder.commands import print_report_metrics

        print_report_metrics(metrics, f"reports under {metrics['report_standard']['id']}")
    console.print(f"report: {out / 'index.html'}")


MOVED_PRINTED = 8  # the parts a guard band would decide otherwise, named on the console


def _print_guard_band(metrics: dict, out: Path) -> None:
    """The gauge's measured uncertainty per class, and the dents' depth from shading."""
    from inspection.evaluate import PROVEN_REJECTION
    from inspection.standards.guard import shading_depth_of, written_band_words

    margins = metrics["guard_band"]["margins"]
    written = out / "guard_band.json"
    console.print(
        f"guard band (each side holds 97.5 % of the readings' errors, 95 % in all: + the "
        f"truth above the reading, − under it), written to {written}:"
    )
    for defect_class, per in margins.items():
        bands = (f"{a} {written_band_words(u)}" for a, u in per.items())
        console.print(f"  {defect_class}: " + ", ".join(bands))
    console.print(
        f"  proving rejection too (a reading beyond a limit by less than its band is REVIEW, "
        f"not REJECT): --guard-band {out / PROVEN_REJECTION}"
    )
    shading = metrics["guard_band"].get("shading_depth")
    if shading:  # the band's depth_mm of a dent is then this reading's
        console.print(
            f"  dent depth from shading (photographs): light from {shading['azimuth_deg']:.0f}°, "
            f"{shading['gain']:.3g} darkening·mm per mm of depth, fitted on {shading['pairs']} "
            f"dents: read with --guard-band, or alone (the depth's band, no other) with "
            f"--guard-band {out / 'shading_depth.json'}"
        )
        if (read := shading_depth_of(shading)) is not None and read.steep_words:
            console.print(f"  {read.steep_words}")


def _print_band_effects(metrics: dict) -> None:
    """What each guard band changed, or would change, on the set, and the first parts."""
    from inspection.evaluate import band_effects, tradeoff_words

    for what, change in band_effects(metrics):
        console.print(f"{what} on this set: {tradeoff_words(change)}")
        moved = [f"{m['part']} {m['from']} -> {m['to']}" for m in change["moved"][:MOVED_PRINTED]]
        if moved:
            more = len(change["moved"]) - len(moved)
            console.print("  " + ", ".join(moved) + (f" and {more} more" if more > 0 else ""))


def _print_proven_by_class(metrics: dict) -> None:
    """What proving rejection of each class alone would change, as a table."""
    from rich.markup import escape

    from inspection.evaluate import PROVEN_HEADER, PROVEN_REJECTION, proven_by_class_rows

    table = Table(
        title=escape(
            f'proving rejection class by class ("prove_rejection": [classes] in '
            f"{PROVEN_REJECTION}); with guard_band.json alone, agreement "
            f"{metrics['guard_band_tradeoff']['agreement']:.4f}"
        )
    )
    for header in PROVEN_HEADER:
        table.add_column(header, justify="right")
    for row in proven_by_class_rows(metrics):
        table.add_row(*row)
    console.print(table)


@app.command("calibrate")
def calibrate_command(
    model: Annotated[Path, typer.Option(help="Trained model directory.")],
    good: Annotated[
        Path, typer.Option(help="Dataset whose good images (not ones MODEL trained on) set them.")
    ],
    out: Annotated[
        Path, typer.Option(help="New model directory: the same weights, new thresholds.")
    ],
    target_frr: Annotated[
        float, typer.Option(help="Share of good parts the image threshold may flag.")
    ] = 0.01,
) -> None:
    """Set a model's thresholds again on good parts of the line, as many as it has.

    A run sets them on the few good images it held out; the image threshold, near the top
    of them, moves with them. The weights are kept; OUT is a new model version."""
    from inspection.train.trainer import recalibrate

    # A model, a dataset or a folder it cannot use is one line (UserError), never a trace.
    before, after = recalibrate(model, good, out, target_frr)
    console.print(
        f"image threshold {before.get('image', float('nan')):.4g} -> {after['image']:.4g}, "
        f"pixel {before.get('pixel', float('nan')):.4g} -> {after['pixel']:.4g}, set on "
        f"{after['held_out_good']} good parts; model written to {out}",
        highlight=False,
    )


@app.command("second-look")
def second_look_command(
    model: Annotated[
        Path, typer.Option(help="The heads model (directory, edge bundle folder or .onnx).")
    ],
    normality: Annotated[
        Path,
        typer.Option(help="The product's normality model directory: the level is kept there."),
    ],
    good: Annotated[
        Path,
        typer.Option(help="Dataset whose good images (not ones MODEL trained on) set the level."),
    ],
    target_frr: Annotated[
        float, typer.Option(help="Share of good parts whose map may reach the level.")
    ] = 0.01,
    no_verify: NoVerify = False,
) -> None:
    """Set the level of the heads' second look at parts the score passes, per product.

    A part its score passes still has the heads' regions above this level measured and
    judged (every fused command uses it)."""
    from rich.progress import track

    from inspection.datasets.loaders import GOOD, load_dataset
    from inspection.io import read_image
    from inspection.models.fusion import FusedDetector, save_second_look, second_look_level
    from inspection.pipeline import load_detector

    if not 0 < target_frr < 1:
        fail(f"--target-frr {target_frr:g}: a share between 0 and 1 is needed")
    heads, _ = load_detector(model, verify=not no_verify)
    FusedDetector(heads, load_detector(normality, verify=not no_verify)[0])  # the right pair
    images = [s.image for s in load_dataset(good).samples if s.label == GOOD]
    if not images:
        fail(f"{good}: no good images to set the level from")
    read = (read_image(path) for path in images)
    level = second_look_level(
        heads, track(read, total=len(images), description="good parts"), target_frr
    )
    path = save_second_look(normality, heads.version, level, len(images))
    console.print(
        f"second look at logit {level:.2f} over the heads' pixel threshold, set on "
        f"{len(images)} good parts; kept in {path}"
    )


@app.command("package")
def package_command(
    model: Annotated[Path, typer.Option(help="Trained model directory.")],
    eval_dir: Annotated[
        Path | None, typer.Option("--eval", help="Its `inspection evaluate` output.")
    ] = None,
    command: Annotated[str | None, typer.Option(help="The command that made the model.")] = None,
    manifest_only: Annotated[
        bool,
        typer.Option(
            help="Only record the files as they are now (manifest.json), before they are "
            "measured: a model whose files were just replaced loads again, to be evaluated "
            "and then packaged with its card."
        ),
    ] = False,
    description: Annotated[str, typer.Option(help="One paragraph for the model card.")] = (
        "Defect detection model for the simulated bracket line."
    ),
    decoder_eval: Annotated[
        list[Path] | None,
        typer.Option(help="`inspection decoder evaluate` outputs to add (repeatable)."),
    ] = None,
    product_eval: Annotated[
        list[Path] | None,
        typer.Option(
            help="`inspection evaluate` outputs, one per product, alone and/or fused with "
            "its normality model (--normality) (repeatable)."
        ),
    ] = None,
) -> None:
    """Write the model card (with measured metrics) and the SHA-256 manifest."""
    from inspection.models.card import (
        decoder_section,
        products_section,
        write_manifest,
        write_model_card,
        write_product_evaluation,
    )

    if not model.is_dir():
        fail(f"{model}: no such model folder")
    if manifest_only:
        console.print(f"wrote {write_manifest(model)} (the card is written once measured)")
        return
    if eval_dir is None or command is None:
        fail("give --eval and --command to write the card (or --manifest-only)")

    def read(folder: Path) -> dict:
        try:
            metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # nothing is written before every one reads
            fail(f"{folder}: no readable metrics.json (an evaluation output folder?): {exc}")
        if not isinstance(metrics, dict):
            fail(f"{folder / 'metrics.json'}: expected a JSON object of metrics")
        return metrics

    metrics = read(eval_dir)
    per_product = [read(d) for d in product_eval or []]
    evals = []
    if "report_valid_json_rate" in metrics:
        evals.append((f"the evaluated data ({metrics['report_standard']['id']})", metrics))
    evals += [(", ".join(m.get("standards", [])), m) for m in map(read, decoder_eval or [])]
    extra = {}
    if per_product:
        extra["Per product"] = products_section(per_product)
        write_product_evaluation(model, per_product)
    if evals:
        extra["Report decoder"] = decoder_section(evals)
    card = write_model_card(model, metrics, command, description, extra)
    manifest = write_manifest(model)
    console.print(f"wrote {card} and {manifest}")


EXPORT_FORMATS = ("onnx", "bundle", "triton")


@app.command("export")
def export_command(
    out: Annotated[
        Path,
        typer.Option(
            help="Output: the .onnx file (--format onnx), the bundle folder (bundle) or the "
            "model repository folder (triton)."
        ),
    ],
    model: Annotated[
        Path | None, typer.Option(help="Model directory (default: the shipped one).")
    ] = None,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx: the edge graph; bundle: everything an edge box needs (graphs, "
            "standards, thresholds, self-test, signed manifest); triton: a Triton model "
            "repository of the report decoder.",
        ),
    ] = "onnx",
    audio: Annotated[
        bool, typer.Option(help="Include the audio encoder (tap tests) in the graph.")
    ] = True,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the exporter's).")] = None,
    check: Annotated[
        bool,
        typer.Option(help="Compare the graph's outputs with the torch model's before writing."),
    ] = True,
    standard: Annotated[
        list[str] | None,
        typer.Option(
            help="Bundle: a standard FILE or PRODUCT to ship (repeatable; default: the shipped "
            "standards of the model's products)."
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="Bundle: default split point, fused or tokens.")
    ] = "fused",
    sign_key: Annotated[
        Path | None,
        typer.Option(help="Bundle: Ed25519 private key to sign the manifest with."),
    ] = None,
    holdout: Annotated[
        Path | None,
        typer.Option(
            help="Bundle: folder of held-out part images the torch and ONNX verdicts must "
            "agree on (default: a few synthetic parts of each product, seed 7)."
        ),
    ] = None,
    decoder: Annotated[
        Path | None,
        typer.Option(help="Report decoder (bundle: its fusion; triton). Default MODEL/decoder."),
    ] = None,
    int8: Annotated[
        bool, typer.Option("--int8", help="Static INT8 edge graph (needs --calibration-data).")
    ] = False,
    calibration_data: Annotated[
        Path | None,
        typer.Option(help="INT8: a dataset of real good and defective parts to calibrate on."),
    ] = None,
    normality: Annotated[
        Path | None,
        typer.Option(
            help="Bundle: a feature normality model of the product (inspection train "
            "--normal-only) shipped beside the edge graph and fused with it on the box."
        ),
    ] = None,
    no_verify: NoVerify = False,
) -> None:
    """Export a model for deployment: the edge graph, an edge bundle or a Triton repository.

    --format onnx writes one ONNX file for the torch-free edge runtime. The file carries
    the config, thresholds and version: `inspection evaluate --model FILE.onnx` runs it,
    and so does `inspection.export.OnnxDetector` on an edge box without torch. With
    --check (the default) OUT is written only when ONNX Runtime gives the torch model's
    outputs on random inputs. Its SHA-256 goes to OUT.sha256 (`sha256sum` format),
    which the edge runtime checks before it runs the graph: ship both files.

    --format bundle writes the folder `inspection edge install` takes: edge and fusion
    graphs, standards, thresholds, a self-test and manifest.json (SHA-256 of every
    file), signed with --sign-key. It is written only when torch and ONNX Runtime give
    the same verdicts on held-out parts; an existing OUT survives a failed export.
    """
    if format_ not in EXPORT_FORMATS:
        fail(f"unknown --format {format_!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if split not in ("fused", "tokens"):
        fail(f"unknown --split {split!r}; use fused or tokens")
    if int8 and calibration_data is None:
        fail("--int8 needs --calibration-data DIR (real good and defective parts)")
    if calibration_data is not None and not int8:
        fail("--calibration-data is for --int8")
    if calibration_data is not None:  # refused before minutes of export, not after
        from inspection.export.quantize import calibration_samples

        calibration_samples(calibration_data)
    bundle_only = {
        "--standard": bool(standard),
        "--split": split != "fused",
        "--sign-key": sign_key is not None,
        "--holdout": holdout is not None,
        "--normality": normality is not None,
    }
    given = [name for name, used in bundle_only.items() if used]
    if format_ != "bundle" and given:
        fail(f"{', '.join(given)}: only with --format bundle")
    if format_ == "onnx":
        if decoder is not None:
            fail("--decoder: only with --format bundle or triton")
        _export_onnx_file(out, model, audio, opset, check, int8, calibration_data, no_verify)
    elif format_ == "bundle":
        if not check:
            fail("--no-check: a bundle is always checked")
        _export_bundle(
            out,
            model,
            standard,
            split,
            sign_key,
            holdout,
            decoder,
            audio,
            int8,
            calibration_data,
            no_verify,
            normality,
        )
    else:
        if int8:
            fail("--int8: only with --format onnx or bundle")
        _export_triton(out, model, decoder)


def _export_onnx_file(
    out: Path,
    model: Path | None,
    audio: bool,
    opset: int | None,
    check: bool,
    int8: bool,
    calibration_data: Path | None,
    no_verify: bool,
) -> None:
    from inspection.config import default_model_dir
    from inspection.export.onnx import check_parity, export_onnx
    from inspection.export.runtime import hash_file, record_hash, recorded_hash
    from inspection.models import load_model
    from inspection.pipeline import thresholds_of

    if out.suffix != ".onnx":
        fail(f"{out}: the output must be a .onnx file")
    model_dir = model or default_model_dir()
    detector_model = load_model(model_dir, verify=not no_verify)
    hears = audio and not detector_model.config.is_normality  # normality: no audio branch
    # Export beside OUT and move into place only once checked: a device never picks up
    # a half-written or unchecked graph, and an existing OUT survives a failed export.
    staging = out.with_name(f".{out.name}.partial")
    fp32 = out.with_name(f".{out.name}.fp32.partial")
    try:
        with console.status(f"exporting {model_dir} (about a minute for the small model)"):
            export_onnx(detector_model, staging, with_audio=hears, opset=opset)
            parity = check_parity(detector_model, staging) if check else None
        if parity is not None and not parity.ok:
            worst = max(parity.max_abs_diff, key=parity.max_abs_diff.get)
            fail(
                f"exported graph differs from the model: |{worst}| off by {parity.worst:.2e} "
                f"(tolerance {parity.tolerance:.0e}); {out} not written"
            )
        if int8:
            from inspection.export.quantize import quantize_int8

            staging.replace(fp32)
            hash_file(staging).replace(hash_file(fp32))
            with console.status(f"quantising to INT8 on {calibration_data}"):
                quantize_int8(fp32, staging, calibration_data)
        # The record first, then the graph: in between, a reader refuses the old graph;
        # it never runs a graph that differs from the record.
        digest = record_hash(out, recorded_hash(staging))
        staging.replace(out)
    finally:
        for path in (staging, fp32):
            path.unlink(missing_ok=True)
            hash_file(path).unlink(missing_ok=True)
    table = Table(title=f"{model_dir} -> {out}")
    table.add_column("")
    table.add_column("value")
    table.add_row("model version", detector_model.model_version or "unsaved")
    table.add_row("inputs", "image, mel" if hears else "image")
    table.add_row("precision", "int8" if int8 else "fp32")
    table.add_row("size", f"{out.stat().st_size / 1e6:.1f} MB")
    thresholds = thresholds_of(detector_model.metadata)  # as the line will apply them
    table.add_row(
        "thresholds",
        f"image {thresholds.image:.4g}, pixel {thresholds.pixel:.4g}, "
        f"audio {thresholds.audio:.4g} ({thresholds.version})",
    )
    if parity is not None:
        label = "parity of the FP32 graph" if int8 else "parity"
        worst = f"{parity.worst:.1e} on {parity.batch} inputs"
        table.add_row(f"{label} (max |onnx - torch|)", worst)
    console.print(table)
    console.print(f"{digest}  {out} (in {hash_file(out)})", highlight=False, soft_wrap=True)


def _export_bundle(
    out: Path,
    model: Path | None,
    standards: list[str] | None,
    split: str,
    sign_key: Path | None,
    holdout: Path | None,
    decoder: Path | None,
    audio: bool,
    int8: bool,
    calibration_data: Path | None,
    no_verify: bool,
    normality: Path | None = None,
) -> None:
    from inspection.config import default_model_dir
    from inspection.export.bundle import export_bundle

    model_dir = model or default_model_dir()
    with console.status(f"exporting {model_dir} as a bundle") as status:
        result = export_bundle(
            model_dir,
            out,
            decoder_dir=decoder,
            standards=standards,
            split=split,
            sign_key=sign_key,
            holdout=holdout,
            int8=int8,
            calibration_data=calibration_data,
            verify=not no_verify,
            with_audio=audio,
            normality_dir=normality,
            log=status.update,
        )
    manifest = result.manifest
    table = Table(title=f"{model_dir} -> {out} ({result.seconds:.0f} s)")
    table.add_column("")
    table.add_column("value")
    table.add_row("model version", manifest["model_version"])
    table.add_row("standards", ", ".join(f"{p}: {s}" for p, s in manifest["products"].items()))
    table.add_row("split", f"{manifest['split']} (payload bytes {manifest['payload_bytes']})")
    table.add_row("precision", manifest["precision"])
    table.add_row("edge graph parity", f"{result.parity.worst:.1e} on {result.parity.batch} inputs")
    if result.fusion_parity is not None:
        table.add_row("fusion graph parity", f"{result.fusion_parity.max_abs_diff:.1e}")
    if (normality := manifest["checks"].get("normality_graph")) is not None:
        worst = max(normality["max_abs_diff"].values())
        table.add_row("normality graph parity", f"{worst:.1e} on {normality['inputs']} inputs")
    held = result.holdout.summary()
    quantised = manifest["checks"].get("int8_holdout")
    table.add_row(
        "held-out parts" + (" (float32)" if quantised else ""),
        f"{held['verdicts_identical']}/{held['parts']} verdicts identical, scores within "
        f"{held['max_score_diff']:.1e}",
    )
    if quantised:  # what the bundle ships and its self-test expects
        table.add_row(
            "held-out parts (INT8, shipped)",
            f"{quantised['verdicts_identical']}/{quantised['parts']} verdicts identical to "
            f"float32 torch, scores within {quantised['max_score_diff']:.2g}",
        )
    table.add_row("files", str(len(manifest["files"])))
    table.add_row("signed by", result.signed_by or "unsigned")
    console.print(table)


def _export_triton(out: Path, model: Path | None, decoder: Path | None) -> None:
    from inspection.config import default_model_dir

    decoder_dir = decoder or (model or default_model_dir()) / "decoder"
    if not decoder_dir.is_dir():
        fail(f"{decoder_dir}: no report decoder folder (give --decoder DIR)")
    from inspection.export.triton import write_triton_repository

    written = write_triton_repository(decoder_dir, out)
    console.print(f"Triton model repository written: {written}")


@keys_app.command("new")
def keys_new(
    out: Annotated[Path, typer.Option(help="Folder for edge.key (private, 0600) and edge.pub.")],
) -> None:
    """Make an Ed25519 key pair to sign bundles with (`inspection export --sign-key`).

    Edge boxes hold edge.pub and refuse bundles it does not verify."""
    from inspection.edge.keys import new_keypair

    private, public = out / "edge.key", out / "edge.pub"
    fingerprint = new_keypair(private, public)
    console.print(f"private key {private} (keep it secret), public key {public}")
    console.print(f"fingerprint {fingerprint}", highlight=False)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Output folder for the run and its HTML report.")
    ] = Path("runs/demo"),
    product: Annotated[str, typer.Option(help="Product: bracket, panel or tile.")] = "bracket",
    n: Annotated[int, typer.Option(help="Parts through the simulated line.")] = 48,
    seed: Annotated[int, typer.Option(help="Line seed.")] = 2026,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model directory (default: the shipped one); 'none' measures ground-truth "
            "masks instead."
        ),
    ] = None,
    language: Annotated[str, typer.Option(help="Language of the reports: en or zh.")] = "en",
    normality: Annotated[
        str,
        typer.Option(
            help="Normality model fused with the model: 'auto' fits the product's on "
            "synthesised good parts once (about a minute, kept in OUT/../normality), "
            "'none' runs the model alone, or a model directory."
        ),
    ] = "auto",
    review_from: ReviewFrom = None,
    guard_band: GuardBandFile = None,
    profiler: Annotated[
        bool,
        typer.Option(
            help="The simulated station also has a 3D profiler: dents are measured "
            "on each part's height map (else a depth clause goes to REVIEW)."
        ),
    ] = False,
    profiler_dents: ProfilerDents = False,
    calibrate_depth: Annotated[
        bool,
        typer.Option(
            help="Where the standard limits a dent's depth and no profiler reads it, read it "
            "from the dent's shading, calibrated once on synthesised limit samples (dents of "
            "known depth) through the fused model, as a plant calibrates a gauge; "
            "--no-calibrate-depth leaves that clause at REVIEW. Only with --normality auto "
            "and no --guard-band."
        ),
    ] = True,
    no_verify: NoVerify = False,
) -> None:
    """Run a simulated line through the model, the product's standard and the decoder.

    The report decoder runs when the model has one."""
    from inspection.config import default_model_dir
    from inspection.demo import run_demo

    model_dir = None if model == "none" else Path(model) if model else default_model_dir()
    if model_dir is not None and not (model_dir / "model.safetensors").exists():
        fail(f"no model in {model_dir}: train one with `make model`, or pass --model none")
    if model_dir is None and review_from is not None:
        fail("--review-from needs a model: the ground-truth masks have no part score")
    if profiler_dents and not profiler:
        fail("--profiler-dents needs --profiler (a station with a 3D profiler)")
    run_demo(
        out=out,
        product=product,
        n=n,
        seed=seed,
        console=console,
        model_dir=model_dir,
        language=language,
        verify=not no_verify,
        normality=None if normality == "none" else normality,
        review_from=review_from,
        guard_band=guard_band,
        profiler=profiler,
        profiler_dents=profiler_dents,
        calibrate_depth=calibrate_depth,
    )


def _load_standard(file: Path):
    from inspection.config import standard_path
    from inspection.standards import StandardError, load_standard

    try:
        return load_standard(standard_path(file))
    except StandardError as exc:
        fail(str(exc))


if __name__ == "__main__":
    app()
