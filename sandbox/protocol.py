"""The parent-side sandbox interface and its registry of short names.

A sandbox takes one evaluation request (task, candidate code, limits), runs the harness
cascade in isolation and gives back what the harness reported plus how the process
ended. Mapping that to an ``EvaluationResult`` is the evaluator's job, so a new sandbox
(``docker``) only has to move requests in and runs out. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from daedalus.sandbox.result import Limits


@dataclass
class SandboxRun:
    """How one isolated evaluation ended."""

    result: dict[str, Any] | None  # the harness's result, None if it never reported one
    task_error: str | None = None  # the task (not the candidate) is broken
    stage: str = ""  # the last cascade stage the harness announced
    isolation: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    flooded: bool = False  # stdout/stderr went past the flood limit and the run was killed
    logs: str = ""
    duration_s: float = 0.0
    sandbox_error: str | None = None  # our own failure (worker lost), not the candidate's


def sandbox_run_from_answer(answer: dict[str, Any]) -> SandboxRun:
    """A fork server's final answer (the same from a local process or a container)."""
    return SandboxRun(
        result=answer.get("result"),
        task_error=answer.get("task_error"),
        stage=answer.get("stage", ""),
        isolation=answer.get("isolation", {}),
        exit_code=answer.get("exit_code"),
        signal=answer.get("signal"),
        timed_out=bool(answer.get("timed_out")),
        flooded=bool(answer.get("flooded")),
        logs=answer.get("logs", ""),
        duration_s=float(answer.get("duration_s", 0.0)),
        sandbox_error=answer.get("sandbox_error"),
    )


class Sandbox(Protocol):
    name: str

    def start(self) -> None:
        """Get ready (e.g. start a warm worker); evaluating also starts lazily."""

    def run(self, request: dict[str, Any], limits: Limits) -> SandboxRun:
        """Evaluate one request in isolation; safe to call from several threads at once."""

    def fingerprint(self, backend: str) -> dict[str, str]:
        """The hardware/software fingerprint of the machine that runs the candidates."""

    def close(self) -> None:
        """Stop workers and remove temporary files; the sandbox may be started again."""


def flood_limit(limits: Limits) -> int:
    """Bytes of stdout+stderr after which a candidate is killed as flooding."""
    return max(100 * limits.output_bytes, 1 << 20)


SandboxFactory = Callable[..., Sandbox]
_FACTORIES: dict[str, str | SandboxFactory] = {
    "process": "daedalus.sandbox.process:ProcessSandbox",
}


def register_sandbox(name: str, factory: str | SandboxFactory) -> None:
    """Register a sandbox by short name: a factory or a lazy ``"module:Class"`` path."""
    _FACTORIES[name] = factory


def sandbox_names() -> list[str]:
    return sorted(_FACTORIES)


def get_sandbox(name: str, **options: Any) -> Sandbox:
    """A new sandbox instance by short name, e.g. ``get_sandbox("process")``."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(
            f"unknown sandbox {name!r}; choose one of: {', '.join(sandbox_names())}"
        )
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    return factory(**options)


# The fork server's fixed environment, the same in every sandbox. Inductor reads its
# compile-thread count at import (one: no worker pool forks). glibc's malloc otherwise
# switches large tensors between mmap and the heap depending on allocation history, which
# moved one shipped task's reference between 8 and 26 ms with identical code; fixed
# thresholds (a long-running process's steady state) keep timings reproducible.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "TORCHINDUCTOR_COMPILE_THREADS": "1",
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "4294967296",
}
