"""Degenerate-task check: can a trivial program pass this task?

A task is degenerate when a candidate that does no real work (returns zeros, returns
its input, returns a constant, or replays a cached output) passes the correctness
check: the task then cannot tell a real solution from a cheat. ``check_task`` runs
each baseline through the evaluator it is given (``tasks`` imports nothing else of
ours; the CLI passes ``daedalus.sandbox.evaluate``) plus one control, the reference
itself, which must pass, or nothing the baselines show would mean anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from daedalus.tasks.model import Task
from daedalus.tasks.runtime import materialise, validate_outputs
from daedalus.tasks.source import apply_overrides

_HEADER = "import torch\nimport torch.nn as nn\n\n\n"
_IGNORE_INIT = "    def __init__(self, *args, **kwargs):\n        super().__init__()\n\n"


class ResultLike(Protocol):
    """The part of ``EvaluationResult`` this check reads."""

    @property
    def status(self) -> str: ...

    @property
    def correct(self) -> bool: ...

    @property
    def error(self) -> str | None: ...

    @property
    def stage(self) -> str: ...


EvaluateFn = Callable[[Task, str], ResultLike]


@dataclass(frozen=True)
class OutputSpec:
    shape: tuple[int, ...]
    dtype: str  # e.g. "float32", as in ``torch.float32``
    fill: float | int | bool | complex  # the value the constant baseline uses


@dataclass(frozen=True)
class InputSpec:
    index: int
    shape: tuple[int, ...] | None  # None for a non-tensor input
    dtype: str | None


@dataclass(frozen=True)
class ReferenceRun:
    """What one honest run of the reference produced: enough to write the baselines."""

    outputs: tuple[OutputSpec, ...]
    container: str  # "tensor", "tuple" or "list": what ``forward`` returned
    inputs: tuple[InputSpec, ...]


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    source: str | None  # None when the baseline does not apply to this task
    skip_reason: str = ""


@dataclass(frozen=True)
class Outcome:
    baseline: Baseline
    status: str  # an evaluation status, or "skipped"
    passed: bool
    error: str | None = None
    stage: str = ""  # the evaluation stage that decided the status


@dataclass(frozen=True)
class CheckReport:
    task: Task
    control: Outcome | None
    outcomes: tuple[Outcome, ...]

    @property
    def passing(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.passed]

    @property
    def inconclusive(self) -> str | None:
        """Why the check proves nothing, or ``None`` when it is meaningful."""
        if self.control is not None and not self.control.passed:
            detail = f" ({self.control.error})" if self.control.error else ""
            return (
                f"the reference itself, submitted as a candidate, got status "
                f"{self.control.status!r}{detail}: the task is nondeterministic, its outputs "
                "are unstable, or the evaluator cannot run it; fix that first"
            )
        return None

    @property
    def exit_code(self) -> int:
        """0: no baseline passes; 1: some baseline passes (degenerate); 2: inconclusive."""
        if self.inconclusive:
            return 2
        return 1 if self.passing else 0


def _fill_value(values: Any, dtype: Any) -> float | int | bool | complex:
    import torch

    if values.is_complex():
        return complex(values.mean().item()) if values.numel() else 0j
    if dtype == torch.bool:
        return bool(values.double().mean().item() >= 0.5)
    finite = values[torch.isfinite(values)] if values.is_floating_point() else values
    mean = finite.double().mean().item() if finite.numel() else 0.0
    if not math.isfinite(mean):
        mean = 0.0
    return mean if values.is_floating_point() else round(mean)


def reference_run(task: Task) -> ReferenceRun:
    """Run the reference once, in this process, to learn output shapes and values.

    Raises ``TaskError`` for a broken task (the caller reports it and exits 2).
    """
    import torch

    loaded = materialise(task)
    torch.manual_seed(task.seed)
    model = loaded.make_model().eval()  # as the evaluator runs it
    inputs = loaded.get_inputs()
    raw = loaded.forward(model, inputs)
    outputs = validate_outputs(task, raw)
    container = "tuple" if isinstance(raw, tuple) else "list" if isinstance(raw, list) else "tensor"
    specs = tuple(
        OutputSpec(tuple(o.shape), str(o.dtype).removeprefix("torch."), _fill_value(o, o.dtype))
        for o in outputs
    )
    input_specs = tuple(
        InputSpec(i, tuple(v.shape), str(v.dtype).removeprefix("torch."))
        if isinstance(v, torch.Tensor)
        else InputSpec(i, None, None)
        for i, v in enumerate(inputs)
    )
    return ReferenceRun(outputs=specs, container=container, inputs=input_specs)


def _wrap(items: list[str], container: str) -> str:
    if container == "tensor":
        return items[0]
    if container == "list":
        return "[" + ", ".join(items) + "]"
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _module(doc: str, body: str) -> str:
    return f'{_HEADER}class ModelNew(nn.Module):\n    """{doc}"""\n\n{_IGNORE_INIT}{body}'


def _zeros(run: ReferenceRun) -> Baseline:
    items = [f"torch.zeros({o.shape!r}, dtype=torch.{o.dtype})" for o in run.outputs]
    doc = "Degenerate baseline: ignores its inputs and returns zeros of the reference shape."
    body = f"    def forward(self, *inputs):\n        return {_wrap(items, run.container)}\n"
    return Baseline("zeros", "returns zeros of the output shape", _module(doc, body))


def _constant(run: ReferenceRun) -> Baseline:
    items = [f"torch.full({o.shape!r}, {o.fill!r}, dtype=torch.{o.dtype})" for o in run.outputs]
    doc = "Degenerate baseline: returns the reference output's mean everywhere."
    body = f"    def forward(self, *inputs):\n        return {_wrap(items, run.container)}\n"
    return Baseline(
        "constant", "returns the mean of a reference output everywhere", _module(doc, body)
    )


def _first_input(run: ReferenceRun) -> Baseline:
    description = "returns the first input with the output's size and dtype, unchanged"
    if len(run.outputs) != 1:
        return Baseline("first_input", description, None, "the task returns several outputs")
    out = run.outputs[0]
    for spec in run.inputs:
        if (
            spec.shape is None
            or spec.dtype != out.dtype
            or math.prod(spec.shape) != math.prod(out.shape)
        ):
            continue
        expr = f"inputs[{spec.index}].clone()"
        if spec.shape != out.shape:
            expr = f"inputs[{spec.index}].reshape({out.shape!r}).clone()"
        doc = "Degenerate baseline: returns one of its inputs unchanged."
        body = f"    def forward(self, *inputs):\n        return {_wrap([expr], run.container)}\n"
        return Baseline("first_input", description, _module(doc, body))
    return Baseline(
        "first_input", description, None, "no input has the output's number of elements and dtype"
    )


def _reference_source(task: Task) -> str:
    return apply_overrides(task.source, dict(task.overrides), str(task.path)).rstrip() + "\n\n\n"


def _cached(task: Task) -> Baseline:
    source = _reference_source(task) + (
        "class ModelNew(Model):\n"
        '    """Degenerate baseline: computes the first call honestly, then replays it."""\n\n'
        "    def __init__(self, *args, **kwargs):\n"
        "        super().__init__(*args, **kwargs)\n"
        "        self._cached_output = None\n\n"
        "    def forward(self, *inputs):\n"
        "        if self._cached_output is None:\n"
        "            self._cached_output = super().forward(*inputs)\n"
        "        return self._cached_output\n"
    )
    return Baseline(
        "cached", "computes the first call honestly, then returns that output again", source
    )


def control_source(task: Task) -> str:
    """The reference itself as a candidate: it must pass, or the task is unusable."""
    return _reference_source(task) + (
        'class ModelNew(Model):\n    """Control: the reference implementation, unchanged."""\n'
    )


def baselines(task: Task, run: ReferenceRun) -> list[Baseline]:
    """The trivial candidates for ``task``, in the order they are tried."""
    return [_zeros(run), _first_input(run), _constant(run), _cached(task)]


def _outcome(baseline: Baseline, result: ResultLike) -> Outcome:
    passed = str(result.status) == "ok" or bool(result.correct)
    return Outcome(baseline, str(result.status), passed, result.error, result.stage)


def check_task(
    task: Task,
    evaluate: EvaluateFn,
    *,
    control: bool = True,
    run: ReferenceRun | None = None,
) -> CheckReport:
    """Evaluate every applicable baseline (and the control) against ``task``.

    The control runs first: if the reference cannot pass against itself, the baselines
    are not worth evaluating and the report is inconclusive.
    """
    run = run or reference_run(task)
    control_outcome: Outcome | None = None
    if control:
        reference = Baseline("reference", "the reference itself (control)", control_source(task))
        assert reference.source is not None
        control_outcome = _outcome(reference, evaluate(task, reference.source))
        if not control_outcome.passed:
            return CheckReport(task, control_outcome, ())
    outcomes = []
    for baseline in baselines(task, run):
        if baseline.source is None:
            outcomes.append(Outcome(baseline, "skipped", False, baseline.skip_reason))
            continue
        outcomes.append(_outcome(baseline, evaluate(task, baseline.source)))
    return CheckReport(task, control_outcome, tuple(outcomes))
