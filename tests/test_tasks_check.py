"""The degenerate-task check: the baseline programs, and the check through the real evaluator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from daedalus.agent.cli_tasks import run_check
from daedalus.sandbox import Evaluator, Limits
from daedalus.tasks import Task, load_task, materialise
from daedalus.tasks.check import baselines, control_source, reference_run

DATA = Path(__file__).parent / "data" / "kernelbench"


def candidate(source: str) -> Any:
    """Execute a generated candidate source the way a harness does: as its own module."""
    namespace: dict[str, Any] = {"__name__": "candidate"}
    exec(compile(source, "<candidate>", "exec"), namespace)
    return namespace["ModelNew"]


def reference_and_inputs(task: Task, seed: int) -> tuple[Any, list[Any], list[Any]]:
    loaded = materialise(task)
    torch.manual_seed(task.seed)
    model = loaded.make_model()
    torch.manual_seed(seed)
    inputs = loaded.get_inputs()
    return loaded, inputs, loaded.run_reference(model, inputs)


def test_baseline_programs_do_what_they_claim() -> None:
    task = load_task("swish_scale", {"batch_size": 4, "dim": 256})
    run = reference_run(task)
    assert run.container == "tensor" and run.outputs[0].shape == (4, 256)
    loaded, inputs, (expected,) = reference_and_inputs(task, seed=1)
    init = loaded.get_init_inputs()
    by_name = {b.name: b for b in baselines(task, run)}
    assert list(by_name) == ["zeros", "first_input", "constant", "cached"]

    out = candidate(by_name["zeros"].source or "")(*init)(*inputs)
    assert type(out) is torch.Tensor and out.shape == expected.shape and not out.any()

    out = candidate(by_name["first_input"].source or "")(*init)(*inputs)
    assert torch.equal(out, inputs[0]) and out.data_ptr() != inputs[0].data_ptr()

    out = candidate(by_name["constant"].source or "")(*init)(*inputs)
    assert out.shape == expected.shape and torch.all(out == out.flatten()[0])
    assert out.flatten()[0].item() == pytest.approx(run.outputs[0].fill)

    torch.manual_seed(task.seed)
    cached = candidate(by_name["cached"].source or "")(*init)
    first = cached(*inputs)
    assert torch.allclose(first, expected)  # honest on the first call...
    _, other_inputs, (other_expected,) = reference_and_inputs(task, seed=2)
    assert cached(*other_inputs) is first  # ...then replays it
    assert not torch.allclose(first, other_expected)

    torch.manual_seed(task.seed)
    control = candidate(control_source(task))(*init)
    assert torch.equal(control(*other_inputs), other_expected)


def test_first_input_baseline_reshapes_or_skips() -> None:
    # A loss returns one value per sample: no input has that many elements.
    task = load_task("cross_entropy_loss", {"batch_size": 8, "num_classes": 10})
    first = next(b for b in baselines(task, reference_run(task)) if b.name == "first_input")
    assert first.source is None and "number of elements" in first.skip_reason
    # argmax returns int64 indices from a float input: the dtype never matches.
    task = load_task("argmax_dim", {"batch_size": 2})
    first = next(b for b in baselines(task, reference_run(task)) if b.name == "first_input")
    assert first.source is None


def test_first_input_baseline_reshapes_when_only_the_shape_differs(tmp_path: Path) -> None:
    path = tmp_path / "flat.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\n\n"
        "class Model(nn.Module):\n"
        "    def forward(self, idx, x):\n"
        "        return torch.tanh(x).flatten(1)\n\n"
        "def get_inputs():\n    return [torch.arange(4), torch.randn(2, 3, 4)]\n\n"
        "def get_init_inputs():\n    return []\n"
    )
    task = load_task(str(path))
    first = next(b for b in baselines(task, reference_run(task)) if b.name == "first_input")
    assert first.source is not None and "inputs[1].reshape((2, 12))" in first.source
    _, inputs, _ = reference_and_inputs(task, seed=0)
    assert torch.equal(candidate(first.source)()(*inputs), inputs[1].reshape(2, 12))


def test_multi_output_and_integer_outputs(tmp_path: Path) -> None:
    path = tmp_path / "pair.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\n\n"
        "class Model(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x.sum(dim=1), x.argmax(dim=1)\n\n"
        "def get_inputs():\n    return [torch.randn(6, 5)]\n\n"
        "def get_init_inputs():\n    return []\n"
    )
    task = load_task(str(path))
    run = reference_run(task)
    assert run.container == "tuple"
    assert [o.dtype for o in run.outputs] == ["float32", "int64"]
    assert isinstance(run.outputs[1].fill, int)
    _, inputs, expected = reference_and_inputs(task, seed=0)
    for baseline in baselines(task, run):
        if baseline.source is None:
            assert baseline.name == "first_input"  # several outputs
            continue
        out = candidate(baseline.source)()(*inputs)
        assert isinstance(out, tuple) and len(out) == 2, baseline.name
        assert [o.dtype for o in out] == [e.dtype for e in expected], baseline.name
        assert [o.shape for o in out] == [e.shape for e in expected], baseline.name


# --- through the real evaluator (process sandbox, CPU backend) -------------------------

# Two trials is the strictest useful setting: a baseline must fail at least one trial to
# be rejected, and "cached" needs a second trial with fresh inputs to be caught.
CHECK_LIMITS = Limits(trials=2, timing_budget_s=0.2)


@pytest.fixture(scope="module")
def evaluator() -> Iterator[Evaluator]:
    with Evaluator(sandbox="process", backend="cpu", limits=CHECK_LIMITS) as warm:
        yield warm


def kernel_file(tmp_path: Path, name: str, forward: str, init: str = "") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"
        "class Model(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        f"        {init or 'pass'}\n\n"
        "    def forward(self, x):\n"
        f"        return {forward}\n\n"
        "batch_size = 64\ndim = 512\n\n"
        "def get_inputs():\n    return [torch.randn(batch_size, dim)]\n\n"
        "def get_init_inputs():\n    return []\n"
    )
    return path


def test_check_flags_degenerate_tasks(tmp_path: Path, evaluator: Evaluator) -> None:
    cases = {
        # (forward, init) -> the baselines that must pass
        "times_zero": ("x * 0.0", "", {"zeros", "constant", "cached"}),
        "eval_dropout": ("F.dropout(x, p=0.5, training=False)", "", {"first_input"}),
        "ignores_input": (
            "self.w.expand(x.shape[0], -1) * 1.0",
            "self.w = nn.Parameter(torch.randn(1, 512))",
            {"cached"},
        ),
    }
    for name, (forward, init, expected) in cases.items():
        task = load_task(str(kernel_file(tmp_path, name, forward, init)))
        # The control (the reference must pass) is exercised once; the others skip it.
        control = name == "times_zero"
        report = run_check(task, evaluator=evaluator, limits=CHECK_LIMITS, control=control)
        assert (report.control is not None and report.control.passed) == control, report.control
        assert {o.baseline.name for o in report.passing} == expected, name
        assert report.exit_code == 1 and report.inconclusive is None


def test_nondeterministic_task_makes_the_check_inconclusive(
    tmp_path: Path, evaluator: Evaluator
) -> None:
    task = load_task(str(kernel_file(tmp_path, "noisy", "x + torch.rand_like(x)")))
    report = run_check(task, evaluator=evaluator, limits=CHECK_LIMITS)
    assert report.control is not None and report.control.status == "incorrect"
    assert report.outcomes == ()  # baselines are not worth running against it
    assert report.exit_code == 2
    assert report.inconclusive and "nondeterministic" in report.inconclusive


def test_check_command_exit_codes_and_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from daedalus.agent.cli_tasks import app

    runner = CliRunner()
    degenerate = kernel_file(tmp_path, "times_zero", "x * 0.0")
    result = runner.invoke(
        app, ["check", str(degenerate), "--set", "dim=256"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1, result.output
    assert "times_zero[dim=256]" in result.stdout  # printed verbatim, not eaten as markup
    assert "warning:" in result.stdout and "cannot tell them apart" in result.stdout

    honest = kernel_file(tmp_path, "honest", "torch.tanh(x) * 2.0 + x")
    result = runner.invoke(app, ["check", str(honest), "--set", "dim=256", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["task"] == "honest[dim=256]" and record["degenerate"] is False
    assert record["control"]["status"] == "ok" and record["control"]["passed"] is True
    assert [b["baseline"] for b in record["baselines"]] == [
        "zeros",
        "first_input",
        "constant",
        "cached",
    ]
    assert all(b["status"] == "incorrect" for b in record["baselines"])
