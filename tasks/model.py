"""The task value types shared by every layer (tasks may import nothing of ours)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

TaskKind = Literal["kernel", "architecture", "program"]


class TaskError(Exception):
    """A task file or task name is unusable. The message names the file and the fix."""


@dataclass(frozen=True)
class Objective:
    """A named objective with a direction, e.g. ``Objective("speedup", "max")``."""

    name: str
    direction: Literal["max", "min"] = "max"


@dataclass(frozen=True)
class Task:
    """A loaded task: where it lives, what it is, and how candidates are judged.

    ``source`` is the task file's text exactly as loaded; the sandbox re-executes it in
    the worker (with ``overrides`` applied) so the agent process never imports task code.
    """

    name: str
    kind: TaskKind
    path: Path
    source: str
    category: str = "uncategorised"
    description: str = ""
    atol: float = 1e-4
    rtol: float = 1e-4
    backends: tuple[str, ...] = ("cpu",)
    objectives: tuple[Objective, ...] = (Objective("speedup", "max"),)
    overrides: dict[str, int | float | str | bool] = field(default_factory=dict)
    features: tuple[str, ...] = ("approach", "code_size")
    seed: int = 42
    # Program tasks (tasks/program.py): the evaluator and other support files by name, and
    # kind-specific settings (score metric, cascade, prompt). Empty for kernel tasks.
    files: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable identity for archive lookups: name plus any size overrides."""
        if not self.overrides:
            return self.name
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.overrides.items()))
        return f"{self.name}[{extra}]"
