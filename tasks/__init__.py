"""Tasks: the KernelBench task format, its loader and the shipped task library."""

from daedalus.tasks.loader import (
    LIBRARY_DIR,
    constants_of,
    list_all_tasks,
    list_tasks,
    load_task,
    parse_overrides,
)
from daedalus.tasks.model import Objective, Task, TaskError, TaskKind
from daedalus.tasks.runtime import TaskModule, materialise, validate_outputs

__all__ = [
    "LIBRARY_DIR",
    "Objective",
    "Task",
    "TaskError",
    "TaskKind",
    "TaskModule",
    "constants_of",
    "list_all_tasks",
    "list_tasks",
    "load_task",
    "materialise",
    "parse_overrides",
    "validate_outputs",
]
