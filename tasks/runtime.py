"""Execute a task's source with its size overrides applied, and validate what it gives.

This is for the process that is *meant* to run task code: the sandbox worker, or a CLI
command that needs reference output shapes. The agent's core never calls it. Every
problem the task file causes becomes a ``TaskError`` that names the file and the fix.
"""

from __future__ import annotations

import re
import sys
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from daedalus.tasks.model import Task, TaskError
from daedalus.tasks.source import SourceProblem, apply_overrides

if TYPE_CHECKING:
    import torch

_PLAIN = (int, float, bool, str, type(None))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    return isinstance(value, tuple | list) and all(_is_plain(v) for v in value)


@dataclass
class TaskModule:
    """A task file executed in a fresh module, with checked accessors."""

    task: Task
    module: types.ModuleType

    @property
    def Model(self) -> type[torch.nn.Module]:
        import torch

        model = getattr(self.module, "Model", None)
        if not (isinstance(model, type) and issubclass(model, torch.nn.Module)):
            raise TaskError(
                f"{self.task.path}: `Model` is {type(model).__name__}, not a torch.nn.Module "
                "subclass; define `class Model(nn.Module)`"
            )
        return model

    def _call(self, name: str) -> Any:
        function = getattr(self.module, name, None)
        if not callable(function):
            raise TaskError(f"{self.task.path}: `{name}` is not a function; define `def {name}():`")
        try:
            return function()
        except Exception as exc:
            raise TaskError(
                f"{self.task.path}: {name}() raised {_describe(exc)}; fix the task file"
            ) from exc

    def get_inputs(self) -> list[Any]:
        """The forward inputs: tensors, or plain Python values such as sizes."""
        import torch

        inputs = self._call("get_inputs")
        if not isinstance(inputs, list | tuple):
            raise TaskError(
                f"{self.task.path}: get_inputs() returned {type(inputs).__name__}; it must "
                "return a list of inputs, e.g. `return [x]`"
            )
        for index, value in enumerate(inputs):
            if type(value) is torch.Tensor:
                continue
            if isinstance(value, torch.Tensor):
                raise TaskError(
                    f"{self.task.path}: get_inputs()[{index}] is a {type(value).__name__}, a "
                    "tensor subclass; return plain torch.Tensor inputs"
                )
            if not _is_plain(value):
                raise TaskError(
                    f"{self.task.path}: get_inputs()[{index}] is a {type(value).__name__}; "
                    "inputs must be tensors or plain numbers/strings/tuples"
                )
        if not any(type(v) is torch.Tensor for v in inputs):
            raise TaskError(
                f"{self.task.path}: get_inputs() returned no tensor; a kernel task needs at "
                "least one tensor input"
            )
        return list(inputs)

    def get_init_inputs(self) -> list[Any]:
        """The ``Model`` constructor arguments."""
        init = self._call("get_init_inputs")
        if not isinstance(init, list | tuple):
            raise TaskError(
                f"{self.task.path}: get_init_inputs() returned {type(init).__name__}; it must "
                "return a list of constructor arguments, e.g. `return []`"
            )
        return list(init)

    def make_model(self, init_inputs: list[Any] | None = None) -> torch.nn.Module:
        model_class = self.Model
        args = self.get_init_inputs() if init_inputs is None else init_inputs
        try:
            return model_class(*args)
        except Exception as exc:
            raise TaskError(
                f"{self.task.path}: Model(*get_init_inputs()) raised {_describe(exc)}; make "
                "get_init_inputs() match Model.__init__"
            ) from exc

    def forward(self, model: torch.nn.Module, inputs: list[Any]) -> Any:
        """``model(*inputs)`` without autograd, exactly as returned."""
        import torch

        try:
            with torch.no_grad():
                return model(*inputs)
        except Exception as exc:
            raise TaskError(
                f"{self.task.path}: Model.forward(*get_inputs()) raised {_describe(exc)}; "
                "fix the task file"
            ) from exc

    def run_reference(self, model: torch.nn.Module, inputs: list[Any]) -> list[torch.Tensor]:
        """Run ``model(*inputs)`` without autograd and return its outputs as a list."""
        return validate_outputs(self.task, self.forward(model, inputs))


def validate_outputs(task: Task, out: Any) -> list[torch.Tensor]:
    """A reference output as a list of tensors, or a ``TaskError`` saying what is wrong."""
    import torch

    items = list(out) if isinstance(out, tuple | list) else [out]
    if not items:
        raise TaskError(
            f"{task.path}: Model.forward returned an empty {type(out).__name__}; return a tensor"
        )
    for index, item in enumerate(items):
        if type(item) is not torch.Tensor:
            where = "Model.forward" if items[0] is out else f"Model.forward()[{index}]"
            raise TaskError(
                f"{task.path}: {where} returned {type(item).__name__}, not a torch.Tensor; "
                "a kernel task must return a tensor or a tuple of tensors; fix the task file"
            )
    return items


def _module_name(task: Task) -> str:
    return "daedalus_task_" + re.sub(r"\W", "_", task.name)


def materialise(task: Task) -> TaskModule:
    """Execute ``task.source`` in a fresh module with ``task.overrides`` applied.

    Overridden constants are rewritten in the source before it runs (so derived values
    follow) and set on the module afterwards, so ``get_inputs``/``get_init_inputs`` see
    them: they read module globals when called. Imports ``torch`` only through the task.
    """
    filename = str(task.path)
    try:
        source = apply_overrides(task.source, dict(task.overrides), filename)
        code = compile(source, filename, "exec")
    except (SourceProblem, SyntaxError, ValueError) as exc:
        raise TaskError(f"{filename}: {exc}; fix the task file") from exc
    name = _module_name(task)
    module = types.ModuleType(name)
    module.__file__ = filename
    # Registered so dataclasses, pickling and inspect can find the module by name.
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise TaskError(
            f"{filename}: executing the task file raised {_describe(exc)}; fix the task file"
        ) from exc
    for key, value in task.overrides.items():
        setattr(module, key, value)
    return TaskModule(task=task, module=module)
