"""The audit on Ray Data: the same batches, run by model replicas across a cluster.

The driver lists the input, hashes each file to skip the parts an earlier run finished,
and plans the batches exactly as the local engine does
(:func:`~inspection.audit.engine.plan_batches`). Each planned batch is one row of a Ray
Dataset; ``map_batches`` hands the rows to :class:`BatchAuditor`, a callable class that
loads the model once per replica (``--workers`` of them) and runs
:meth:`~inspection.audit.engine.PartAuditor.audit_batch` on each, the local engine's own
code: the same tiles meet in the same forward passes, so the verdicts, clauses, defects
and measurements equal the local engine's, and the scores do to float32 rounding (a
replica runs the model on its own number of threads, which orders the sums
differently: differences of 1e-7 were seen). Records stream back to the driver, which appends and
flushes them to ``results.jsonl`` one by one, so a killed run resumes as a local one does.

On a cluster (``--ray-address``) the input, the model, the standard and the output
folder must be reachable at the same paths from every node (a shared file system), and
the nodes need this package installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspection.audit.engine import (
    AuditOptions,
    PartAuditor,
    _progress,
    dumps_items,
    ordered_map,
    plan_batches,
    skipper,
)
from inspection.audit.inputs import AuditItem, iter_inputs
from inspection.audit.results import ResultsLog, check_run
from inspection.errors import UserError

DECODE_THREADS = 2  # per replica: decoding overlaps the model's forward pass


class BatchAuditor:
    """One model replica: audits planned batches (rows of JSON items) into records."""

    def __init__(self, model: str, standard: str, out: str, options: dict[str, Any]):
        self.auditor = PartAuditor.from_paths(model, standard, out, AuditOptions(**options))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        records = []
        for text in batch["items"]:
            items = [_item(data) for data in json.loads(str(text))]
            parts = list(self.auditor.pool.map(self.auditor.load, items))
            records.append(json.dumps(self.auditor.audit_batch(parts), ensure_ascii=False))
        return {"records": np.array(records, dtype=object)}


def _item(data: dict[str, Any]) -> AuditItem:
    data = dict(data)
    data.pop("sha256", None)  # the replica hashes the bytes it reads itself
    return AuditItem.from_json(data)


def run_ray(
    input_spec: str | Path,
    out: Path,
    model: str | Path,
    standard: str | Path,
    options: AuditOptions,
    total: int,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Run the audit on Ray Data; ``(run identity, {"new": n, "skipped": n})``."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(
            "--engine ray needs Ray: pip install 'inspection[ray]' (or use --engine local)"
        ) from exc
    started = _start_ray(ray, options.ray_address)
    # The driver hashes and plans; its pool reads files, its model is loaded only to
    # record the versions the replicas will decide with.
    driver = PartAuditor.from_paths(model, standard, out, replace(options, progress=False))
    identity = driver.run_identity()
    check_run(out, {"input": str(input_spec), **identity})
    counts = {"new": 0, "skipped": 0}
    try:
        with ResultsLog(out) as log, _progress(total, options.progress) as bar:
            skip = skipper(driver, log, counts, bar)  # refused parts: recorded by the driver
            parts = ordered_map(
                driver.pool,
                lambda item: driver.hash_item(item, log),
                iter_inputs(input_spec),
                ahead=4 * options.batch_size,
            )
            rows = [
                {"items": dumps_items(batch)}
                for batch in plan_batches(parts, options.batch_size, skip)
            ]
            if rows:
                for record in _audit_rows(ray, rows, model, standard, out, options):
                    if log.append(record):
                        counts["new"] += 1
                    bar.update(1)
    finally:
        driver.close()
        if started:
            ray.shutdown()
    return identity, counts


def _audit_rows(ray, rows, model, standard, out: Path, options: AuditOptions):
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver's bar counts parts
    replica = asdict(replace(options, workers=DECODE_THREADS, progress=False, engine="local"))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        BatchAuditor,
        fn_constructor_kwargs={
            "model": str(Path(model).resolve()),
            "standard": str(Path(standard).resolve()),
            "out": str(out.resolve()),
            "options": replica,
        },
        batch_size=1,  # a row is a planned batch of parts already
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        num_cpus=1,
    )
    for row in dataset.iter_rows():
        yield from json.loads(row["records"])


def _start_ray(ray, address: str | None) -> bool:
    """Connect to ``address``, or start a local Ray on 127.0.0.1 (DESIGN.md §5); whether
    this call started it (and so stops it)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the box
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    return True
