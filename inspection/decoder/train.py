"""Training the report decoder: fusion + projector + LM, or a LoRA adapter on a new standard.

Examples are generated, not read: each step draws its batch from a generator seeded
by ``(seed, step)`` over the given standards and freshly generated ones (see
:mod:`inspection.decoder.corpus`), so a run is deterministic and ``--resume`` after an
interruption continues the same sequence. Targets are written by the rule engine.

The fused tokens come from random detection features of the right shapes: the report
is fully determined by the prompt (the measured defects and the standard), and the
resampler and projector are trained end to end so that real payloads pass through
them unchanged.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from inspection.decoder.corpus import Example, generate_examples, shipped_standards
from inspection.decoder.lora import LoraOptions, add_adapter, load_adapter, save_adapter
from inspection.decoder.model import ReportDecoder
from inspection.errors import UserError
from inspection.standards import Standard, load_standard
from inspection.train.schedule import DeadlinePlan, run_problems, set_lr

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
_FEATURE_GRID = 8  # patch grid of the random detection features (8 x 8 tokens)
_AUDIO_TOKENS = 25


@dataclass(frozen=True)
class DecoderTrainOptions:
    """What ``inspection decoder train`` and ``inspection adapters train`` take.

    Attributes
    ----------
    out : Path
        The decoder directory written (or, with ``adapter``, the adapter's directory).
    config : str
        Decoder config for a new decoder (``tiny``, ``small``).
    init : Path | None
        Start from this trained decoder instead of a new one.
    standards : tuple[Path, ...]
        Standards to train on; empty: the shipped ones.
    generated_fraction : float
        Share of examples under freshly generated standards (0 to train on ``standards``
        alone, as a fine-tune to one product does).
    question_fraction : float
        Share of examples that are questions (``inspection ask``) rather than reports.
    unmeasured_fraction : float
        Share of parts redrawn until a clause needs an unmeasured value (see
        :func:`inspection.decoder.corpus.generate_examples`).
    adapter : str | None
        Train only a LoRA adapter of this name on ``init`` (which is required).
    """

    out: Path
    config: str = "small"
    init: Path | None = None
    standards: tuple[Path, ...] = ()
    generated_fraction: float = 0.7
    question_fraction: float = 0.15
    unmeasured_fraction: float = 0.0
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    max_minutes: float | None = None
    seed: int = 0
    device: str = "cpu"
    adapter: str | None = None
    lora: LoraOptions = field(default_factory=LoraOptions)
    checkpoint_every: int = 100
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        problems = run_problems(self.steps, self.batch_size, self.lr, self.max_minutes)
        if problems:
            raise UserError("; ".join(problems))


@dataclass(frozen=True)
class DecoderTrainResult:
    out: Path
    steps: int
    seconds: float
    examples_per_second: float
    tokens_per_second: float
    final_loss: float
    trainable_parameters: int
    stopped_by_deadline: bool


def train_decoder(options: DecoderTrainOptions) -> DecoderTrainResult:
    """Train a decoder (or an adapter on one) and save it to ``options.out``."""
    started = time.monotonic()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(options.device)
    model = _model(options).to(device)
    standards = _standards(options)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    step, elapsed0, planned = _restore(model, optimizer, options, device)
    deadline = None if options.max_minutes is None else options.max_minutes * 60 - elapsed0
    plan = DeadlinePlan(options.steps, deadline, step, started, planned)
    bar = tqdm(
        total=plan.total,
        initial=step,
        desc="decoder" if options.adapter is None else f"adapter {options.adapter}",
        unit="step",
        disable=not options.progress,
        mininterval=5.0,
        dynamic_ncols=True,
    )
    losses: list[float] = []
    tokens, first_step, stopped = 0, step, False
    model.train()
    with (out / LOG_FILE).open("a", encoding="utf-8") as log:
        while step < options.steps:
            now = time.monotonic()
            if plan.expired(now):
                stopped = True
                break
            if plan.update(step, now):
                bar.total = plan.total  # the bar shows the steps the deadline allows
                bar.refresh()
            set_lr(optimizer, options.lr, step, plan.total)
            examples = batch_examples(options, standards, step)
            loss, n_tokens = _loss(model, examples, options.seed, step, device)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            tokens += n_tokens
            losses.append(loss.item())
            log.write(json.dumps({"step": step, "loss": losses[-1]}) + "\n")
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            bar.update(1)
            if step % options.checkpoint_every == 0:
                elapsed = elapsed0 + time.monotonic() - started
                _save(model, optimizer, options, step, elapsed, plan.planned)
    bar.close()
    seconds = time.monotonic() - started
    _save(model, optimizer, options, step, elapsed0 + seconds, plan.planned)
    done = step - first_step
    return DecoderTrainResult(
        out=out,
        steps=step,
        seconds=seconds,
        examples_per_second=done * options.batch_size / max(seconds, 1e-9),
        tokens_per_second=tokens / max(seconds, 1e-9),
        final_loss=float(np.mean(losses[-20:])) if losses else math.nan,
        trainable_parameters=sum(p.numel() for p in params),
        stopped_by_deadline=stopped,
    )


def batch_examples(
    options: DecoderTrainOptions, standards: list[Standard], step: int
) -> list[Example]:
    """The examples of one step: a function of ``(seed, step)`` alone."""
    rng = np.random.default_rng([options.seed, step])
    return list(
        generate_examples(
            rng,
            options.batch_size,
            standards,
            options.generated_fraction,
            question_fraction=options.question_fraction,
            unmeasured_fraction=options.unmeasured_fraction,
        )
    )


def random_fused_inputs(
    model: ReportDecoder, batch: int, seed: int, step: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random detection features ``(patches, maps, audio)`` of the decoder's input widths."""
    g = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, step]).generate_state(1)[0])
    )
    cfg = model.config.fusion
    patches = torch.randn(batch, _FEATURE_GRID**2, cfg.image_dim, generator=g)  # (B, P, Ci)
    maps = torch.rand(batch, cfg.map_channels, 4 * _FEATURE_GRID, 4 * _FEATURE_GRID, generator=g)
    audio = torch.randn(batch, _AUDIO_TOKENS, cfg.audio_dim, generator=g)  # (B, A, Ca)
    return patches, maps, audio


def _loss(
    model: ReportDecoder, examples: list[Example], seed: int, step: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    patches, maps, audio = (
        t.to(device) for t in random_fused_inputs(model, len(examples), seed, step)
    )
    fused = model.fuse(patches, maps, audio)  # (B, N, D)
    prompts = model.encode([e.prompt for e in examples])
    pairs = [free_token_weights(model.tokenizer, e.target) for e in examples]
    targets, weights = [t for t, _ in pairs], [w for _, w in pairs]
    n_tokens = sum(len(p) + len(t) for p, t in zip(prompts, targets, strict=True))
    return model(fused, prompts, targets, weights), n_tokens


# Values the grammar leaves to the decoder; everything else in a report is pinned to the
# part (class, zone, size, evidence) or is JSON punctuation.
_FREE_VALUE = re.compile(r'"(severity|clause_id|action|verdict|summary|answer)": (null|"[^"]*")')
PINNED_WEIGHT = 0.05  # kept above 0 so that the LM still learns the report's form


def free_token_weights(tokenizer, target: str) -> tuple[list[int], list[float]]:
    """Token ids of a target and a loss weight each: 1 on the values the grammar leaves
    free (severity, clause, action, verdict, summary, answer), ``PINNED_WEIGHT`` elsewhere.

    The grammar writes the pinned tokens at run time whatever the LM predicts, so the
    gradient goes where the decoder's choices are.
    """
    encoded = tokenizer(target, add_special_tokens=False, return_offsets_mapping=True)
    spans = [m.span(2) for m in _FREE_VALUE.finditer(target)]
    weights = [
        1.0 if any(a < end and start < b for start, end in spans) else PINNED_WEIGHT
        for a, b in encoded["offset_mapping"]
    ]
    return encoded["input_ids"], weights


def _model(options: DecoderTrainOptions) -> ReportDecoder:
    if options.adapter is None:
        if options.resume and (Path(options.out) / STATE_FILE).exists():
            return ReportDecoder.load(options.out)
        if options.init is not None:
            return ReportDecoder.load(options.init)
        return ReportDecoder.create(options.config, seed=options.seed)
    if options.init is None:
        raise ValueError("an adapter is trained on a trained decoder: give --init DECODER")
    model = ReportDecoder.load(options.init)
    for p in model.parameters():
        p.requires_grad_(False)  # only the adapter learns; the base is shared
    state = Path(options.out) / "adapter_config.json"
    if options.resume and state.exists():
        load_adapter(model, options.out, options.adapter)
        for name, p in model.lm.named_parameters():
            p.requires_grad_("lora_" in name)
    else:
        add_adapter(model, options.adapter, options.lora)
    return model


def _standards(options: DecoderTrainOptions) -> list[Standard]:
    if options.standards:
        return [load_standard(p) for p in options.standards]
    return shipped_standards()


def _save(
    model: ReportDecoder,
    optimizer: torch.optim.Optimizer,
    options: DecoderTrainOptions,
    step: int,
    elapsed: float,
    planned: int | None,
) -> None:
    out = Path(options.out)
    if options.adapter is None:
        model.save(out)
    else:
        save_adapter(model, options.adapter, out / "_peft")
        _flatten_adapter(out / "_peft", options.adapter, out)
    state = {
        "optimizer": optimizer.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "planned_steps": planned,
        "options": {k: str(v) for k, v in asdict(options).items()},
    }
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / STATE_FILE)  # atomic: an interrupted save never leaves a torn state


def _flatten_adapter(saved: Path, name: str, out: Path) -> None:
    # peft writes a named adapter under saved/name; keep one flat directory per adapter.
    source = saved if name == "default" else saved / name
    for f in source.iterdir():
        f.replace(out / f.name)
    for d in sorted(saved.rglob("*"), reverse=True):
        d.rmdir() if d.is_dir() else d.unlink()
    saved.rmdir()


def _restore(
    model: ReportDecoder,
    optimizer: torch.optim.Optimizer,
    options: DecoderTrainOptions,
    device: torch.device,
) -> tuple[int, float, int | None]:
    # The weights (decoder or adapter) were restored by _model; here the optimizer.
    state_file = Path(options.out) / STATE_FILE
    if not options.resume:
        return 0, 0.0, None
    if not state_file.exists():
        raise FileNotFoundError(f"--resume: no {STATE_FILE} in {options.out}")
    state = torch.load(state_file, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), float(state["elapsed"]), state.get("planned_steps")
