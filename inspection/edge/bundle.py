"""Read and verify an edge bundle, torch-free: everything an edge box needs for a model.

A bundle is one folder (``inspection export --format bundle`` writes it,
:mod:`inspection.export.bundle`)::

    manifest.json          format, versions, classes, thresholds, split, payload bytes,
                           and the SHA-256 and size of every other file
    manifest.json.sha256   the manifest's own SHA-256 (``sha256sum`` format): a corrupt
                           manifest is refused even where no key is configured
    manifest.sig           optional: Ed25519 signature of manifest.json's exact bytes
    edge.onnx              the edge graph (image [+ mel] -> maps, logits, tokens)
    edge.onnx.sha256       its SHA-256 (``OnnxDetector`` checks it too)
    fusion.onnx            the fusion resampler (patch tokens, pooled maps, audio tokens)
    normality.onnx         optional: a feature normality model of the product, fused with
                           the edge graph (``inspection.models.fusion.FusedDetector``)
    standards/*.yaml       the defect standard of each product the model serves
    selftest/              held-out parts and expected.json: the verdicts and scores
                           the bundle's graph must reproduce

:func:`load_bundle` refuses a bundle with a file that differs from the manifest (one
flipped byte), a missing or unlisted file, a listed path that leaves the folder, an
unknown format, and, given a public key, an unsigned bundle or a signature that does
not verify. Each refusal is a :class:`BundleError` naming the file.

>>> bundle = load_bundle("bundles/v3", public_key="keys/edge.pub")  # doctest: +SKIP
>>> bundle.version, bundle.signed_by  # doctest: +SKIP
('68cf00b6ade6e7fb-1f2e3d4c5b6a', '9c1d...')
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from inspection.errors import ModelError

BUNDLE_FORMAT = "inspection.bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MANIFEST_HASH = MANIFEST + ".sha256"
EDGE_GRAPH = "edge.onnx"
FUSION_GRAPH = "fusion.onnx"
NORMALITY_GRAPH = "normality.onnx"
SELFTEST = "selftest/expected.json"
SELFTEST_FORMAT = "inspection.selftest/1"
SPLITS = ("fused", "tokens")
_NOT_LISTED = frozenset({MANIFEST, MANIFEST_HASH, SIGNATURE})


class BundleError(ModelError):
    """A bundle that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, manifest and the paths of what it carries.

    Attributes
    ----------
    path : Path
        The bundle folder.
    manifest : dict
        ``manifest.json`` as read.
    edge_graph : Path
        ``edge.onnx`` (run it with ``inspection.export.runtime.OnnxDetector``).
    fusion_graph : Path | None
        ``fusion.onnx`` (``inspection.edge.fusion.OnnxFusion``); ``None`` when the
        bundle was exported without a report decoder (split ``tokens`` only).
    normality_graph : Path | None
        ``normality.onnx``, a feature normality model fused with the edge graph (see
        :meth:`detector`); ``None``: the edge graph decides alone.
    normality_thresholds : dict | None
        Its recorded thresholds (the fusion aligns each model at its own).
    standards : dict[str, Path]
        Standard id -> its YAML file inside the bundle.
    product_standards : dict[str, str]
        Product name -> standard id.
    thresholds : dict
        The model metadata's ``thresholds``, as ``pipeline.thresholds_of`` reads them
        (:meth:`decision_thresholds` gives the line's :class:`Thresholds`).
    model_version, calibration_version : str, str | None
        Recorded with every verdict.
    split : str
        ``"fused"`` or ``"tokens"``: the default split point.
    signed_by : str | None
        The public key's fingerprint when the signature was checked.
    version : str
        The bundle's own id, ``f"{model_version}-{sha256(manifest.json)[:12]}"``.
    """

    path: Path
    manifest: dict[str, Any]
    edge_graph: Path
    fusion_graph: Path | None
    normality_graph: Path | None
    normality_thresholds: dict[str, Any] | None
    standards: dict[str, Path]
    product_standards: dict[str, str]
    thresholds: dict[str, Any]
    model_version: str
    calibration_version: str | None
    split: str
    signed_by: str | None
    version: str

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("classes", ()))

    def decision_thresholds(self):
        """The edge graph's :class:`~inspection.pipeline.Thresholds` (floors applied as
        for the torch model: ``thresholds_of`` over the recorded values): what the line
        decides with unless the bundle carries a normality graph (then the fusion's, in
        :meth:`detector`'s ``metadata``)."""
        from inspection.pipeline import thresholds_of

        return thresholds_of(self._edge_metadata())

    def _edge_metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"thresholds": self.thresholds}
        if self.calibration_version is not None:
            metadata["calibration_version"] = self.calibration_version
        return metadata

    def detector(self, threads: int | None = None, verify: bool = True) -> Any:
        """The detector the line runs (ONNX Runtime, torch-free): the edge graph at the
        bundle's thresholds, fused with the normality graph when the bundle carries one
        (:class:`~inspection.models.fusion.FusedDetector`, with the manifest's second-look
        level). Its ``metadata`` holds the
        thresholds to decide with. ``verify``: check each graph's own SHA-256 sidecar
        where the bundle carries one (the manifest checked every file already).
        """
        from inspection.export.runtime import OnnxDetector, hash_file

        def graph(path: Path, recorded: dict[str, Any]) -> Any:
            onnx = OnnxDetector(path, threads=threads, verify=verify and hash_file(path).is_file())
            onnx.metadata = {**onnx.metadata, **recorded}  # the box decides at the manifest's
            return onnx

        edge = graph(self.edge_graph, self._edge_metadata())
        if self.normality_graph is None:
            return edge
        from inspection.models.fusion import FusedDetector

        normality = {"thresholds": self.normality_thresholds or {}}
        second_look = (self.manifest.get("normality") or {}).get("second_look")
        return FusedDetector(edge, graph(self.normality_graph, normality), second_look=second_look)

    def standard_id(self, product: str | None = None) -> str:
        """The standard id for ``product``; ``None``: the bundle's only standard.

        Raises
        ------
        BundleError
            A product the bundle has no standard for, or ``None`` with several.
        """
        if product is None:
            if len(self.standards) != 1:
                raise BundleError(
                    f"{self.path}: carries {len(self.standards)} standards "
                    f"({', '.join(sorted(self.product_standards))}); name the product"
                )
            return next(iter(self.standards))
        if product not in self.product_standards:
            known = ", ".join(sorted(self.product_standards)) or "none"
            raise BundleError(f"{self.path}: no standard for product {product!r} (has {known})")
        return self.product_standards[product]

    def load_standard(self, product: str | None = None):
        """The product's :class:`~inspection.standards.Standard`, read from the bundle."""
        from inspection.standards import StandardError, load_standard

        path = self.standards[self.standard_id(product)]
        try:
            return load_standard(path)
        except StandardError as exc:
            raise BundleError(f"{path}: not a valid standard ({exc})") from exc

    def selftest(self) -> list[SelftestCase]:
        """The held-out parts the bundle's graph must decide as recorded (empty when the
        bundle carries none)."""
        if SELFTEST not in self.manifest.get("files", {}):
            return []
        return read_selftest(self.path)


@dataclass(frozen=True)
class SelftestCase:
    """One held-out part of the bundle and what the bundle's edge graph decided on it.

    Attributes
    ----------
    part_id : str
    image : Path
        The part's image inside the bundle.
    audio : Path | None
        Its tap test (WAV), if any.
    mm_per_px : float | None
    reference_rgb : list[int] | None
    product : str
        Decided under this product's standard (:attr:`standard_id`).
    standard_id : str
    verdict : str
        ``PASS`` / ``REJECT`` / ``REVIEW``: must be reproduced exactly.
    scores : dict[str, float]
        Must be reproduced within :attr:`tolerance`.
    tolerance : float
    """

    part_id: str
    image: Path
    audio: Path | None
    mm_per_px: float | None
    reference_rgb: list[int] | None
    product: str
    standard_id: str
    verdict: str
    scores: dict[str, float]
    tolerance: float

    def observation(self):
        """The part as an :class:`~inspection.types.Observation` (image and tap test read
        from the bundle)."""
        from inspection.io import read_audio, read_image
        from inspection.types import Frame, Observation

        frame = Frame(image=read_image(self.image), camera="selftest", mm_per_px=self.mm_per_px)
        metadata = {"reference_rgb": self.reference_rgb} if self.reference_rgb else {}
        return Observation(
            part_id=self.part_id,
            station="selftest",
            frames=(frame,),
            audio=read_audio(self.audio) if self.audio else None,
            product=self.product,
            metadata=metadata,
        )


def read_selftest(folder: Path) -> list[SelftestCase]:
    """The self-test cases of the bundle in ``folder`` (``selftest/expected.json``).

    Raises
    ------
    BundleError
        A file that is not the self-test format.
    """
    path = Path(folder) / SELFTEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != SELFTEST_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {SELFTEST_FORMAT!r}")
        return [
            SelftestCase(
                part_id=str(c["part_id"]),
                image=Path(folder) / c["image"],
                audio=Path(folder) / c["audio"] if c.get("audio") else None,
                mm_per_px=c.get("mm_per_px"),
                reference_rgb=c.get("reference_rgb"),
                product=str(c["product"]),
                standard_id=str(c["standard_id"]),
                verdict=str(c["verdict"]),
                scores={k: float(v) for k, v in c["scores"].items()},
                tolerance=float(data["tolerance"]),
            )
            for c in data["parts"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path}: unusable self-test ({exc})") from exc


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a bundle folder (a model folder has a ``manifest.json`` too:
    the format tells them apart). Reads the manifest only; :func:`load_bundle` verifies."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT


def load_bundle(path: str | Path, public_key: str | Path | None = None) -> Bundle:
    """Verify the bundle in ``path`` and describe it.

    Parameters
    ----------
    path : str | Path
        The bundle folder.
    public_key : str | Path | None
        An Ed25519 public key (PEM): the bundle must then carry ``manifest.sig`` made by
        its private key over ``manifest.json``'s exact bytes. ``None`` checks no
        signature (the file hashes are checked either way).

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        The folder or manifest is missing or unreadable, of an unknown format; a listed
        file is missing, differs from its SHA-256 or lies outside the folder; a file is
        present that the manifest does not list; the signature is missing or does not
        verify. Each names the file.
    """
    folder = Path(path)
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"{folder}: no such bundle folder")
    try:
        raw = manifest_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: missing; not a bundle") from None
    except OSError as exc:
        raise BundleError(f"{manifest_path}: unreadable ({exc})") from exc
    signed_by = None
    if public_key is not None:  # before trusting a byte of what the manifest says
        from inspection.edge.keys import verify_file

        signed_by = verify_file(manifest_path, folder / SIGNATURE, Path(public_key))
    _check_manifest_hash(manifest_path, raw)
    manifest = _parse_manifest(manifest_path, raw)
    files = manifest["files"]
    _check_files(folder, files)
    _check_unlisted(folder, files)
    return _describe(folder, manifest, raw, signed_by)


def _check_manifest_hash(path: Path, raw: bytes) -> None:
    """Refuse a manifest that differs from its recorded SHA-256: a flipped digit of a
    threshold is valid JSON, and without a key nothing else would notice. (A signature,
    not this hash, is what stops someone who rewrites both.)"""
    from inspection.export.runtime import recorded_hash

    try:
        digest = recorded_hash(path)
    except ModelError as exc:
        raise BundleError(str(exc)) from exc
    if digest is None:
        raise BundleError(f"{path.with_name(MANIFEST_HASH)}: missing; export the bundle again")
    if hashlib.sha256(raw).hexdigest() != digest:
        raise BundleError(
            f"{path}: SHA-256 differs from {MANIFEST_HASH} (tampered or corrupt); "
            "the bundle is not loaded"
        )


def _parse_manifest(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: not a bundle manifest (a JSON object is expected)")
    fmt = manifest.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(
            f"{path}: unknown bundle format {fmt!r} (this runtime reads {BUNDLE_FORMAT!r}); "
            "export the bundle again with this version, or upgrade the edge runtime"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{path}: lists no files")
    for name, entry in files.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise BundleError(f"{path}: no SHA-256 recorded for {name!r}")
    for key in ("model_version", "split", "thresholds"):
        if key not in manifest:
            raise BundleError(f"{path}: no {key!r}")
    if manifest["split"] not in SPLITS:
        raise BundleError(f"{path}: split {manifest['split']!r} is not one of {SPLITS}")
    return manifest


def _inside(folder: Path, name: str) -> Path:
    """The listed file's path, refused when it would leave the folder."""
    pure = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or pure.is_absolute()
        or any(part in ("..", "") for part in pure.parts)
        or name in _NOT_LISTED
    ):
        raise BundleError(
            f"{folder / MANIFEST}: lists {name!r}, a path outside the bundle folder "
            "(absolute, '..' or reserved); refused"
        )
    path = folder / pure
    # A symbolic link inside the folder could still point out of it.
    if not path.resolve().is_relative_to(folder.resolve()):
        raise BundleError(f"{path}: leads outside the bundle folder (a link); refused")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    problems = []
    for name, entry in files.items():
        path = _inside(folder, name)
        if not path.is_file():
            problems.append(f"{path}: missing (listed in {MANIFEST})")
        elif _sha256(path) != entry["sha256"].lower():
            problems.append(f"{path}: SHA-256 differs from {MANIFEST} (tampered or corrupt)")
    if problems:
        raise BundleError("; ".join(problems) + "; the bundle is not loaded")


def _check_unlisted(folder: Path, files: dict[str, Any]) -> None:
    listed = set(files) | _NOT_LISTED
    extra = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(folder).as_posix() not in listed
    )
    if extra:
        names = ", ".join(str(folder / n) for n in extra)
        raise BundleError(
            f"{names}: not listed in {MANIFEST} (extra file); the bundle is not loaded"
        )


def _check_second_look(path: Path, manifest: dict[str, Any]) -> None:
    """Refuse at load, not at the first part, a second-look level that is not a logit of
    0 or more (the box would otherwise start and fail on its detector)."""
    from inspection.models.fusion import second_look_logit

    level = (manifest.get("normality") or {}).get("second_look")
    if level is not None:
        try:
            second_look_logit(level, "normality second-look level")
        except ModelError as exc:
            raise BundleError(f"{path}: {exc}") from None


def _describe(folder: Path, manifest: dict[str, Any], raw: bytes, signed_by: str | None) -> Bundle:
    files = manifest["files"]
    manifest_path = folder / MANIFEST

    def listed(name: str, what: str) -> Path:
        if name not in files:
            raise BundleError(f"{manifest_path}: {what} {name!r} is not among the listed files")
        return folder / name

    graphs = manifest.get("graphs") or {}
    edge = listed(graphs.get("edge", EDGE_GRAPH), "edge graph")
    fusion_name = graphs.get("fusion")
    fusion = listed(fusion_name, "fusion graph") if fusion_name else None
    normality_name = graphs.get("normality")
    normality = listed(normality_name, "normality graph") if normality_name else None
    if manifest["split"] == "fused" and fusion is None:
        raise BundleError(f"{manifest_path}: split 'fused' needs a fusion graph; none listed")
    standards: dict[str, Path] = {}
    for standard_id, entry in (manifest.get("standards") or {}).items():
        standards[standard_id] = listed(entry.get("file", ""), f"standard {standard_id}")
    products = {str(k): str(v) for k, v in (manifest.get("products") or {}).items()}
    unknown = sorted(v for v in products.values() if v not in standards)
    if unknown:
        raise BundleError(f"{manifest_path}: products name unlisted standards {unknown}")
    _check_second_look(manifest_path, manifest)
    model_version = str(manifest["model_version"])
    return Bundle(
        path=folder,
        manifest=manifest,
        edge_graph=edge,
        fusion_graph=fusion,
        normality_graph=normality,
        normality_thresholds=(manifest.get("normality") or {}).get("thresholds"),
        standards=standards,
        product_standards=products,
        thresholds=dict(manifest["thresholds"]),
        model_version=model_version,
        calibration_version=manifest.get("calibration_version"),
        split=manifest["split"],
        signed_by=signed_by,
        version=f"{model_version}-{hashlib.sha256(raw).hexdigest()[:12]}",
    )
