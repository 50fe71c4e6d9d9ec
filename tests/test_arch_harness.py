"""The architecture cascade through the real process sandbox: failed checks archived with
their reasons, the proxy threshold, early stopping, the trained-model causality check,
reproducibility and the multi-objective result. Tiny budgets keep it fast."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from daedalus.sandbox import Evaluator
from daedalus.sandbox.result import EvaluationResult, Limits
from daedalus.tasks import load_task

TINY_DIGITS = {"proxy_steps": 20, "full_steps": 60, "eval_every": 10, "warmup_steps": 5,
               "proxy_threshold": 0.3}
TINY_SEQ = {"proxy_steps": 10, "full_steps": 30, "eval_every": 10, "warmup_steps": 5,
            "train_size": 512, "val_size": 64, "test_size": 64, "proxy_threshold": 0.0}  # fmt: skip

DEAD = '''
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    """Ignores the image: constant logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)) * 0.0
'''

LOOKS_AHEAD = '''
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        return self.proj(x + x.flip(1))
'''

BATCH_MEAN = '''
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        return self.proj(x - x.mean(dim=0, keepdim=True))
'''

HUGE = '''
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.up = nn.Linear(d_model, 8192)
        self.down = nn.Linear(8192, d_model)

    def forward(self, x):
        return self.down(self.up(x))
'''

# Causal while its gate is zero (as initialised): only training can open the view of the
# next position, which in a language model is the answer itself.
LEARNS_TO_PEEK = '''
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, d_model)
        self.peek = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        ahead = torch.cat([x[:, 1:], x[:, -1:]], dim=1)
        return self.proj(x) + self.peek * ahead
'''


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    with Evaluator(sandbox="process", limits=Limits(timeout_s=120)) as ev:
        yield ev


def _run(ev: Evaluator, task: str, code: str, **overrides: Any) -> EvaluationResult:
    return ev.evaluate(load_task(task, overrides), code)


def test_a_design_that_learns_is_ok_with_separate_objectives(evaluator: Evaluator) -> None:
    task = load_task("digits", TINY_DIGITS)
    result = evaluator.evaluate(task, task.source)
    assert result.ok, result.error
    assert set(result.objectives) == {"accuracy", "params", "latency_ms"}
    assert result.objectives["params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert 0.5 < result.objectives["accuracy"] <= 1.0
    assert 0.0 < result.score <= result.objectives["accuracy"]
    m = result.metrics
    assert m["threads"] == 1.0 and m["seed"] == 42.0 and m["full_budget"] == 1.0
    assert m["steps"] == 60.0 and result.artifacts["learning_curve"][-1][0] == 60
    assert result.artifacts["timing_clock"] in ("thread_cpu", "wall")
    again = evaluator.evaluate(task, task.source)  # fixed seeds: the same numbers
    assert again.objectives["accuracy"] == result.objectives["accuracy"]
    assert again.artifacts["learning_curve"] == result.artifacts["learning_curve"]


def test_the_proxy_threshold_stops_a_design_that_does_not_learn(evaluator: Evaluator) -> None:
    result = _run(evaluator, "digits", DEAD, **TINY_DIGITS)
    assert result.status == "incorrect" and result.stage == "proxy"
    assert "short of the threshold 0.3" in (result.error or "")
    assert result.metrics["proxy_accuracy"] < 0.3 and "steps" not in result.metrics
    assert result.score == 0.0


def test_early_stopping_on_target_and_on_plateau(evaluator: Evaluator) -> None:
    task = load_task("digits", {**TINY_DIGITS, "full_steps": 400, "target": 0.5})
    reached = evaluator.evaluate(task, task.source)
    assert reached.ok and reached.artifacts["stopped"] == "target"
    assert reached.metrics["stopped_early"] == 1.0 and reached.metrics["steps"] < 400
    flat = load_task("digits", {**TINY_DIGITS, "full_steps": 400, "min_delta": 1.0,
                                "patience": 1})  # fmt: skip
    stalled = evaluator.evaluate(flat, flat.source)
    assert stalled.ok and stalled.artifacts["stopped"] == "plateau"
    assert stalled.metrics["steps"] == 20.0  # the first evaluation after the proxy


@pytest.mark.parametrize(
    ("code", "status", "stage", "words"),
    [
        (LOOKS_AHEAD, "incorrect", "causality", "not causal"),
        (BATCH_MEAN, "incorrect", "batch", "batch-dependent"),
        (HUGE, "rejected", "params", "over this task's cap"),
    ],
)
def test_failed_checks_come_back_with_their_reason(evaluator: Evaluator, code: str, status: str,
                                                   stage: str, words: str) -> None:
    result = _run(evaluator, "mqar", code, **TINY_SEQ)
    assert (result.status, result.stage) == (status, stage), result.error
    assert words in (result.error or "")
    assert "proxy_accuracy" not in result.metrics  # rejected before any training


def test_a_quadratic_design_is_rejected_where_sub_quadratic_is_required(evaluator: Evaluator) -> None:
    task = load_task("mqar", TINY_SEQ)
    result = evaluator.evaluate(task, task.files["softmax_attention.py"])
    assert result.status == "rejected" and result.stage == "complexity"
    assert "not sub-quadratic" in (result.error or "") and result.metrics["work_exponent"] > 1.8
    linear = evaluator.evaluate(task, task.source)
    assert linear.ok, linear.error
    assert linear.metrics["work_exponent"] < 1.1


def test_causality_is_checked_again_after_training(evaluator: Evaluator) -> None:
    result = _run(evaluator, "char_lm", LEARNS_TO_PEEK, proxy_steps=10, full_steps=30,
                  eval_every=10, warmup_steps=5, chars=20000, proxy_threshold=0.0)
    assert "proxy_bpc" in result.metrics  # it passed the checks before training
    assert result.status == "incorrect" and result.stage == "verify", result.error
    assert "not causal" in (result.error or "")
