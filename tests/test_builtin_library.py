"""The built-in transformations on the shipped fusion tasks: each one alone, then all stacked.

These are the programs `make run` and the benchmark search over, run with their own sizes
and inputs (torch directly, single thread), so a rewrite that is only wrong at real sizes or
with the tasks' real layouts fails here. The compiling transformations are covered in
test_builtin_cpp.py.
"""

from __future__ import annotations

import pytest
import torch

from daedalus.sandbox.static import check_candidate
from daedalus.tasks import Task, list_tasks
from daedalus.tools.builtin import BY_NAME, reference_as_candidate
from daedalus.tools.builtin.base import float_inputs
from daedalus.tools.builtin.engine import Engine
from tests.test_builtin_transforms import FAST, assert_equivalent

FUSION = [t for t in list_tasks() if t.kind == "kernel" and t.category == "fusion"]


@pytest.fixture(autouse=True)
def one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the evaluator times them; also keeps two cores free
    yield None
    torch.set_num_threads(threads)


@pytest.mark.parametrize("task", FUSION, ids=[t.name for t in FUSION])
def test_fusion_task_rewrites_are_equivalent(task: Task) -> None:
    engine = Engine(float_inputs(task.source))
    seed = reference_as_candidate(task.source)
    applied = []
    for name in FAST:
        result = engine.apply(seed, BY_NAME[name])
        if result is None:
            continue
        assert check_candidate(result.code) == [], name
        assert_equivalent(task.source, result.code, trials=2)
        applied.append(name)
    assert applied, f"no fast transformation applies to {task.name}"
    order = sorted(applied, key=lambda n: BY_NAME[n].stage)
    stacked, _, names = engine.apply_all(seed, [BY_NAME[n] for n in order])
    assert names and check_candidate(stacked) == []
    assert_equivalent(task.source, stacked, trials=2)


def test_the_seed_of_every_shipped_kernel_task_is_a_valid_candidate() -> None:
    for task in list_tasks():
        if task.kind != "kernel":
            continue
        seed = reference_as_candidate(task.source)
        assert "class ModelNew" in seed and check_candidate(seed) == [], task.name
