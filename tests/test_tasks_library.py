"""No shipped task is degenerate: the whole library through the real evaluator.

Slow (about two minutes on two busy cores): every baseline of every task at its shipped
size goes through the process sandbox. One warm evaluator serves the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daedalus.agent.cli_tasks import run_check
from daedalus.sandbox import Evaluator, Limits
from daedalus.tasks import list_tasks, load_task

# Two trials is the strictest useful setting: a baseline must fail at least one trial to
# be rejected, and "cached" needs a second trial with fresh inputs to be caught.
CHECK_LIMITS = Limits(trials=2, timing_budget_s=0.2)


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    with Evaluator(sandbox="process", backend="cpu", limits=CHECK_LIMITS) as warm:
        yield warm


@pytest.mark.slow
@pytest.mark.parametrize("name", [task.name for task in list_tasks()])
def test_shipped_task_is_not_degenerate(name: str, evaluator: Evaluator) -> None:
    """Every baseline is *rejected as incorrect* (not refused for some other reason) at the
    task's shipped size."""
    task = load_task(name)
    # The cached baseline computes trial 1 honestly with the task's own code, so its failing
    # only at the full check doubles as the control (the reference reproduces itself in the
    # evaluator) without timing a control per task.
    report = run_check(task, evaluator=evaluator, limits=CHECK_LIMITS, control=False)
    assert report.exit_code == 0, [o for o in report.outcomes if o.passed]
    for outcome in report.outcomes:
        if outcome.status == "skipped":
            assert outcome.baseline.name == "first_input", outcome
        else:
            assert outcome.status == "incorrect", outcome
    cached = next(o for o in report.outcomes if o.baseline.name == "cached")
    assert cached.stage == "full_check", cached
