"""Packaging a trained model for shipping: a manifest of file hashes and a model card.

Torch-free and light (hashlib and json; the card's metrics are imported when a card is
written): every model load checks its files with :func:`check_files`, and an edge box
verifies a bundle with :func:`verify_manifest` before loading it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspection.errors import ModelError
from inspection.models.backbones import provenance_words
from inspection.silhouette import SilhouetteRule

MANIFEST = "manifest.json"
CARD = "MODEL_CARD.md"
PRODUCT_EVALUATION = "evaluation.json"
"""Per-product held-out figures a packaged model ships with (what the demo warns from)."""
NOT_SHIPPED = frozenset({MANIFEST, "train_state.pt", "train_log.jsonl"})
# Said by every refusal of a model whose files differ from their record.
NO_VERIFY_HINT = (
    "if the change is intended, package the model again (`inspection package` writes "
    f"{MANIFEST}) or load it with --no-verify (verify=False)"
)


def sha256(path: str | Path) -> str:
    """The file's SHA-256, in hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(model_dir: str | Path) -> Path:
    """``manifest.json``: SHA-256 and size of every file the model ships with (sub-folders
    such as ``decoder/`` included, by relative path)."""
    model_dir = Path(model_dir)
    files = {
        p.relative_to(model_dir).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size}
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name not in NOT_SHIPPED
    }
    path = model_dir / MANIFEST
    path.write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")
    return path


def verify_manifest(model_dir: str | Path) -> list[str]:
    """Problems with a shipped model: each file of its manifest that is missing or whose
    SHA-256 differs (corrupt or modified), by its path in the model directory.

    Raises
    ------
    ModelError
        No ``manifest.json`` in ``model_dir``, or one that does not parse.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    if manifest is None:
        raise ModelError(
            f"{model_dir / MANIFEST}: no such file (write it with `inspection package`)"
        )
    return file_problems(model_dir, manifest, MANIFEST)


def read_manifest(model_dir: str | Path) -> dict[str, str] | None:
    """``{path in the model directory: SHA-256}`` from its ``manifest.json``; ``None``
    where it has none.

    Raises
    ------
    ModelError
        A manifest that is not the JSON :func:`write_manifest` writes.
    """
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        return {str(name): str(entry["sha256"]) for name, entry in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not ours
        raise ModelError(f"{path}: not a readable model manifest ({exc!r})") from exc


def covering_manifest(directory: str | Path) -> tuple[Path, dict[str, str]] | None:
    """The manifest that covers ``directory``: its own, or its parent's for a folder
    shipped inside a model (``MODEL/decoder``).

    Returns
    -------
    tuple[Path, dict[str, str]] | None
        The manifest file and ``{path relative to directory: SHA-256}`` of the files it
        lists under ``directory``; ``None`` where neither folder has a manifest.
    """
    directory = Path(directory)
    absolute = directory.resolve()
    for root in (absolute, absolute.parent):
        manifest = read_manifest(root)
        if manifest is None:
            continue
        prefix = "" if root == absolute else absolute.relative_to(root).as_posix() + "/"
        inside = {n[len(prefix) :]: h for n, h in manifest.items() if n.startswith(prefix)}
        return root / MANIFEST, inside
    return None


def file_problems(
    directory: str | Path,
    expected: Mapping[str, str | None],
    source: str,
    known: Mapping[str, str] | None = None,
) -> list[str]:
    """What is wrong with the files of ``directory`` against their recorded SHA-256.

    Parameters
    ----------
    directory : str | Path
        The folder the names are relative to.
    expected : Mapping[str, str | None]
        ``{relative path: SHA-256}``; ``None`` where nothing is recorded for a file that
        needs a record.
    source : str
        Where the hashes come from, for the messages (``manifest.json``, ``config.json``).
    known : Mapping[str, str] | None
        SHA-256 already computed for some of the files (a file is not hashed twice).

    Returns
    -------
    list[str]
        ``"<name>: <problem>"``, one per file that is missing, unrecorded or differs.
    """
    return [f"{name}: {problem}" for name, problem in _problems(directory, expected, source, known)]


def check_files(
    directory: str | Path,
    expected: Mapping[str, str | None],
    source: str,
    known: Mapping[str, str] | None = None,
    hint: str = NO_VERIFY_HINT,
) -> None:
    """:func:`file_problems`, as a refusal; ``hint`` says what to do about it.

    Raises
    ------
    ModelError
        Naming every file that is missing, unrecorded or differs from its SHA-256.
    """
    directory = Path(directory)
    problems = [
        f"{directory / name}: {problem}"
        for name, problem in _problems(directory, expected, source, known)
    ]
    if problems:
        raise ModelError(f"{'; '.join(problems)}; the model is not loaded: {hint}")


def _problems(
    directory: str | Path,
    expected: Mapping[str, str | None],
    source: str,
    known: Mapping[str, str] | None,
) -> list[tuple[str, str]]:
    directory, known = Path(directory), known or {}
    problems = []
    for name, digest in expected.items():
        path = directory / name
        if digest is None:
            problems.append((name, f"no SHA-256 recorded for it in {source}"))
        elif not path.is_file():
            problems.append((name, "missing"))
        elif (known.get(name) or sha256(path)) != digest:
            problems.append((name, f"SHA-256 differs from {source} (corrupt or modified)"))
    return problems


def write_model_card(
    model_dir: str | Path,
    metrics: dict[str, Any],
    command: str,
    description: str,
    extra_sections: dict[str, str] | None = None,
) -> Path:
    """``MODEL_CARD.md`` with the measured metrics and the command that made the model."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    extra = config.get("extra", {})
    lines = [
        f"# Model card: {model_dir.name}",
        "",
        description,
        "",
        f"- model version: `{config.get('model_version')}`",
        f"- architecture: `{config['config'].get('name')}` "
        f"(image size {config['config'].get('image_size')}, tower "
        f"{config['config'].get('image_tower')})",
        f"- classes: {', '.join(config['config'].get('classes', []))}",
        f"- products trained on: {', '.join(extra.get('products') or []) or 'not recorded'}",
        f"- thresholds: {_thresholds_line(extra)}",
        f"- starts from: {_weights_line(config['config'], extra)}",
        "",
        "## How it was made",
        "",
        "```bash",
        command.strip(),
        "```",
        "",
        "## Measured",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in (
        "image_auroc",
        "image_auroc_image_only",
        "pixel_auroc",
        "pixel_aupro",
        "false_reject_rate_at_miss_1pct",
        "size_error_mm_median",
    ):
        lines.append(f"| {key} | {_fmt(metrics.get(key))} |")
    lines.append(f"| latency p50 (ms, CPU) | {_fmt(metrics.get('latency_ms', {}).get('p50'))} |")
    lines += [
        "",
        "| class | accuracy | precision | recall | AUROC (fused) | AUROC (image) "
        "| length error (mm, median) | width bias (mm, median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_score = metrics.get("per_class_by_score", {})
    size_error = metrics.get("size_error_mm_median_by_class", {})
    width_bias = metrics.get("width_bias_mm_median_by_class", {})
    for cls, v in metrics.get("per_class", {}).items():
        s = by_score.get(cls, {})
        cells = [
            v.get("accuracy"),
            v.get("precision"),
            v.get("recall"),
            s.get("auroc"),
            s.get("auroc_image_only"),
            size_error.get(cls),
            width_bias.get(cls),
        ]
        lines.append(f"| {cls} | " + " | ".join(_fmt(c) for c in cells) + " |")
    for title, body in (extra_sections or {}).items():
        lines += ["", f"## {title}", "", body.strip()]
    path = model_dir / CARD
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def decoder_section(evaluations: list[tuple[str, dict[str, Any]]]) -> str:
    """A table of the report decoder's figures, one row per evaluation ``(what, metrics)``."""
    from inspection.metrics import REPORT_METRICS  # scikit-learn: only to write a card

    keys = REPORT_METRICS
    rows = [[what, m.get("report_parts"), *(m.get(k) for k in keys)] for what, m in evaluations]
    intro = (
        "Reports scored against the rule engine on the same measurements "
        "(see `inspection/decoder/evaluate.py`)."
    )
    return _table(intro, ["parts under", "n", *keys], rows)


def write_product_evaluation(model_dir: str | Path, evaluations: list[dict[str, Any]]) -> Path:
    """``evaluation.json``: each product's held-out verdict figures, keyed by product.

    The line cannot know how far to trust a model on a product from the model alone; this
    file (hashed by the manifest like every other) lets the demo and the console say so.
    An evaluation of the model fused with a normality model (``inspection evaluate
    --normality``, as the demo runs it) goes under the product's ``fused`` key, with the
    normality model's version and the heads' second-look level on it; one whose parts
    had a 3D profiler's height maps under ``profiler`` (alone) or ``fused_profiler``, with
    the number of maps and whether they were searched for dents. Where the evaluation
    measured them, the disagreements at the gauge's limits and the agreement clear of them
    (``verdict_at_limits``) go with the figures. An evaluation of
    several products at once, or of none, is left out.
    """
    products: dict[str, dict[str, Any]] = {}
    for m in evaluations:
        named = m.get("products") or []
        if len(named) != 1:
            continue
        figures = {
            "parts": m.get("n_images"),
            "image_auroc": m.get("image_auroc"),
            "verdict_agreement": m.get("verdict_agreement"),
            "verdict_wrong_pass_rate": m.get("verdict_wrong_pass_rate"),
            "verdict_false_reject_rate": m.get("verdict_false_reject_rate"),
            "verdict_reject_recall": {
                c: v.get("recall")
                for c, v in (m.get("verdict_reject_recall_by_class") or {}).items()
            },
        }
        if m.get("fusion"):
            figures["normality_version"] = _normality_version(m["fusion"])
            figures["normality_backbone"] = normality_backbone(m["fusion"])
            figures["second_look"] = _second_look(m["fusion"])
        if _height_maps(m):
            figures["height_maps"] = _height_maps(m)
            figures["profiler_dents"] = _profiler_dents(m)
        if band := _guard_band(m):
            figures["guard_band"] = band
        if at_limits := _at_limits(m):
            figures["verdict_at_limits"] = at_limits
        entry = products.setdefault(named[0], {})
        key = evaluation_key(fused=bool(m.get("fusion")), profiler=bool(_height_maps(m)))
        if key:
            entry[key] = figures
        else:
            entry.update(figures)
    path = Path(model_dir) / PRODUCT_EVALUATION
    path.write_text(json.dumps({"products": products}, indent=2) + "\n", encoding="utf-8")
    return path


def evaluation_key(*, fused: bool, profiler: bool) -> str:
    """Where a product's figures measured this way sit in its ``evaluation.json`` entry:
    ``""`` (the entry itself: the model alone, photographs only), ``fused``, ``profiler``
    or ``fused_profiler``."""
    return "_".join(name for name, on in (("fused", fused), ("profiler", profiler)) if on)


def _height_maps(metrics: Mapping[str, Any]) -> int:
    """How many of an evaluation's parts had a height map (0 where it did not record it)."""
    count = metrics.get("height_maps")
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


def _profiler_dents(metrics: Mapping[str, Any]) -> bool:
    """Whether an evaluation searched its height maps for dents (``--profiler-dents``)."""
    thresholds = metrics.get("thresholds")
    return isinstance(thresholds, dict) and thresholds.get("profiler_dents") is True


def _guard_band(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The guard band an evaluation decided with (``--guard-band``: its version and any
    shading calibration of dent depth), or ``None``."""
    given = metrics.get("guard_band_given")
    if not isinstance(given, dict):
        return None
    shading = given.get("shading_depth")
    return {
        "version": given.get("version"),
        "shading_depth": shading if isinstance(shading, dict) else None,
    }


AT_LIMITS_KEYS = ("parts", "disagreements", "of", "agreement_clear", "clear_parts")


def _at_limits(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """How many of an evaluation's disagreements lie within the gauge's uncertainty of a
    limit and the agreement on the parts clear of every limit (``verdict_at_limits``), or
    ``None`` where it was not measured (or a hand-edited record lacks a figure)."""
    at_limits = metrics.get("verdict_at_limits")
    if not isinstance(at_limits, dict) or any(k not in at_limits for k in AT_LIMITS_KEYS):
        return None
    return {k: at_limits[k] for k in AT_LIMITS_KEYS}


def _normality_version(fusion: Any) -> str | None:
    """The normality model's version in an evaluation's ``fusion`` record; ``None`` when
    a hand-edited metrics.json does not hold one (the figures are still the fused ones)."""
    return _normality_record(fusion).get("version")


def normality_backbone(fusion: Any) -> dict[str, Any] | None:
    """The pretrained weights the fused normality model starts from
    (:attr:`~inspection.models.backbones.BackboneSpec.provenance`), as its evaluation
    recorded them; ``None`` when it recorded none."""
    backbone = _normality_record(fusion).get("backbone")
    return backbone if isinstance(backbone, dict) else None


def _normality_record(fusion: Any) -> dict[str, Any]:
    normality = fusion.get("normality") if isinstance(fusion, dict) else None
    return normality if isinstance(normality, dict) else {}


def _second_look(fusion: Any) -> float | None:
    """The heads' second-look level in an evaluation's ``fusion`` record, if it had one
    (``None`` too for a hand-edited value that is not a number)."""
    level = fusion.get("second_look") if isinstance(fusion, dict) else None
    return float(level) if isinstance(level, int | float) and not isinstance(level, bool) else None


def _measured_with(metrics: Mapping[str, Any]) -> str:
    """What a product's row says it was measured with besides the model alone: a
    normality model fused with it, a 3D profiler's height maps."""
    said = [_fusion_words(metrics.get("fusion")), _profiler_words(metrics), _guard_words(metrics)]
    said = [words for words in said if words]
    return f" ({'; '.join(said)})" if said else ""


def _fusion_words(fusion: Any) -> str:
    if not fusion:
        return ""
    level = _second_look(fusion)
    look = "" if level is None else f", second look at logit {level:.2f}"
    from inspection.grain import GrainRule  # only to write a card: OpenCV, scikit-image
    from inspection.patches import PatchRule

    record = fusion if isinstance(fusion, dict) else {}
    outline = (
        ", the part's silhouette" if SilhouetteRule.from_dict(record.get("silhouette")) else ""
    )
    grain = ", lines along the grain searched" if GrainRule.from_dict(record.get("grain")) else ""
    patches = PatchRule.from_dict(record.get("colour_patches"))
    tint = "" if patches is None else f", colour patches from ΔE {patches.level:.2f} searched"
    return f"fused with its normality model{look}{outline}{grain}{tint}"


def _guard_words(metrics: Mapping[str, Any]) -> str:
    band = _guard_band(metrics)
    if band is None:
        return ""
    from inspection.standards.guard import shading_depth_of  # numpy: only for a band

    shading = shading_depth_of(band["shading_depth"])
    if shading is not None:
        return f"dent depth read from shading, {shading.calibration_words}"
    version = band["version"]  # "guard band 0de3de85", as the line records it
    return version if isinstance(version, str) and version else "a guard band"


def _profiler_words(metrics: Mapping[str, Any]) -> str:
    if not _height_maps(metrics):
        return ""
    searched = ", searched for dents" if _profiler_dents(metrics) else ""
    return f"with a 3D profiler: {_height_maps(metrics)} height maps{searched}"


def _table(intro: str, header: list[str], rows: list[list[Any]]) -> str:
    """A paragraph, then a markdown table of ``rows`` (cells through :func:`_fmt`)."""
    lines = [intro, "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


PRODUCT_CLASSES = ("scratch", "dent", "color_deviation")
"""The classes whose recall the per-product table shows (the ones the standards measure):
of the parts the standard rejects, the share the line stops (``inspection evaluate``'s
``verdict_reject_recall_by_class``)."""


def products_section(evaluations: list[dict[str, Any]]) -> str:
    """A table of held-out evaluations, one row per product (``inspection evaluate``
    metrics, each labelled by the ``products`` it recorded).

    Columns: what the line would do (verdict agreement with the standard on the exact
    attributes, parts the standard rejects that were passed, false rejects) and what the
    detector finds (image AUROC, the recall of :data:`PRODUCT_CLASSES` among the parts the
    standard rejects, the scratch length error and width bias: measured - true, positive
    when the gauge over-reads).
    """
    header = ["product", "parts", "image AUROC", "verdict agreement", "wrong PASS rate"]
    header += ["false rejects", *(f"{c} reject recall" for c in PRODUCT_CLASSES)]
    header += ["scratch length error (mm)", "scratch width bias (mm)"]
    rows = []
    for m in evaluations:
        recall = m.get("verdict_reject_recall_by_class") or {}
        rows.append(
            [
                (", ".join(m.get("products") or []) or "not recorded") + _measured_with(m),
                m.get("n_images"),
                m.get("image_auroc"),
                m.get("verdict_agreement"),
                m.get("verdict_wrong_pass_rate"),
                m.get("verdict_false_reject_rate"),
                *(recall.get(c, {}).get("recall") for c in PRODUCT_CLASSES),
                m.get("size_error_mm_median_by_class", {}).get("scratch"),
                m.get("width_bias_mm_median_by_class", {}).get("scratch"),
            ]
        )
    intro = (
        "Each product's evaluated parts (as the commands above made and evaluated them: for "
        "`make model`, held-out parts of seed 7), decided under that product's standard as "
        "the line decides them."
    )
    intro += _pretrained_words(evaluations)
    if any(_height_maps(m) for m in evaluations):
        intro += (
            " Rows with a 3D profiler: the same parts with their height maps (`inspection "
            "synth --height`: the photographs are the same), evaluated with them."
        )
    return _table(intro, header, rows)


def _pretrained_words(evaluations: list[dict[str, Any]]) -> str:
    """Which pretrained weights the fused rows' normality models start from, each said
    once, with their licence, source and SHA-256; nothing where none recorded any."""
    said = [provenance_words(normality_backbone(m.get("fusion"))) for m in evaluations]
    weights = list(dict.fromkeys(words for words in said if words))
    if not weights:
        return ""
    return f" The fused rows' normality models start from {' and '.join(weights)}."


def _weights_line(config: dict[str, Any], extra: dict[str, Any]) -> str:
    """Which weights the model starts from, with their licence and source."""
    if weights := provenance_words(extra.get("backbone")):
        frozen = ", the backbone frozen" if config.get("freeze_backbone") else ""
        return f"{config.get('method')} on {weights}{frozen}"
    if extra.get("init"):  # the version names it; the path was the training machine's
        folder = Path(str(extra["init"])).name
        return f"the model version `{extra.get('init_version')}` (folder `{folder}` when trained)"
    return "random weights (trained from scratch)"


def _thresholds_line(metadata: dict[str, Any]) -> str:
    """The thresholds as the line uses them (through :func:`pipeline.thresholds_of`), and
    what calibration recorded where the line lifts a value to its floor."""
    from inspection.pipeline import thresholds_of

    recorded = metadata.get("thresholds") or {}
    used = thresholds_of(metadata)
    parts = []
    for name in ("image", "pixel", "audio"):
        value = getattr(used, name)
        part = f"{name} {value:.4g}"
        if name in recorded and float(recorded[name]) < value:
            part += f" (recorded {float(recorded[name]):.2g}, lifted to its floor)"
        parts.append(part)
    source = (
        f"{recorded['held_out_good']} held-out good parts"
        if "held_out_good" in recorded
        else used.version
    )
    if "image_good" in recorded:  # PaDiM: every good part it fitted, scored leave-one-out
        source += f" (the image threshold on {recorded['image_good']}, leave-one-out)"
    return ", ".join(parts) + f"; set on {source}"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
