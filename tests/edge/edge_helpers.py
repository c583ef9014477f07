"""A tiny edge bundle for the edge tests (bundle, runtime, install, outbox).

Exporting takes a while (two ONNX graphs and a held-out parity run), so export ONCE per
session and copy the folder for a test that changes it::

    @pytest.fixture(scope="session")
    def bundle_dir(tmp_path_factory):
        return tiny_bundle(tmp_path_factory.mktemp("bundle"))

    def test_tamper(bundle_dir, tmp_path):
        copy = shutil.copytree(bundle_dir, tmp_path / "b")
        ...

``tiny_bundle`` needs torch (the ``models`` extra); the bundle it writes is read without.
"""

from __future__ import annotations

from pathlib import Path

PRODUCT = "bracket"
HOLDOUT_SEED = 7  # the default held-out parts of export_bundle
PART_SIZE = 96  # 4 tiles of the tiny model's 64 px


def tiny_model_dir(tmp_dir: Path) -> Path:
    """A tiny detection model that serves ``bracket``, with its report decoder in
    ``decoder/``: the anomaly channel raised so that random weights find regions to
    measure, and an image threshold between the middle part scores of the default held-out
    parts, so that both verdicts occur among them.

    Parameters
    ----------
    tmp_dir : Path
        Where ``model/`` is written (created).
    """
    import torch

    from inspection.decoder.corpus import shipped_standards
    from inspection.decoder.model import ReportDecoder
    from inspection.decoder.tokenizer import tokenizer_corpus, train_tokenizer
    from inspection.export.bundle import holdout_parts
    from inspection.models import create_model, save_model
    from inspection.models.detector import TorchDetector

    torch.manual_seed(0)
    model = create_model("tiny")
    with torch.no_grad():
        model.seg_head.fine[4].bias[0] += 4.3
    detector = TorchDetector(model)
    parts = holdout_parts(PRODUCT, seed=HOLDOUT_SEED, size=PART_SIZE)
    scores = [float(detector.detect(o.frames[0].image, o.audio).part_score[0]) for o, _ in parts]
    model.metadata = {
        "thresholds": {"image": _between(scores), "pixel": 0.5, "audio": 0.99},
        "products": [PRODUCT],
    }
    out = Path(tmp_dir) / "model"
    save_model(model, out, extra=model.metadata)
    # A small tokenizer (as tests/serve do): the default one trains on a larger corpus.
    corpus = tokenizer_corpus(n_examples=30, n_standards=4, standards=shipped_standards())
    tokenizer = train_tokenizer(corpus, 512)
    ReportDecoder.create("tiny", tokenizer=tokenizer, seed=0).save(out / "decoder")
    return out


def _between(scores: list[float]) -> float:
    """The midpoint of the two middle scores: both verdicts occur, and no part sits on
    the threshold (np.median of an odd count is a part's own score, which ONNX Runtime
    with other thread counts reproduces to 1e-7 either side of it, flipping the verdict)."""
    ordered = sorted(scores)
    middle = max(1, len(ordered) // 2)
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def tiny_bundle(tmp_dir: Path, sign_key: Path | None = None, **options) -> Path:
    """Export a bundle of a tiny model and a tiny decoder into ``tmp_dir / "bundle"``.

    Parameters
    ----------
    tmp_dir : Path
        A fresh folder: the model goes to ``tmp_dir/model``, the bundle to
        ``tmp_dir/bundle``.
    sign_key : Path | None
        An Ed25519 private key (``inspection.edge.keys.new_keypair``): the bundle is
        then signed (``manifest.sig``).
    **options
        More keyword arguments of :func:`inspection.export.bundle.export_bundle`.

    Returns
    -------
    Path
        The bundle folder (``load_bundle`` reads it).
    """
    from inspection.export.bundle import export_bundle

    model_dir = tiny_model_dir(tmp_dir)
    out = Path(tmp_dir) / "bundle"
    options.setdefault("holdout_size", PART_SIZE)
    export_bundle(model_dir, out, sign_key=sign_key, **options)
    return out
