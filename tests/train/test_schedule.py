"""The deadline plan: the schedule spans the steps that really fit, as the pace changes."""

from __future__ import annotations

import pytest
import torch

from inspection.train.schedule import PLAN_AFTER_STEPS, REPLAN_EVERY, DeadlinePlan, set_lr


def test_without_a_deadline_the_plan_is_the_step_limit():
    plan = DeadlinePlan(max_steps=500, deadline=None, step=0, started=0.0)
    assert not plan.update(PLAN_AFTER_STEPS, 1e6) and plan.total == 500
    assert not plan.expired(1e9)


def test_plan_follows_the_pace_as_it_changes():
    plan = DeadlinePlan(max_steps=100_000, deadline=1000.0, step=0, started=0.0)
    assert not plan.update(PLAN_AFTER_STEPS - 1, 9.0)  # not timed yet
    assert plan.update(PLAN_AFTER_STEPS, 10.0)  # 1 s a step, 990 s left
    assert plan.total == PLAN_AFTER_STEPS + int(0.97 * 990)
    # Another job starts: 2 s a step over the next REPLAN_EVERY steps.
    step, now = PLAN_AFTER_STEPS + REPLAN_EVERY, 10.0 + 2 * REPLAN_EVERY
    assert plan.update(step, now)
    assert plan.total == step + int(0.97 * (1000 - now) / 2)
    assert not plan.expired(999.0) and plan.expired(1001.0)


def test_a_run_faster_than_planned_replans_when_it_reaches_the_plan():
    plan = DeadlinePlan(max_steps=100_000, deadline=1000.0, step=0, started=0.0, planned=20)
    assert plan.update(20, 100.0)  # reached the plan with 900 s left: plan further
    assert plan.total > 20


def test_schedule_warms_up_then_decays_to_the_floor():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    rates = []
    for step in range(0, 120, 10):
        set_lr(opt, 1.0, step, 100)
        rates.append(opt.param_groups[0]["lr"])
    assert rates[0] < 1.0 and max(rates) == pytest.approx(rates[1], rel=0.01)
    assert rates[-1] == pytest.approx(0.02)
