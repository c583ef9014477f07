"""LoRA against full fine-tuning of the report decoder on a new standard: field accuracy.

python benchmarks/lora_vs_full.py                                  # models/default/decoder
python benchmarks/lora_vs_full.py --decoder runs/decoder --steps 30 --parts 300

Both start from the same trained decoder and see the same examples (a few hundred
parts under the new standard, ``benchmarks/standards/housing.yaml``, which no training
run uses): full fine-tuning updates every weight (fusion, projector, LM), LoRA only
rank-8 adapters on the LM's attention projections, with the base frozen. Each is then
scored on the same held-out parts under that standard (targets from the rule engine),
beside the decoder before any fine-tuning. Peak memory is measured apart, in fresh
processes: ``benchmarks/lora_memory.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from inspection.decoder.evaluate import held_out_requests, score_reports
from inspection.decoder.lora import LoraOptions, load_adapter, load_decoder
from inspection.decoder.model import ReportDecoder
from inspection.decoder.train import DecoderTrainOptions, train_decoder
from inspection.standards import load_standard

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def fine_tune(args: argparse.Namespace, out: Path, lora: bool) -> tuple[ReportDecoder, dict]:
    """Fine-tune the decoder on the new standard alone; the model and its training figures."""
    options = DecoderTrainOptions(
        out=out,
        init=args.decoder,
        standards=(args.standard,),
        generated_fraction=0.0,
        question_fraction=0.0,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lora_lr if lora else args.full_lr,
        seed=args.seed,
        adapter="new-standard" if lora else None,
        lora=LoraOptions(rank=8, alpha=16),
        progress=False,
    )
    result = train_decoder(options)
    if lora:
        model = ReportDecoder.load(args.decoder)
        load_adapter(model, out, "new-standard")
    else:
        model = ReportDecoder.load(out)
    figures = {
        "seconds": result.seconds,
        "trainable_parameters": result.trainable_parameters,
        "final_loss": result.final_loss,
    }
    return model.eval(), figures


def score(model: ReportDecoder, args: argparse.Namespace) -> dict:
    standard = load_standard(args.standard)
    requests = held_out_requests(model, args.parts, args.eval_seed, [standard], 0.0)
    return score_reports(model, requests, progress=False)


def main() -> None:
    args = parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        rows["before fine-tuning"] = ({}, score(load_decoder(args.decoder), args))
        for name, lora in (("full fine-tuning", False), ("LoRA r 8", True)):
            model, figures = fine_tune(args, Path(tmp) / name.split()[0], lora)
            rows[name] = (figures, score(model, args))
            console.print(f"{name}: done ({time.perf_counter() - started:.0f} s so far)")
    print_table(rows, args)
    if args.json:
        data = {k: {"training": f, "metrics": m} for k, (f, m) in rows.items()}
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def print_table(rows: dict, args: argparse.Namespace) -> None:
    table = Table(
        title=f"{args.decoder} fine-tuned on {args.standard.name}: {args.steps} steps x "
        f"{args.batch_size} parts; scored on {args.parts} held-out parts"
    )
    for column in ("", "field acc", "exact", "verdict", "cross-check", "trainable", "train s"):
        table.add_column(column, justify="right")
    for name, (figures, m) in rows.items():
        table.add_row(
            name,
            f"{m['report_field_accuracy']:.4f}",
            f"{m['report_defect_exact_rate']:.4f}",
            f"{m['report_verdict_accuracy']:.4f}",
            f"{m['cross_check_agreement']:.4f}",
            f"{figures.get('trainable_parameters', 0):,}",
            f"{figures.get('seconds', 0):.0f}",
        )
    console.print(table)
    full = rows["full fine-tuning"][1]["report_field_accuracy"]
    lora = rows["LoRA r 8"][1]["report_field_accuracy"]
    console.print(f"LoRA / full field accuracy: {lora / full:.4f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", type=Path, default=ROOT / "models/default/decoder")
    parser.add_argument("--standard", type=Path, default=ROOT / "benchmarks/standards/housing.yaml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--full-lr", type=float, default=3e-4)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--parts", type=int, default=300, help="held-out parts scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seed", type=int, default=2_000_003)
    parser.add_argument("--json", type=Path, help="write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    main()
