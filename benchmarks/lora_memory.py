"""Peak training memory of LoRA against full fine-tuning of a causal LM, on CPU.

python benchmarks/lora_memory.py                       # Qwen2.5-0.5B shape, batch 1 x 256
python benchmarks/lora_memory.py --model small         # this project's small report decoder
python benchmarks/lora_memory.py --gradient-checkpointing  # both modes recompute activations
python benchmarks/lora_memory.py --steps 1 --seq-len 512 --json /tmp/lora_memory.json

What is measured: the peak resident set size (``ru_maxrss``) of a process that builds the
model in float32 on CPU and runs a few AdamW training steps on one random token batch,
once with every parameter trainable (``full``) and once with peft LoRA adapters
(r 8, alpha 16, on q/k/v/o projections) as the only trainable, optimised parameters
(``lora``). Both modes use the same batch, sequence length, steps and dtype, the same
attention implementation (sdpa), no KV cache, and gradient checkpointing either off in
both (the default) or on in both (``--gradient-checkpointing``, the usual setting when
memory is what limits training), so the difference is what LoRA saves: the gradients
and the two AdamW moments of the frozen weights.

``qwen2.5-0.5b`` is Qwen2.5-0.5B's published config (494 M parameters, 151,936-token tied
embedding) built with random weights: memory does not depend on weight values, and nothing
is downloaded. ``small`` is the project's own report decoder LM (models/decoder/small.yaml,
a 4-layer Llama), where activations dominate and LoRA saves little.

Each mode runs in a fresh Python subprocess of this script (``--worker MODE``) because
``ru_maxrss`` is the process's high-water mark: it never goes down, so a second model
measured in the same process would report the larger of the two peaks. The worker also
reports its baseline (``ru_maxrss`` right after the imports, before the model is built),
so "peak minus baseline" is the memory the model and its training took.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from peft import LoraConfig, TaskType, get_peft_model
from rich.console import Console
from rich.table import Table
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL_YAML = ROOT / "models" / "decoder" / "small.yaml"
MODES = ("full", "lora")
MODELS = ("qwen2.5-0.5b", "small")
ATTENTION = "sdpa"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
GIB = 1024**3
MARKDOWN_COLUMNS = (
    "model (params) | batch x seq, steps | full peak GiB | LoRA peak GiB | ratio | "
    "full above baseline GiB | LoRA above baseline GiB | ratio | full s/step | LoRA s/step"
)

# Qwen2.5-0.5B's published config.json, the fields that set the shapes.
QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}


def peak_rss_kib() -> int:
    """The process's peak resident set size so far.

    Returns
    -------
    int
        ``ru_maxrss`` of this process, in KiB (its unit on Linux).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def model_config(name: str) -> PretrainedConfig:
    """The transformers config of the model to measure.

    Parameters
    ----------
    name : str
        ``qwen2.5-0.5b`` or ``small`` (models/decoder/small.yaml's ``lm`` section).

    Returns
    -------
    PretrainedConfig
        A ``Qwen2Config`` or ``LlamaConfig``, sdpa attention, no KV cache.
    """
    common = {"attn_implementation": ATTENTION, "use_cache": False}
    if name == "qwen2.5-0.5b":
        return Qwen2Config(**QWEN25_05B, **common)
    data = yaml.safe_load(SMALL_YAML.read_text(encoding="utf-8"))
    return LlamaConfig(
        **data["lm"], vocab_size=data["vocab_size"], tie_word_embeddings=True, **common
    )


def build_model(name: str) -> PreTrainedModel:
    """The causal LM with random weights, in float32, in training mode.

    Parameters
    ----------
    name : str
        One of ``MODELS``.

    Returns
    -------
    PreTrainedModel
        ``Qwen2ForCausalLM`` or ``LlamaForCausalLM``.
    """
    config = model_config(name)
    cls = Qwen2ForCausalLM if name == "qwen2.5-0.5b" else LlamaForCausalLM
    model = cls(config).to(torch.float32)
    model.train()
    return model


def add_lora(model: PreTrainedModel) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters; the base weights are frozen.

    Parameters
    ----------
    model : PreTrainedModel
        The causal LM.

    Returns
    -------
    torch.nn.Module
        The peft model; only the LoRA matrices require gradients.
    """
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16, target_modules=LORA_TARGETS
    )
    return get_peft_model(model, config)


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """Trainable and total parameters (tied weights counted once).

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    tuple of int
        ``(trainable, total)``.
    """
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def train(model: torch.nn.Module, tokens: torch.Tensor, steps: int) -> list[float]:
    """Run AdamW steps on the trainable parameters, the batch as its own labels.

    Parameters
    ----------
    model : torch.nn.Module
        The causal LM (plain or peft-wrapped).
    tokens : torch.Tensor
        Token ids, shape ``(batch, seq_len)``.
    steps : int
        Optimiser steps.

    Returns
    -------
    list of float
        Seconds each step took (forward, backward, optimiser step).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def worker(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build, train and measure one mode in this (fresh) process.

    Parameters
    ----------
    mode : str
        ``full`` or ``lora``.
    args : argparse.Namespace
        The command-line options (model, batch, seq_len, steps, seed).

    Returns
    -------
    dict
        Peak and baseline RSS (KiB), parameter counts and seconds per step.
    """
    # peft calls a transformers API that warns it is deprecated; harmless here.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
    baseline = peak_rss_kib()
    torch.manual_seed(args.seed)
    model = build_model(args.model)
    after_build = peak_rss_kib()
    if args.gradient_checkpointing:  # recompute activations in the backward pass (both modes)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if mode == "lora":
        model = add_lora(model)
    trainable, total = count_params(model)
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (args.batch, args.seq_len))
    times = train(model, tokens, args.steps)
    return {
        "mode": mode,
        "peak_rss_kib": peak_rss_kib(),
        "baseline_rss_kib": baseline,
        "after_build_rss_kib": after_build,
        "trainable_params": trainable,
        "total_params": total,
        "step_seconds": times,
        "seconds_per_step": sum(times) / len(times),
        "best_seconds_per_step": min(times),
        "dtype": str(next(model.parameters()).dtype),
        "torch_threads": torch.get_num_threads(),
    }


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode in a fresh subprocess of this script and parse its JSON.

    Parameters
    ----------
    mode : str
        ``full`` or ``lora``.
    args : argparse.Namespace
        The command-line options, passed on to the worker.

    Returns
    -------
    dict
        The worker's result (see ``worker``).
    """
    cmd = [sys.executable, __file__, "--worker", mode, "--model", args.model]
    cmd += ["--seq-len", str(args.seq_len), "--batch", str(args.batch)]
    cmd += ["--steps", str(args.steps), "--seed", str(args.seed)]
    cmd += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gib(kib: int) -> float:
    """KiB to GiB."""
    return kib * 1024 / GIB


def summarise(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """LoRA/full ratios of peak RSS, of peak minus baseline, and of time per step.

    Parameters
    ----------
    results : dict
        Worker results by mode.

    Returns
    -------
    dict
        ``peak``, ``above_baseline``, ``trainable``, ``step_time`` (mean) and
        ``best_step_time`` ratios.
    """
    full, lora = results["full"], results["lora"]

    def above(r: dict[str, Any]) -> int:
        return r["peak_rss_kib"] - r["baseline_rss_kib"]

    return {
        "peak": lora["peak_rss_kib"] / full["peak_rss_kib"],
        "above_baseline": above(lora) / above(full),
        "trainable": lora["trainable_params"] / full["trainable_params"],
        "step_time": lora["seconds_per_step"] / full["seconds_per_step"],
        "best_step_time": lora["best_seconds_per_step"] / full["best_seconds_per_step"],
    }


def settings_line(args: argparse.Namespace) -> str:
    """One line saying what both modes share."""
    return (
        f"{args.model}, float32, CPU, AdamW, batch {args.batch} x seq {args.seq_len}, "
        f"{args.steps} step(s), {ATTENTION} attention, no KV cache, "
        f"{'' if args.gradient_checkpointing else 'no '}gradient checkpointing (either mode); "
        "LoRA r 8, alpha 16, q/k/v/o_proj"
    )


def print_table(results: dict[str, dict[str, Any]], ratios: dict[str, float]) -> None:
    """Print both modes and the LoRA/full ratios as a rich table.

    Parameters
    ----------
    results : dict
        Worker results by mode.
    ratios : dict
        From ``summarise``.
    """
    table = Table(title="Peak training memory (ru_maxrss, fresh process per mode)")
    for col in ("mode", "peak RSS GiB", "peak - baseline GiB", "after build GiB"):
        table.add_column(col, justify="right")
    for col in ("trainable params", "total params", "s/step", "best s/step"):
        table.add_column(col, justify="right")
    for mode, r in results.items():
        table.add_row(
            mode,
            f"{gib(r['peak_rss_kib']):.2f}",
            f"{gib(r['peak_rss_kib'] - r['baseline_rss_kib']):.2f}",
            f"{gib(r['after_build_rss_kib']):.2f}",
            f"{r['trainable_params']:,}",
            f"{r['total_params']:,}",
            f"{r['seconds_per_step']:.2f}",
            f"{r['best_seconds_per_step']:.2f}",
        )
    table.add_row(
        "LoRA / full",
        f"{ratios['peak']:.3f}",
        f"{ratios['above_baseline']:.3f}",
        "",
        f"{ratios['trainable']:.5f}",
        "",
        f"{ratios['step_time']:.2f}",
        f"{ratios['best_step_time']:.2f}",
        style="bold",
    )
    console = Console()
    if console.width < 130:  # a pipe or a narrow terminal: do not squeeze the columns
        console = Console(width=130)
    console.print(table)


def markdown_row(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    """One markdown table row for benchmarks/README.md, columns ``MARKDOWN_COLUMNS``.

    Parameters
    ----------
    args : argparse.Namespace
        The command-line options.
    results : dict
        Worker results by mode.

    Returns
    -------
    str
        ``| cell | ... |``.
    """
    full, lora = results["full"], results["lora"]
    ratios = summarise(results)
    cells = [
        f"{args.model} ({full['total_params'] / 1e6:.1f} M)",
        f"{args.batch} x {args.seq_len}, {args.steps} step{'s' * (args.steps != 1)}",
        f"{gib(full['peak_rss_kib']):.2f}",
        f"{gib(lora['peak_rss_kib']):.2f}",
        f"{ratios['peak']:.2f}",
        f"{gib(full['peak_rss_kib'] - full['baseline_rss_kib']):.2f}",
        f"{gib(lora['peak_rss_kib'] - lora['baseline_rss_kib']):.2f}",
        f"{ratios['above_baseline']:.2f}",
        f"{full['seconds_per_step']:.2f}",
        f"{lora['seconds_per_step']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def parse_args() -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-0.5b", choices=MODELS)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass, in both modes",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    """Run both modes in fresh subprocesses and report, or be one worker."""
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)), flush=True)
        return
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    print(settings_line(args), flush=True)
    results = {mode: run_mode(mode, args) for mode in MODES}
    ratios = summarise(results)
    print_table(results, ratios)
    print("Markdown row for benchmarks/README.md (columns: " + MARKDOWN_COLUMNS + "):")
    print(markdown_row(args, results))
    print(f"Command: {command}")
    if args.json:
        out = {"command": command, "settings": settings_line(args), "modes": results}
        args.json.write_text(json.dumps({**out, "ratios": ratios}, indent=2) + "\n")
        print(f"Results written to {args.json}")


if __name__ == "__main__":
    main()
