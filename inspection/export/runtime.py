"""Run an exported edge graph with ONNX Runtime, torch-free (numpy, OpenCV, onnxruntime).

The edge box runs this: it imports no torch (a test enforces it). The ONNX file carries
the model config in its metadata, so preprocessing, the audio front end and the class
names come from the file itself. Its SHA-256 sits beside it in ``FILE.onnx.sha256``
(``sha256sum``'s format, so ``sha256sum -c`` checks it too), written by the export; the
detector refuses a graph that differs from it.

>>> detector = OnnxDetector("models/small.onnx")  # doctest: +SKIP
>>> det = detector.detect(read_image("part.png"), audio=clip)  # doctest: +SKIP
>>> det.part_score, det.anomaly_map.shape  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)

from inspection.errors import ModelError
from inspection.models.audio import fit_mel_frames
from inspection.models.card import check_files, sha256
from inspection.models.config import ModelConfig
from inspection.models.detector import TiledDetector
from inspection.models.outputs import Detection

# Whisper's log-mel of silence: fed to a graph with an audio branch when a part has no
# clip; the audio outputs are then dropped and the part logit is the image logit.
_SILENT_MEL = -1.5
HASH_SUFFIX = ".sha256"
# What ONNX Runtime raises for a file that is not a usable graph (not for a bug of ours).
_BAD_GRAPH = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile)
_REEXPORT = (
    "export it again with `inspection export` (it writes FILE.onnx.sha256 beside the "
    "graph), or run it unchecked with --no-verify (verify=False)"
)


def hash_file(graph: str | Path) -> Path:
    """Where a graph's SHA-256 is recorded: ``FILE.onnx.sha256`` beside it."""
    graph = Path(graph)
    return graph.with_name(graph.name + HASH_SUFFIX)


def record_hash(graph: str | Path, digest: str | None = None) -> str:
    """Record ``graph``'s SHA-256 in ``FILE.onnx.sha256`` (``sha256sum`` format).

    Written to a temporary file and renamed: a reader never sees half a record.

    Parameters
    ----------
    graph : str | Path
        The ``.onnx`` file.
    digest : str | None
        Its SHA-256 where known (a graph checked under another name and then moved);
        ``None`` hashes the file.

    Returns
    -------
    str
        The recorded SHA-256.
    """
    graph = Path(graph)
    digest = digest or sha256(graph)
    record = hash_file(graph)
    partial = record.with_name(f".{record.name}.partial")
    partial.write_text(f"{digest}  {graph.name}\n", encoding="utf-8")
    partial.replace(record)
    return digest


def recorded_hash(graph: str | Path) -> str | None:
    """The SHA-256 recorded for ``graph``, or ``None`` where there is no record.

    Raises
    ------
    ModelError
        A record that is not a ``sha256sum`` line.
    """
    record = hash_file(graph)
    if not record.is_file():
        return None
    try:
        fields = record.read_text(encoding="utf-8").split()
    except UnicodeDecodeError as exc:
        raise ModelError(f"{record}: not a SHA-256 record ({exc})") from exc
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise ModelError(f"{record}: not a SHA-256 record (`sha256sum` format expected)")
    return fields[0].lower()


def verify_graph(graph: str | Path) -> None:
    """Refuse a graph whose SHA-256 differs from ``FILE.onnx.sha256``, or has no record.

    Raises
    ------
    ModelError
        Naming the file and the problem.
    """
    graph = Path(graph)
    digest = recorded_hash(graph)
    if digest is None:
        raise ModelError(
            f"{graph}: no recorded SHA-256 to verify it against ({hash_file(graph).name} "
            f"is missing); {_REEXPORT}"
        )
    check_files(graph.parent, {graph.name: digest}, hash_file(graph).name, hint=_REEXPORT)


def open_session(
    path: Path, providers: list[str] | None = None, threads: int | None = None, spin: bool = True
) -> ort.InferenceSession:
    """An ONNX Runtime session on ``path`` (CPU unless ``providers`` says otherwise).

    Raises
    ------
    ModelError
        A file ONNX Runtime cannot read as a graph, naming it.
    """
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )
    except _BAD_GRAPH as exc:
        raise ModelError(f"{path}: not a readable ONNX graph ({exc})") from exc


class OnnxDetector(TiledDetector):
    """The edge graph under ONNX Runtime.

    :meth:`detect` (from :class:`~inspection.models.detector.TiledDetector`) takes one
    full image and its optional clip; :meth:`run` one batch of model inputs.

    Parameters
    ----------
    path : str | Path
        ``.onnx`` file written by :func:`inspection.export.onnx.export_onnx`.
    providers : list[str] | None
        Execution providers; default CPU (TensorRT / CUDA where the box has them).
    threads : int | None
        Intra-op threads; ``None`` lets ONNX Runtime decide.
    batch_size : int
        Tiles per run in :meth:`detect`.
    spin : bool
        Let ONNX Runtime's threads spin between runs (its default, fastest when the box
        runs nothing else); ``False`` frees the cores as soon as a run ends, for a box
        whose cores other work shares (``benchmarks/edge_threads.py`` measures both).
    verify : bool
        Check the file against its recorded SHA-256 (``FILE.onnx.sha256``) before the
        session is made; ``False`` only for development.

    Attributes
    ----------
    config : ModelConfig
        The exported model's config (from the file's metadata).
    version : str
        The checkpoint's ``model_version`` (``"unsaved"`` for a model never saved).
    metadata : dict
        The checkpoint's extra metadata (e.g. thresholds), as exported.

    Raises
    ------
    ModelError
        A missing file, one that differs from its recorded SHA-256 (or has none), or one
        that is not an exported edge graph.
    """

    def __init__(
        self,
        path: str | Path,
        providers: list[str] | None = None,
        threads: int | None = None,
        batch_size: int = 8,
        spin: bool = True,
        verify: bool = True,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such ONNX file")
        if verify:
            verify_graph(self.path)
        self.session = open_session(self.path, providers, threads, spin)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "config" not in meta or "grid" not in meta:
            raise ModelError(f"{self.path}: no model config in the ONNX metadata; re-export it")
        try:
            self.config = ModelConfig.from_dict(json.loads(meta["config"]))
            self.grid: tuple[int, int] = tuple(json.loads(meta["grid"]))
            self.metadata: dict[str, Any] = json.loads(meta.get("extra") or "{}")
        except (TypeError, ValueError) as exc:  # not JSON, or fields ModelConfig refuses
            raise ModelError(f"{self.path}: unusable model metadata ({exc}); re-export it") from exc
        self.version = meta.get("model_version") or "unsaved"
        self.batch_size = batch_size
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.with_audio = "mel" in self.inputs

    def run(
        self,
        images: np.ndarray,
        mel: np.ndarray | None = None,
        frame_shape: np.ndarray | None = None,
    ) -> Detection:
        """Run one batch of model inputs.

        Parameters
        ----------
        images : np.ndarray
            ``(B, C, S, S)`` float32, normalised (:func:`~inspection.models.preprocess.preprocess`).
        mel : np.ndarray | None
            ``(B, n_mels, F)``, or ``(n_mels, F)`` for the whole batch; frames are cropped
            or padded. ``None``: no audio (part logit = image logit).
        frame_shape : np.ndarray | None
            ``(B, 2)`` each input's frame height and width, fed to a graph that takes it (a
            normality model with shape families); a graph that does not ignores it.

        Raises
        ------
        ValueError
            Audio given to a graph exported without the audio branch (dropping it could
            pass a part whose crack is audible only).
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        feeds = {"image": images}
        if "frame_shape" in self.inputs:
            if frame_shape is None:
                raise ValueError(f"{self.path} chooses by the frame's shape; none was given")
            feeds["frame_shape"] = np.ascontiguousarray(frame_shape, dtype=np.float32)
        if mel is not None and not self.with_audio:
            raise ValueError(f"{self.path} was exported without audio; cannot use the clip")
        if self.with_audio:
            feeds["mel"] = self._mel_batch(mel, len(images))
        values = dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))
        detection = Detection(
            maps=values["maps"],
            image_logit=values["image_logit"],
            class_logits=values["class_logits"],
            audio_logit=values.get("audio_logit"),
            part_logit=values["part_logit"],
            patch_tokens=values["patch_tokens"],
            audio_tokens=values.get("audio_tokens"),
            grid=self.grid,
            classes=self.config.classes,
        )
        return detection.without_audio() if mel is None else detection

    def _mel_batch(self, mel: np.ndarray | None, batch: int) -> np.ndarray:
        shape = (batch, self.config.n_mels, self.config.n_audio_frames)
        if mel is None:
            return np.full(shape, _SILENT_MEL, dtype=np.float32)
        mel = fit_mel_frames(np.asarray(mel, dtype=np.float32), self.config.n_audio_frames)
        return np.ascontiguousarray(np.broadcast_to(mel, shape), dtype=np.float32)
