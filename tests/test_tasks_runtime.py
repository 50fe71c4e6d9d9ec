"""materialise(): executing a task with overrides, and the errors a broken task gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from daedalus.tasks import TaskError, list_tasks, load_task, materialise

DATA = Path(__file__).parent / "data" / "kernelbench"

TEMPLATE = """\
import torch
import torch.nn as nn

class Model(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        {forward}

n = 32

def get_inputs():
    {inputs}

def get_init_inputs():
    {init}
"""


def make(
    tmp_path: Path,
    *,
    forward: str = "return x * self.scale",
    inputs: str = "return [torch.randn(n)]",
    init: str = "return [2.0]",
    top: str = "",
) -> Path:
    path = tmp_path / "task.py"
    path.write_text(top + TEMPLATE.format(forward=forward, inputs=inputs, init=init))
    return path


def reference(path: Path) -> list[torch.Tensor]:
    loaded = materialise(load_task(str(path)))
    return loaded.run_reference(loaded.make_model(), loaded.get_inputs())


def test_materialise_runs_a_good_task_with_overrides(tmp_path: Path) -> None:
    task = load_task(str(make(tmp_path)), {"n": 5})
    loaded = materialise(task)
    assert loaded.module.n == 5
    (x,) = loaded.get_inputs()
    (out,) = loaded.run_reference(loaded.make_model(), [x])
    assert torch.equal(out, x * 2.0)


def test_materialised_modules_are_independent(tmp_path: Path) -> None:
    task = load_task(str(make(tmp_path)))
    first, second = materialise(task), materialise(load_task(str(task.path), {"n": 3}))
    assert first.module is not second.module
    assert first.module.n == 32 and second.module.n == 3


def test_every_shipped_task_runs_and_returns_tensors() -> None:
    torch.set_num_threads(1)
    for task in list_tasks():
        small = {k: v for k, v in {"batch_size": 2}.items() if f"\n{k} = " in task.source}
        loaded = materialise(load_task(task.name, small))
        torch.manual_seed(task.seed)
        outputs = loaded.run_reference(loaded.make_model(), loaded.get_inputs())
        assert outputs and all(type(o) is torch.Tensor for o in outputs), task.name
        assert all(torch.isfinite(o.double()).all() for o in outputs), task.name


def test_upstream_file_with_plain_value_input_runs() -> None:
    (out,) = reference(DATA / "resize" / "resize_to_size.py")
    assert tuple(out.shape) == (2, 8, 45, 60)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"inputs": "raise ValueError('bad shape')"},
            r"get_inputs\(\) raised ValueError: bad shape; fix the task file",
        ),
        ({"init": "return [1 / 0]"}, r"get_init_inputs\(\) raised ZeroDivisionError"),
        ({"forward": "return 'not a tensor'"}, r"Model.forward returned str, not a torch.Tensor"),
        ({"forward": "return (x, 3)"}, r"Model.forward\(\)\[1\] returned int, not a torch.Tensor"),
        ({"forward": "return x.sum().item()"}, r"Model.forward returned float"),
        ({"forward": "return ()"}, r"returned an empty tuple"),
        (
            {"forward": "raise RuntimeError('boom')"},
            r"Model.forward\(\*get_inputs\(\)\) raised RuntimeError: boom",
        ),
        (
            {"inputs": "return torch.randn(n)"},
            r"get_inputs\(\) returned Tensor; it must return a list",
        ),
        ({"inputs": "return [{'x': 1}]"}, r"get_inputs\(\)\[0\] is a dict"),
        ({"inputs": "return [3]"}, r"get_inputs\(\) returned no tensor"),
        (
            {"inputs": "return [torch.nn.Parameter(torch.randn(n))]"},
            r"get_inputs\(\)\[0\] is a Parameter, a tensor subclass",
        ),
        ({"init": "return None"}, r"get_init_inputs\(\) returned NoneType"),
        ({"init": "return [1, 2, 3]"}, r"Model\(\*get_init_inputs\(\)\) raised TypeError"),
        (
            {"top": "import not_a_module_anywhere\n"},
            r"executing the task file raised ModuleNotFoundError",
        ),
    ],
)
def test_runtime_problems_name_the_file_and_the_problem(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    path = make(tmp_path, **kwargs)
    with pytest.raises(TaskError, match=message) as info:
        reference(path)
    assert str(info.value).startswith(f"{path}: ")


def test_model_that_is_not_a_module_is_reported(tmp_path: Path) -> None:
    path = make(tmp_path)
    path.write_text(path.read_text() + "\nModel = 3\n")
    with pytest.raises(TaskError, match=r"`Model` is int, not a torch.nn.Module subclass"):
        reference(path)
