"""``make demo``: a simulated line run through the shipped model and the standard.

Each part passes the station: the detection model (``models/default``) finds defect
regions in the image and listens to the tap test; the regions are measured in
millimetres (length, width, area, ΔE under local light), placed into the standard's
zones and judged by the rule engine, which cites the governing clause. The verdicts are
scored against the same standard applied to the generator's exact attributes, and the
run is written as a self-contained HTML report with defect overlays.

Without a shipped model (``--model none``), the ground-truth masks stand in for the
detector ("oracle") so that measurement and rules can be shown on their own.

Beside the shipped model the demo runs a feature normality model of the product it is
asked for (PaDiM on ImageNet features, :mod:`inspection.train.normality`), fused with it
(:class:`~inspection.models.fusion.FusedDetector`): fitted once on synthesised good parts
of that product (about a minute on a CPU, kept beside the run's folder), it sends to
REVIEW what the shipped model would pass and the good parts never show. Measured on 300
held-out parts of each product it cut the parts the standard rejects but the line passed
from 80 to 29 of 900 (benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from inspection.capture.simulator import SimulatedLine
from inspection.config import default_model_dir, standard_path
from inspection.decoder.schema import to_json as report_json
from inspection.errors import UserError
from inspection.measure import defects_from_mask, fill_dropouts
from inspection.models.backbones import provenance_words
from inspection.models.card import PRODUCT_EVALUATION, evaluation_key, normality_backbone
from inspection.standards import (
    GuardBandError,
    Standard,
    apply_standard,
    load_guard_band,
    load_standard,
)
from inspection.standards.schema import check_language
from inspection.synth import SynthPart
from inspection.types import Defect, InspectionResult, Observation, Verdict
from inspection.viz import (
    VERDICT_COLOURS,
    Card,
    class_colour,
    figure_base64,
    height_picture,
    overlay,
    png_base64,
    write_html_report,
)

if TYPE_CHECKING:  # the pipeline is imported where a model runs, not to show a demo's help
    from inspection.pipeline import Detector, Thresholds

DEFAULT_MODEL = default_model_dir()
NORMALITY_PARTS = 560  # synthesised good parts a product's normality model is fitted on
NORMALITY_SEED = 1  # the line's default seed is 2026: not fitted on the parts it judges
NORMALITY_MINUTES = 5.0
# The code a cached normality model depends on: the synthesised parts, the resize rule,
# the backbone and the fit (with the station's rules it learns). When any of it changes,
# the cached model is fitted again.
NORMALITY_SOURCES = (
    "synth",
    "grain.py",
    "models/backbones.py",
    "models/normality.py",
    "models/preprocess.py",
    "patches.py",
    "silhouette.py",
    "train/data.py",
    "train/normality.py",
)
FITTED_BY = "fitted-by.json"  # beside a cached model: what fitted it
SECOND_LOOK_PARTS = 200  # fresh good parts the heads' second-look level is set on
SECOND_LOOK_SEED = 3  # not the parts the heads (seeds 1, 2) or the normality model learned
# Limit samples: synthesised dents of known depth the station reads. 60 fit the light and
# the gain as well as 240 do; the least lit slope of a steep dent needs more (about 67 of
# tile's 200 are steep, over guard.MIN_STEEP_DENTS): benchmarks/README.md.
SHADING_PARTS = 200
SHADING_SEED = 4  # not the parts anything above learned, nor the line's (2026) or held out (7)
# The code a kept shading calibration depends on besides the fused model: how the line
# finds and measures dents, how the calibration is fitted, and the parts it is fitted on.
SHADING_SOURCES = (
    "synth",
    "evaluate.py",
    "grain.py",
    "measure.py",
    "patches.py",
    "pipeline.py",
    "standards/guard.py",
)


@dataclass(frozen=True)
class DemoSummary:
    n: int
    verdicts: dict[str, int]
    agreement: float  # share of parts whose measured verdict equals the exact one
    scratch_length_error_mm: float | None  # median absolute error
    ms_per_part: float
    report: Path


def measure_part(observation: Observation, part: SynthPart) -> list[Defect]:
    """Measured defects of one part, from its (ground-truth) class masks."""
    from inspection.pipeline import with_profile

    frame = observation.frames[0]
    reference = np.asarray(observation.metadata["reference_rgb"])
    found: list[Defect] = []
    for cls in sorted({d.defect_class for d in part.defects if d.visible}):
        mask = np.any([d.mask for d in part.defects if d.defect_class == cls], axis=0)
        found += defects_from_mask(mask, cls, frame.mm_per_px, frame.image, reference)
    # The ground-truth station has a laser profilometer, whatever the line's frames carry.
    height = fill_dropouts(frame.height_map if frame.height_map is not None else part.height_map())
    found = [with_profile(d, height, frame.mm_per_px, sizes=False) for d in found]
    if any(d.defect_class == "crack" and not d.visible for d in part.defects):
        # Tap test: an internal crack rings differently but shows nothing.
        found.append(Defect("crack", {}, zone=None, score=1.0))
    return found


def truth_defects(part: SynthPart) -> list[Defect]:
    """The generator's exact defects."""
    return [
        Defect(d.defect_class, dict(d.attributes), mask=d.mask if d.visible else None)
        for d in part.defects
    ]


TRUSTED_AGREEMENT = 0.98
"""Held-out verdict agreement below which the demo warns (issue 23's target)."""


def product_warning(
    metadata: dict,
    evaluation: dict | None,
    product: str,
    fused: bool = False,
    profiler: bool = False,
) -> str | None:
    """Why a model's verdicts on ``product`` are not to be trusted, else ``None``.

    Parameters
    ----------
    metadata : dict
        The model's metadata; ``products`` lists what it was trained on (models trained on
        unlabelled folders record none, and get no warning from it).
    evaluation : dict | None
        The packaged model's ``evaluation.json`` (``inspection package --product-eval``):
        each product's held-out verdict agreement with the standard, alone and, where
        measured, fused with a normality model (its ``fused`` figures).
    product : str
        The product the demo runs.
    fused : bool
        The demo fuses the model with the product's normality model: the fused figures
        are the ones that apply, where they were measured.
    profiler : bool
        The station has a 3D profiler: the figures measured with height maps
        (``profiler`` or ``fused_profiler``) apply, where they were measured.
    """
    products = metadata.get("products") or []
    if products and product not in products:
        return (
            f"the model was trained on {', '.join(products)}, not {product}: its verdicts on "
            f"{product} parts are not expected to agree with the standard (train one with "
            f"`inspection synth --product {product}` then `inspection train`)"
        )
    measured = ((evaluation or {}).get("products") or {}).get(product) or {}
    profiled = measured.get(evaluation_key(fused=fused, profiler=True))
    if profiler and isinstance(profiled, dict):
        searched = " searched for dents" if profiled.get("profiler_dents") else ""
        fusion = "fused with its normality model, " if fused else ""
        return _disagreement(profiled, product, f" ({fusion}with height maps{searched})", "")
    unprofiled = " (measured without a 3D profiler)" if profiler else ""
    if fused and isinstance(measured.get("fused"), dict):
        how = " (fused with its normality model)"
        return _disagreement(measured["fused"], product, how, unprofiled)
    if not fused:
        return _disagreement(measured, product, "", unprofiled)
    alone = "alone and without a 3D profiler" if profiler else "alone"
    caveat = f" (measured {alone}; fused with its normality model it passes fewer)"
    return _disagreement(measured, product, "", caveat)


def _disagreement(measured: dict, product: str, how: str, caveat: str) -> str | None:
    """The warning for a product's recorded figures (an ``evaluation.json`` entry), or
    ``None`` where they meet the target: the agreement, and the recall of every class."""
    agreement = measured.get("verdict_agreement")
    short = _short_recall(measured.get("verdict_reject_recall"))
    if agreement is None or (agreement >= TRUSTED_AGREEMENT and not short):
        return None
    wrong = measured.get("verdict_wrong_pass_rate")
    return (
        f"on {measured.get('parts')} held-out {product} parts the model's verdicts{how} "
        f"agreed {_short_of(agreement)} with the standard (target {TRUSTED_AGREEMENT:.0%})"
        + ("" if wrong is None else f"; it passed {wrong:.0%} of the parts the standard rejects")
        + (f" (stopped, by class: {short}; target {TRUSTED_AGREEMENT:.0%} each)" if short else "")
        + _at_limits_words(measured.get("verdict_at_limits"))
        + caveat
    )


def _at_limits_words(at_limits: object) -> str:
    """How many of the disagreements a reading within the gauge's uncertainty gives (an
    ``evaluation.json`` entry's ``verdict_at_limits``), and the agreement on the other
    parts; nothing where it was not measured or is malformed."""
    if not isinstance(at_limits, dict):
        return ""
    figures = [at_limits.get(k) for k in ("disagreements", "of", "agreement_clear")]
    if not all(isinstance(f, int | float) and not isinstance(f, bool) for f in figures):
        return ""
    at_limit, differ, clear = figures
    return (
        f"; {int(at_limit)} of its {int(differ)} disagreements lie within the gauge's "
        f"uncertainty of a limit ({_short_of(clear)} on the other parts)"
    )


def _short_of(share: float) -> str:
    """``share`` as a percentage, to a tenth where whole ones would round a share short of
    the target up to it (0.977: "97.7%", not "98%")."""
    if share < TRUSTED_AGREEMENT and round(share, 2) >= TRUSTED_AGREEMENT:
        return f"{share:.1%}"
    return f"{share:.0%}"


def _short_recall(recall: object) -> str:
    """The classes whose rejectable parts the line stopped too few of ("scratch 86%"),
    from an ``evaluation.json`` entry; a malformed one says nothing."""
    if not isinstance(recall, dict):
        return ""
    short = {
        c: r
        for c, r in recall.items()
        if isinstance(r, (int, float)) and not isinstance(r, bool) and r < TRUSTED_AGREEMENT
    }
    return ", ".join(f"{c} {_short_of(r)}" for c, r in sorted(short.items(), key=lambda cr: cr[1]))


def _recorded_evaluation(model_dir: Path) -> dict | None:
    """The model's ``evaluation.json``, or ``None`` when it has none (or it is unreadable:
    the manifest check refuses a damaged one before this, unless told not to verify)."""
    try:
        recorded = json.loads((model_dir / PRODUCT_EVALUATION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def product_normality(product: str, cache: Path, console: Console) -> Path:
    """The product's feature normality model: fitted on :data:`NORMALITY_PARTS`
    synthesised good parts the first time it is asked for, then read from ``cache``;
    fitted again when the code that fits it has changed (:func:`normality_fingerprint`).

    Parameters
    ----------
    product : str
        A product the synthetic line makes.
    cache : Path
        Folder of fitted models, one per product (``cache/<product>-<parts>``).
    console : Console
        Where to say that a model is being fitted, and where it is kept.

    Returns
    -------
    Path
        The model directory.
    """
    from inspection.synth import synthesize
    from inspection.train.normality import fit_normality
    from inspection.train.trainer import TrainOptions

    out = cache / f"{product}-{NORMALITY_PARTS}"
    fingerprint = normality_fingerprint()
    if (out / "model.safetensors").exists():
        if _fitted_by(out) == fingerprint:
            return out
        console.print(f"the code that fits {out} changed since it was fitted: fitting it again")
    console.print(
        f"fitting a normality model of {product} on {NORMALITY_PARTS} synthesised good parts "
        f"(once, about a minute; kept in {out})"
    )
    cache.mkdir(parents=True, exist_ok=True)
    # Fitted beside the cache and moved in whole: an interrupted fit leaves no model behind.
    with tempfile.TemporaryDirectory(prefix=f".{product}-", dir=cache) as tmp:
        good, fitted = Path(tmp) / "good", Path(tmp) / "model"
        synthesize(good, NORMALITY_PARTS, NORMALITY_SEED, product, train_ratio=1.0, progress=False)
        options = TrainOptions(
            data=good,
            out=fitted,
            normal_only=True,
            method="padim",
            max_minutes=NORMALITY_MINUTES,
            seed=NORMALITY_SEED,
        )
        fit_normality(options)
        (fitted / FITTED_BY).write_text(json.dumps({"fingerprint": fingerprint}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        fitted.rename(out)
    return out


def product_second_look(heads, product: str, normality: Path, console: Console) -> float:
    """The heads' second-look level on the product
    (:func:`~inspection.models.fusion.second_look_level`): set on
    :data:`SECOND_LOOK_PARTS` fresh synthesised good parts the first time these heads are
    fused with the product's normality model, then read from beside it.

    Parameters
    ----------
    heads : Detector
        The model's detector (its ``version`` names the level it keeps).
    product : str
        A product the synthetic line makes.
    normality : Path
        The product's normality model directory (:func:`product_normality`).
    console : Console
        Where to say that the level is being set.

    Returns
    -------
    float
        The level (a logit over the heads' pixel threshold).
    """
    from inspection.models.fusion import (
        SECOND_LOOK_FILE,
        read_second_look,
        save_second_look,
        second_look_level,
    )

    level = read_second_look(normality, heads.version)
    if level is not None:
        return level
    console.print(
        f"setting the model's second look on {product} from {SECOND_LOOK_PARTS} synthesised "
        f"good parts (once for this model; kept in {normality / SECOND_LOOK_FILE})"
    )
    line = SimulatedLine(product, n=SECOND_LOOK_PARTS, seed=SECOND_LOOK_SEED, defect_rate=0.0)
    images = (observation.frames[0].image for observation, _ in line.parts())
    level = second_look_level(
        heads, track(images, total=SECOND_LOOK_PARTS, description="good parts")
    )
    save_second_look(normality, heads.version, level, SECOND_LOOK_PARTS)
    return level


def normality_fingerprint() -> str:
    """SHA-256 over the source of :data:`NORMALITY_SOURCES` and the demo's fit settings,
    the config it fits included (a YAML file under ``models/``, not package source)."""
    from inspection.train.normality import normality_config
    from inspection.train.trainer import TrainOptions

    config = normality_config(TrainOptions(data=Path(), out=Path(), method="padim"))
    return _sources_digest(NORMALITY_SOURCES, f"{NORMALITY_PARTS} {NORMALITY_SEED} {config}")


def _sources_digest(names: Sequence[str], settings: str) -> str:
    """SHA-256 over ``settings`` and the package source files (or folders) ``names``."""
    package = Path(__file__).parent
    digest = hashlib.sha256(settings.encode())
    for name in names:
        path = package / name
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(source.relative_to(package).as_posix().encode())
            digest.update(source.read_bytes())
    return digest.hexdigest()


def product_shading_depth(
    detector: Detector,
    thresholds: Thresholds,
    standard: Standard,
    heads_version: str,
    normality: Path,
    console: Console,
) -> Path | None:
    """The station's dent depth from shading, calibrated as a plant calibrates a gauge: on
    :data:`SHADING_PARTS` limit samples, synthesised dents of known depth
    (:data:`SHADING_SEED`), through the line that will judge the parts
    (:func:`~inspection.evaluate.evaluate` fits the light and the gain, and the reading's
    own guard band, :func:`~inspection.standards.guard.fit_shading_depth`).

    Calibrated the first time these heads are fused with ``normality``, then read from
    beside it (``shading-depth-<key>.json``, a ``--guard-band`` file a station takes as
    it is); calibrated again when the code that reads it changes.

    Parameters
    ----------
    detector : Detector
        The line's detector (here the fused one).
    thresholds : Thresholds
        The line's thresholds, without a guard band.
    standard : Standard
        The product's standard.
    heads_version : str
        The heads model's version (the calibration is a reading of its maps' regions).
    normality : Path
        The product's normality model directory (:func:`product_normality`).
    console : Console
        Where to say that the station is being calibrated.

    Returns
    -------
    Path or None
        The calibration file; ``None`` where too few limit samples' dents were read for a
        fit (their depth clause then stays at REVIEW, as without a calibration).
    """
    from inspection.evaluate import evaluate
    from inspection.synth import synthesize

    key = _sources_digest(SHADING_SOURCES, f"{SHADING_PARTS} {SHADING_SEED} {heads_version}")
    kept = Path(normality) / f"shading-depth-{key[:16]}.json"
    unread = kept.with_suffix(".unread")  # tried, and too few dents read: not tried again
    too_few = (
        "[yellow]too few of the limit samples' dents were read to calibrate: a dent's "
        "depth clause stays at REVIEW[/yellow]"
    )
    if kept.is_file():
        try:
            load_guard_band(kept)
            return kept
        except GuardBandError as error:  # damaged (a disk, a hand): fitted again below
            console.print(f"[yellow]{error}: calibrating again[/yellow]")
    if unread.is_file():
        console.print(too_few)
        return None
    console.print(
        f"calibrating the station's dent depth from shading on {SHADING_PARTS} synthesised "
        f"limit samples, dents of known depth (once for this model; kept in {kept})"
    )
    with tempfile.TemporaryDirectory(prefix=".shading-", dir=normality) as tmp:
        dents, out = Path(tmp) / "dents", Path(tmp) / "evaluation"
        synthesize(
            dents, SHADING_PARTS, SHADING_SEED, standard.product, train_ratio=0.0,
            defect_ratio=1.0, progress=False, classes=("dent",),
        )  # fmt: skip
        evaluate(detector, thresholds, dents, out, examples=0, standard=standard)
        fitted = out / "shading_depth.json"
        if not fitted.is_file():
            console.print(too_few)
            unread.write_text(f"{SHADING_PARTS} limit samples: too few dents read\n")
            return None
        record = json.loads(fitted.read_text(encoding="utf-8"))
        record["source"] = (  # not the folder it was fitted in, gone once it is kept
            f"{SHADING_PARTS} synthesised limit samples of {standard.product} (dents, seed "
            f"{SHADING_SEED}) through {detector.version}"
        )
        written = Path(tmp) / kept.name  # moved in whole: a demo beside it reads all or none
        written.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        written.replace(kept)
    return kept


def _fitted_by(model: Path) -> str | None:
    try:
        return json.loads((model / FITTED_BY).read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # fitted before fingerprints were kept, or the file is damaged


def _decider(
    standard: Standard,
    model_dir: Path | None,
    console: Console,
    *,
    verify: bool = True,
    product: str = "",
    normality: str | Path | None = None,
    cache: Path = Path("runs/normality"),
    review_from: float | None = None,
    guard_band: Path | None = None,
    profiler: bool = False,
    profiler_dents: bool = False,
    calibrate_depth: bool = True,
):
    """``decide(observation, part) -> (result, report request or None)``, a description of
    the detector, and the report decoder (``model_dir/decoder``) or ``None``.

    ``normality`` (``"auto"``: the product's, fitted into ``cache``) is fused with the
    model, ``review_from`` sets a review band, ``guard_band`` a guard band and
    ``profiler_dents`` the height maps' search for dents; ``profiler`` says that the line
    has height maps, for the warning's figures (see :func:`run_demo`)."""
    guard = load_guard_band(guard_band) if guard_band is not None else None  # before work
    if model_dir is not None and (model_dir / "model.safetensors").exists():
        from inspection.models.fusion import FUSED_THRESHOLD
        from inspection.pipeline import (
            Inspector,
            Thresholds,
            line_thresholds,
            load_detector,
            thresholds_of,
            with_normality,
            with_review_band,
        )

        model, metadata = load_detector(model_dir, verify)  # checked before any fitting
        # So is the band, against the threshold the line will use (the fused one if fused).
        fused = Thresholds(image=FUSED_THRESHOLD) if normality is not None else None
        with_review_band(fused or thresholds_of(metadata), review_from)
        detector, described = model, f"model {model_dir} ({model.version})"
        calibrate = calibrate_depth and normality == "auto" and guard is None and not profiler
        if normality is not None:
            if normality == "auto":
                normality = product_normality(product, cache, console)
                product_second_look(model, product, normality, console)
            detector, metadata = with_normality(model, normality, verify)
            described += f" fused with the normality model {normality}"
            weights = provenance_words(normality_backbone(metadata.get("fusion")), brief=True)
            described += f" (on {weights})" if weights else ""
        settings = {"review_from": review_from, "profiler_dents": profiler_dents}
        thresholds = line_thresholds(metadata, guard_band=guard, **settings)
        if calibrate and standard.limiting("dent", "depth_mm"):
            # The demo's own station: its light read off limit samples, as a plant would.
            calibration = product_shading_depth(
                detector, thresholds, standard, model.version, Path(normality), console
            )
            guard = None if calibration is None else load_guard_band(calibration)
            thresholds = line_thresholds(metadata, guard_band=guard, **settings)
            if guard is not None and guard.shading is not None:
                described += (
                    f", dent depth read from shading (light from {guard.shading.azimuth_deg:.0f}°, "
                    f"{guard.shading.calibration_words})"
                )
        if review_from is not None:
            described += f", review band from {review_from:g}"
        if guard is not None:
            described += f", {guard.version}"
        if profiler_dents:
            described += ", height maps searched for dents"
        inspector = Inspector(detector, standard, thresholds)
        warning = product_warning(
            model.metadata,
            _recorded_evaluation(model_dir),
            product,
            fused=normality is not None,
            profiler=profiler,
        )
        warned = "" if warning is None else f"\n[yellow]warning[/yellow]: {warning}"
        if not (model_dir / "decoder").is_dir():
            return (lambda obs, part: (inspector.inspect(obs), None)), described + warned, None
        from inspection.decoder.lora import load_decoder
        from inspection.decoder.reporting import report_request

        decoder = load_decoder(model_dir / "decoder", verify=verify)
        return (
            (lambda obs, part: report_request(inspector, decoder, obs)),
            described + f" + report decoder {decoder.config.name}" + warned,
            decoder,
        )

    def oracle(observation: Observation, part: SynthPart):
        size = (observation.frames[0].width, observation.frames[0].height)
        defects = measure_part(observation, part)
        return apply_standard(standard, defects, part.part_id, size, guard=guard), None

    described = "ground-truth masks (no model)"
    return oracle, described + (f", {guard.version}" if guard is not None else ""), None


def run_demo(
    out: Path,
    product: str,
    n: int,
    seed: int,
    console: Console,
    model_dir: Path | None = DEFAULT_MODEL,
    language: str = "en",
    verify: bool = True,
    normality: str | Path | None = "auto",
    review_from: float | None = None,
    guard_band: Path | None = None,
    profiler: bool = False,
    profiler_dents: bool = False,
    calibrate_depth: bool = True,
) -> DemoSummary:
    """Run ``n`` parts of ``product`` through the station and write ``out/report.html``.

    With a report decoder beside the model (``model_dir/decoder``), every part also gets
    the decoder's report in ``language``, cross-checked against the rule engine.
    ``verify=False`` loads them without checking their files' SHA-256 (development).
    ``normality``: a normality model to fuse with the model, ``"auto"`` the product's
    (:func:`product_normality`, kept in ``out``'s parent folder under ``normality``), or
    ``None`` for the model alone. ``review_from``: a review band under the image
    threshold (:func:`~inspection.pipeline.with_review_band`). ``guard_band``: a guard
    band file (:func:`~inspection.pipeline.with_guard_band`), read before any work.
    ``profiler``: the station also has a 3D profiler (each frame a height map, dents
    measured on it); ``profiler_dents``: its height maps are also searched for the dents
    the camera missed (:func:`~inspection.pipeline.with_profiler_dents`).
    ``calibrate_depth``: with the product's own normality model (``"auto"``), no guard
    band and no profiler, where the standard limits a dent's depth, the station reads it
    from the dent's shading, calibrated on limit samples (:func:`product_shading_depth`);
    ``False`` leaves that clause at REVIEW.
    """
    if n < 1:
        raise UserError(f"--n must be at least 1 part, not {n}")
    check_language(language, "--language")
    standard = load_standard(standard_path(product))
    line = SimulatedLine(product, n=n, seed=seed, defect_rate=0.6, profiler=profiler)
    decide, detector, decoder = _decider(
        standard,
        model_dir,
        console,
        verify=verify,
        product=product,
        normality=normality,
        cache=out.parent / "normality",
        review_from=review_from,
        guard_band=guard_band,
        profiler=profiler,
        profiler_dents=profiler_dents,
        calibrate_depth=calibrate_depth,
    )
    console.print(
        f"[bold]Simulated line[/bold]: {n} parts of {product}, standard {standard.id} "
        f"rev {standard.revision} ({standard.version}); detector: {detector}"
    )
    out.mkdir(parents=True, exist_ok=True)
    rows, cards, times, length_errors, requests = [], [], [], [], []
    for observation, part in track(line.parts(), total=n, description="inspecting"):
        size = (observation.frames[0].width, observation.frames[0].height)
        start = perf_counter()
        result, request = decide(observation, part)
        times.append((perf_counter() - start) * 1000)
        truth = apply_standard(standard, truth_defects(part), part.part_id, image_size=size)
        length_errors += _scratch_length_errors([d.defect for d in result.decisions], part)
        label = _label(part)
        rows.append((label, result, truth))
        requests.append(request)
        cards.append(_card(observation, part, result, label))
    checks = _reports(decoder, requests, language, console) if decoder else [None] * len(rows)
    with (out / "results.jsonl").open("w", encoding="utf-8") as records:
        for (label, result, truth), check in zip(rows, checks, strict=True):
            record = {**result.to_json(), "label": label, "truth_verdict": truth.verdict.value}
            if check is not None:
                record["report"] = report_json(check.report) if check.report else None
                record["cross_check"] = check.to_json()
            records.write(json.dumps(record, ensure_ascii=False) + "\n")
    cards = [_with_report(card, check) for card, check in zip(cards, checks, strict=True)]
    summary = _summarise(rows, times, length_errors, out / "report.html")
    _print(console, rows, summary, standard)
    if decoder is not None:
        _print_reports(console, rows, checks)
    _write_report(summary, rows, cards, standard, product)
    console.print(f"HTML report: [link=file://{summary.report.resolve()}]{summary.report}[/link]")
    return summary


def _reports(decoder, requests, language: str, console: Console):
    """The decoder's reports of every part, cross-checked against the rule engine."""
    from inspection.decoder.crosscheck import cross_check
    from inspection.decoder.decoding import DecodingOptions, decode

    start = perf_counter()
    decoded = decode(decoder, requests, DecodingOptions(language=language, batch_size=16))
    seconds = perf_counter() - start
    console.print(
        f"report decoder: {len(decoded)} reports in {seconds:.1f} s "
        f"({len(decoded) / max(seconds, 1e-9):.1f} reports/s, batch 16, {language})"
    )
    return [cross_check(r.rules(), d.report) for r, d in zip(requests, decoded, strict=True)]


def _print_reports(console: Console, rows, checks) -> None:
    table = Table(title="The report decoder beside the rule engine")
    for col in ("part", "rules", "report", "final", "clauses (report)", "summary"):
        table.add_column(col, overflow="fold")
    for (_, result, _), check in zip(rows, checks, strict=True):
        report = check.report
        table.add_row(
            result.part_id.rsplit("-", 1)[-1],
            check.rule_result.verdict.value,
            (report.verdict.value if report else "none")
            + ("" if check.agreed else " [yellow](differs)[/]"),
            check.final_verdict.value,
            ", ".join(d.clause_id or "-" for d in report.defects) if report else "",
            report.summary if report else "",
        )
    console.print(table)
    agreed = sum(c.agreed for c in checks)
    console.print(
        f"[bold]reports[/bold]: {agreed}/{len(checks)} agree with the rule engine on every "
        "field; a disagreement sends a PASS to REVIEW and never releases a REJECT"
    )


def _with_report(card: Card, check) -> Card:
    if check is None or check.report is None:
        return card
    note = "report agrees" if check.agreed else "report differs: " + "; ".join(check.disagreements)
    return replace(card, lines=(*card.lines, f"report: {check.report.summary}", note))


def _label(part: SynthPart) -> str:
    if not part.defects:
        return "good"
    cls = part.defects[0].defect_class
    return f"{cls} (internal)" if not part.defects[0].visible else cls


def _scratch_length_errors(found: Sequence[Defect], part: SynthPart) -> list[float]:
    errors = []
    for truth in (d for d in part.defects if d.defect_class == "scratch"):
        hits = [d for d in found if d.mask is not None and (d.mask & truth.mask).any()]
        if len(hits) == 1:
            errors.append(abs(hits[0].attributes["length_mm"] - truth.attributes["length_mm"]))
    return errors


def _summarise(rows, times, length_errors, report: Path) -> DemoSummary:
    verdicts = Counter(r.verdict.value for _, r, _ in rows)
    agree = sum(r.verdict is t.verdict for _, r, t in rows)
    return DemoSummary(
        n=len(rows),
        verdicts={v.value: verdicts.get(v.value, 0) for v in Verdict},
        agreement=agree / max(1, len(rows)),
        scratch_length_error_mm=float(np.median(length_errors)) if length_errors else None,
        ms_per_part=float(np.median(times)) if times else 0.0,
        report=report,
    )


def _print(console: Console, rows, summary: DemoSummary, standard: Standard) -> None:
    table = Table(title=f"Verdicts under {standard.id} rev {standard.revision}")
    for col in ("part", "truth", "verdict", "action", "clauses", "measured"):
        table.add_column(col, overflow="fold")
    for label, result, truth in rows:
        colour = {"PASS": "green", "REVIEW": "yellow", "REJECT": "red"}[result.verdict]
        mark = "" if result.verdict is truth.verdict else f" (exact: {truth.verdict})"
        table.add_row(
            result.part_id.rsplit("-", 1)[-1],
            label,
            f"[{colour}]{result.verdict}[/]{mark}",
            result.action,
            ", ".join(result.clauses),
            _measured(result),
        )
    console.print(table)
    err = summary.scratch_length_error_mm
    console.print(
        f"[bold]{summary.n} parts[/bold]: "
        + "  ".join(f"{k} {v}" for k, v in summary.verdicts.items())
        + f" | verdicts equal to the exact-attribute verdicts: {summary.agreement:.1%}"
        + (f" | median scratch length error {err:.2f} mm" if err is not None else "")
        + f" | {summary.ms_per_part:.1f} ms/part (p50, detect + measure + rules)"
    )


def _measured(result: InspectionResult) -> str:
    parts = []
    for d in result.decisions:
        a = d.defect.attributes
        size = f" {a['length_mm']:.1f} mm" if "length_mm" in a else ""
        parts.append(f"{d.defect.defect_class}{size}@{d.zone or '-'}")
    return "; ".join(parts)


def _card(observation: Observation, part: SynthPart, result: InspectionResult, label: str) -> Card:
    classes = sorted({d.defect.defect_class for d in result.decisions})
    regions = [
        (
            d.defect.mask,
            f"{d.clause_id or 'ok'}",
            class_colour(classes.index(d.defect.defect_class)),
        )
        for d in result.decisions
        if d.defect.mask is not None
    ]
    regions += [(d.mask, "truth", (0, 255, 0)) for d in part.defects if d.visible]
    footprints = [
        (d.defect.footprint, class_colour(classes.index(d.defect.defect_class)))
        for d in result.decisions
        if d.defect.footprint is not None
    ]
    frame = observation.frames[0]
    image = overlay(frame.image, regions, dashed=footprints)
    if frame.height_map is not None:  # the profiler's relief beside the photograph
        image = np.concatenate([image, height_picture(frame.height_map, dashed=footprints)], 1)
    lines = tuple(d.reason for d in result.decisions) or ("no defects found",)
    return Card(
        png_base64(image),
        f"{part.part_id}: {result.verdict} ({label})",
        lines,
        result.verdict.value,
    )


def _write_report(summary: DemoSummary, rows, cards, standard: Standard, product: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for label, _, _ in rows})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bottom = np.zeros(len(labels))
    for verdict in Verdict:
        counts = np.array(
            [sum(1 for lb, r, _ in rows if lb == lab and r.verdict is verdict) for lab in labels]
        )
        ax.bar(
            labels, counts, bottom=bottom, label=verdict.value, color=VERDICT_COLOURS[verdict.value]
        )
        bottom += counts
    ax.set_ylabel("parts")
    ax.set_title("Verdict by true defect class")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)
    clauses = Counter(c for _, r, _ in rows for c in r.clauses)
    write_html_report(
        summary.report,
        title=f"Simulated line run: {product} under {standard.id} rev {standard.revision}",
        summary=[
            ("parts", str(summary.n)),
            *((k, str(v)) for k, v in summary.verdicts.items()),
            ("agreement with exact attributes", f"{summary.agreement:.1%}"),
            ("median scratch length error", f"{summary.scratch_length_error_mm or 0:.2f} mm"),
            ("standard version", standard.version),
        ],
        tables=[
            (
                "Clauses cited",
                ["clause", "parts", "text"],
                [(c, n, standard.clause(c).text.en) for c, n in clauses.most_common()],
            )
        ],
        figures=[("Verdicts by true class", figure_base64(fig))],
        cards=cards,
    )
