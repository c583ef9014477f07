"""Learning-rate schedules that end where a run really ends: at its step count, or at
its ``--max-minutes`` deadline on a machine whose pace changes as other jobs come and go.

Both trainers (the detection model's and the report decoder's) use these.
"""

from __future__ import annotations

import math

import torch

PLAN_AFTER_STEPS = 10  # steps timed before a deadline run plans its schedule
REPLAN_EVERY = 50  # steps between re-plans of a deadline run's schedule


def set_lr(optimizer: torch.optim.Optimizer, lr: float, step: int, total: int) -> None:
    """Linear warm-up (2 % of ``total``) then cosine decay to 2 % of ``lr`` at ``total``."""
    warmup = max(1, total // 50)
    if step < warmup:
        scale = (step + 1) / warmup
    else:
        scale = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    for group in optimizer.param_groups:
        group["lr"] = lr * max(scale, 0.02)


class DeadlinePlan:
    """The number of steps a run will make, for its schedule and its progress bar.

    Without a deadline that is ``max_steps``. With one, the pace is timed over the first
    :data:`PLAN_AFTER_STEPS` steps and again every :data:`REPLAN_EVERY`, and the plan is
    the steps that fit before the deadline at the recent pace (with 3 % to spare), so the
    model at the deadline has finished annealing even when a shared machine's pace
    changes mid-run. A plan saved with a checkpoint is passed back on ``--resume``.

    Parameters
    ----------
    max_steps
        The run's step limit.
    deadline
        Seconds of training from ``started``, or ``None``.
    step, started
        The first step of this process's run and the monotonic time it began.
    planned
        A plan restored from a checkpoint.
    """

    def __init__(
        self,
        max_steps: int,
        deadline: float | None,
        step: int,
        started: float,
        planned: int | None = None,
    ):
        self.max_steps = max_steps
        self.deadline = deadline
        self.started = started
        self.planned = planned
        self._timed_from = (step, started)  # (step, time) the pace is measured from

    @property
    def total(self) -> int:
        """The steps the schedule spans."""
        return self.planned or self.max_steps

    def expired(self, now: float) -> bool:
        """The deadline has passed."""
        return self.deadline is not None and now - self.started > self.deadline

    def update(self, step: int, now: float) -> bool:
        """Re-plan when the pace is due to be timed again; True when the plan changed."""
        if self.deadline is None:
            return False
        since, then = self._timed_from
        due = PLAN_AFTER_STEPS if self.planned is None else REPLAN_EVERY
        ran_out = self.planned is not None and step >= self.planned  # faster than planned
        if step - since < due and not (ran_out and step > since):
            return False
        per_step = (now - then) / (step - since)
        left = self.deadline - (now - self.started)
        self.planned = min(self.max_steps, step + max(1, int(0.97 * left / per_step)))
        self._timed_from = (step, now)
        return True


def run_problems(steps: int, batch_size: int, lr: float, max_minutes: float | None) -> list[str]:
    """What a training run's budget options (``--steps``, ``--batch-size``, ``--lr``,
    ``--max-minutes``) cannot be: none of them 0, negative or not a number. A run of 0
    steps or 0 minutes would save random weights as a trained model."""
    problems = []
    if steps < 1 or batch_size < 1:
        problems.append(f"--steps and --batch-size must be >= 1, not {steps} and {batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        problems.append(f"--lr must be a positive number, not {lr}")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        problems.append(f"--max-minutes must be a positive number, not {max_minutes}")
    return problems
