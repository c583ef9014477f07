"""Export the edge graph to ONNX: image encoder + heads, audio encoder + head, fusion.

One self-contained ``.onnx`` file (``external_data=False``: no ``.onnx.data`` sidecar to
lose on the way to a device) with a dynamic batch. The model's config (class names
included), patch grid, ``model_version`` and the checkpoint's extra metadata go into the
file's metadata, so the torch-free runner (:mod:`inspection.export.runtime`) needs
nothing else.

Inputs: ``image (B, C, S, S)`` and, with audio, ``mel (B, n_mels, 2 * n_audio_ctx)``.
Outputs: ``maps, image_logit, class_logits, [audio_logit,] part_logit, patch_tokens,
[audio_tokens]``, the fields of :class:`~inspection.models.model.DetectionOutput`.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

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
        The written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config
    # Export a copy: the caller's model may be training, on a GPU, or in half precision.
    model = copy.deepcopy(model).eval().float().cpu()
    graph = EdgeGraph(model, with_audio).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    size = (_EXAMPLE_BATCH, config.in_chans, config.image_size, config.image_size)
    args: tuple[Tensor, ...] = (torch.zeros(size),)
    dynamic: dict[str, dict[int, object]] = {"image": {0: batch}}
    inputs = ["image"]
    if with_audio:
        args += (torch.zeros(_EXAMPLE_BATCH, config.n_mels, config.n_audio_frames),)
        dynamic["mel"] = {0: batch}
        inputs.append("mel")
    with torch.no_grad(), warnings.catch_warnings():
        # image and mel share the one batch Dim on purpose; the exporter warns about it.
        warnings.filterwarnings("ignore", message=".*The axis name: batch will not be used")
        grid = model(*args[:1]).grid
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
    _write_metadata(path, model, grid, with_audio)
    return path


def _write_metadata(
    path: Path, model: DefectModel, grid: tuple[int, int], with_audio: bool
) -> None:
    proto = onnx.load(str(path))
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
    onnx.save(proto, str(path))
