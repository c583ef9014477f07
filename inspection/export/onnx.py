"""Export the edge graph to ONNX: image encoder + heads, audio encoder + head, fusion.

One self-contained ``.onnx`` file (``external_data=False``: no ``.onnx.data`` sidecar to
lose on the way to a device) with a dynamic batch. The model's config (class names
included), patch grid, ``model_version`` and the checkpoint's extra metadata go into the
file's metadata, so the torch-free runner (:mod:`inspection.export.runtime`) needs
nothing else to run it; it checks it against ``FILE.onnx.sha256``, the file's SHA-256
written beside it (``sha256sum`` format) and shipped with it.

Inputs: ``image (B, C, S, S)`` and, with audio, ``mel (B, n_mels, 2 * n_audio_ctx)``.
Outputs: ``maps, image_logit, class_logits, [audio_logit,] part_logit, patch_tokens,
[audio_tokens]``, the fields of :class:`~inspection.models.model.DetectionOutput`.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from inspection.errors import UserError
from inspection.export.runtime import record_hash
from inspection.models.model import DefectModel

IMAGE_OUTPUTS = ("maps", "image_logit", "class_logits", "part_logit", "patch_tokens")
AUDIO_OUTPUTS = (
    "maps",
    "image_logit",
    "class_logits",
    "audio_logit",
    "part_logit",
    "patch_tokens",
    "audio_tokens",
)
# Largest |onnx - torch| accepted on any output: float32 reassociation leaves about 1e-5.
PARITY_TOLERANCE = 1e-3
# torch.export specialises a dimension whose example size is 0 or 1 to a constant, so the
# example batch must be 2 or more for the batch to stay dynamic.
_EXAMPLE_BATCH = 2


class EdgeGraph(nn.Module):
    """``DefectModel`` with a flat tuple of tensors as output, as ONNX wants."""

    def __init__(self, model: DefectModel, with_audio: bool):
        super().__init__()
        self.model = model
        self.with_audio = with_audio

    def forward(self, image: Tensor, mel: Tensor | None = None) -> tuple[Tensor, ...]:
        out = self.model(image, mel if self.with_audio else None)
        if not self.with_audio:
            return out.maps, out.image_logit, out.class_logits, out.part_logit, out.patch_tokens
        return (
            out.maps,
            out.image_logit,
            out.class_logits,
            out.audio_logit,
            out.part_logit,
            out.patch_tokens,
            out.audio_tokens,
        )


class ShapeFamilyGraph(EdgeGraph):
    """A normality model with shape families: the frame's height and width are a second
    input, which chooses each input's statistics (``config.shape_clusters``)."""

    def forward(self, image: Tensor, frame_shape: Tensor) -> tuple[Tensor, ...]:
        out = self.model(image, None, frame_shape)
        return out.maps, out.image_logit, out.class_logits, out.part_logit, out.patch_tokens


def export_onnx(
    model: DefectModel,
    path: str | Path,
    with_audio: bool = True,
    opset: int | None = None,
) -> Path:
    """Export ``model``'s edge graph to a single ONNX file with a dynamic batch.

    Parameters
    ----------
    model : DefectModel
        Exported as a float32 CPU copy in eval mode (``model`` itself is not changed).
    path : str | Path
        Output ``.onnx`` file (parent directories are created).
    with_audio : bool
        Include the audio encoder, head and fusion (input ``mel``). Without, the graph
        takes only ``image`` and ``part_logit == image_logit``.
    opset : int | None
        ONNX opset; ``None`` takes the exporter's default.

    Returns
    -------
    Path
        The written file; its SHA-256 is recorded in ``FILE.onnx.sha256`` beside it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    # Export a copy: the caller's model may be training, on a GPU, or in half precision.
    model = copy.deepcopy(model).eval().float().cpu()
    shaped = config.shape_clusters > 1
    graph = (ShapeFamilyGraph if shaped else EdgeGraph)(model, with_audio).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    size = (_EXAMPLE_BATCH, config.in_chans, config.image_size, config.image_size)
    args: tuple[Tensor, ...] = (torch.zeros(size),)
    dynamic: dict[str, dict[int, object]] = {"image": {0: batch}}
    inputs = ["image"]
    if shaped:  # the frame's (height, width) before the squash
        args += (torch.full((_EXAMPLE_BATCH, 2), float(config.image_size)),)
        dynamic["frame_shape"] = {0: batch}
        inputs.append("frame_shape")
    elif with_audio:
        args += (torch.zeros(_EXAMPLE_BATCH, config.n_mels, config.n_audio_frames),)
        dynamic["mel"] = {0: batch}
        inputs.append("mel")
    with torch.no_grad(), warnings.catch_warnings():
        # image and mel share the one batch Dim on purpose; the exporter warns about it.
        warnings.filterwarnings("ignore", message=".*The axis name: batch will not be used")
        grid = model(args[0], None, *args[1:2] if shaped else ()).grid
        torch.onnx.export(
            graph,
            args,
            str(path),
            input_names=inputs,
            output_names=list(AUDIO_OUTPUTS if with_audio else IMAGE_OUTPUTS),
            dynamic_shapes=dynamic,
            opset_version=opset,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    _write_metadata(path, model, grid, with_audio, opset)
    record_hash(path)
    return path


def _write_metadata(
    path: Path, model: DefectModel, grid: tuple[int, int], with_audio: bool, opset: int | None
) -> None:
    proto = onnx.load(str(path))
    written = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        # The exporter falls back to its own opset when it cannot convert, and says so
        # only in a log line: an edge runtime limited to the asked opset would refuse it.
        path.unlink()
        raise UserError(
            f"--opset {opset}: the exporter cannot write this model at opset {opset} "
            f"(it wrote {written}); nothing was written"
        )
    meta = {
        "format": "inspection.edge-graph/1",
        "config": json.dumps(model.config.to_dict()),
        "grid": json.dumps(list(grid)),
        "with_audio": json.dumps(with_audio),
        "model_version": model.model_version or "",
        "extra": json.dumps(model.metadata),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    store_exact_constants_in_half(proto.graph)
    onnx.save(proto, str(path))


HALF_STORAGE_MIN_ELEMENTS = 1 << 16  # smaller constants are not worth a Cast node


def store_exact_constants_in_half(graph: onnx.GraphProto) -> list[str]:
    """Store each large float32 constant whose values float16 holds exactly (a normality
    model's rounded statistics) as float16, cast back to float32 in the graph: the file
    shrinks by half, the outputs are unchanged, and ONNX Runtime folds the cast when it
    loads the graph. Returns the constants' names."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph_inputs = {i.name for i in graph.input}
    stored, casts = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in graph_inputs:
            continue
        values = numpy_helper.to_array(init)
        if values.size < HALF_STORAGE_MIN_ELEMENTS:
            continue
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__float16"))
        casts.append(helper.make_node("Cast", [init.name], [name], to=TensorProto.FLOAT))
        stored.append(name)
    for node in reversed(casts):  # first in the graph: every consumer comes after
        graph.node.insert(0, node)
    return stored


@dataclass(frozen=True)
class ParityReport:
    """How far an exported graph's outputs are from the torch model's on the same inputs.

    Attributes
    ----------
    max_abs_diff : dict[str, float]
        Largest absolute difference per output.
    batch : int
        Inputs compared (random tiles, and random log-mel when the graph takes audio).
    tolerance : float
        The bound :attr:`ok` checks.
    """

    max_abs_diff: dict[str, float]
    batch: int
    tolerance: float = PARITY_TOLERANCE

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())

    @property
    def ok(self) -> bool:
        return self.worst <= self.tolerance


def check_parity(
    model: DefectModel, path: str | Path, batch: int = 2, seed: int = 0
) -> ParityReport:
    """Run ``model`` and the exported graph at ``path`` (ONNX Runtime, CPU) on the same
    random inputs and compare every output.

    Parameters
    ----------
    model : DefectModel
        The model the graph was exported from (a float32 CPU copy is run).
    path : str | Path
        The ``.onnx`` file.
    batch : int
        Inputs per comparison; more than 1 also checks that the batch stayed dynamic.
    seed : int
        Seed of the random inputs.
    """
    from inspection.export.runtime import OnnxDetector

    detector = OnnxDetector(path)
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    size = (batch, config.in_chans, config.image_size, config.image_size)
    image = torch.randn(size, generator=generator)
    mel = None
    if "mel" in detector.inputs:
        mel = torch.randn(batch, config.n_mels, config.n_audio_frames, generator=generator)
    frame = None
    if "frame_shape" in detector.inputs:  # one frame of each family's typical shape, in turn
        centres = model.shape_centroids.exp()  # (C, 2)
        frame = centres[torch.arange(batch) % len(centres)]  # (B, 2)
    model = copy.deepcopy(model).eval().float().cpu()
    with torch.no_grad():
        expected = model(image, mel) if frame is None else model(image, None, frame)
    mel_in, frame_in = (None if x is None else x.numpy() for x in (mel, frame))
    got = detector.run(image.numpy(), mel_in, frame_in)
    names = AUDIO_OUTPUTS if mel is not None else IMAGE_OUTPUTS
    diffs = {
        name: float((torch.from_numpy(getattr(got, name)) - getattr(expected, name)).abs().max())
        for name in names
    }
    return ParityReport(max_abs_diff=diffs, batch=batch)
