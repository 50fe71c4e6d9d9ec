"""Evaluate candidates: the public entry point of the sandbox package.

    with Evaluator(sandbox="process", backend="cpu", limits=Limits()) as ev:
        result = ev.evaluate(task, code)

The evaluator checks the static policy in the parent (a rejected candidate never costs a
fork), sends the request to a sandbox, and turns how the run ended into an
``EvaluationResult``. Candidate failures are results; a broken task raises ``TaskError``.
Nothing here imports torch.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from daedalus.sandbox.backends import check_backend_name
from daedalus.sandbox.backends.nvcc import precheck as nvcc_precheck
from daedalus.sandbox.program_policy import policy_for
from daedalus.sandbox.protocol import Sandbox, SandboxRun, flood_limit, get_sandbox
from daedalus.sandbox.result import EvaluationResult, Limits, Status
from daedalus.sandbox.static import check_candidate, needs_build, normalized_hash
from daedalus.tasks.model import Task, TaskError

_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Evaluator:
    """A reusable evaluator bound to one sandbox and backend; thread-safe ``evaluate``."""

    def __init__(self, sandbox: str = "process", backend: str = "cpu",
                 limits: Limits | None = None, **sandbox_options: Any) -> None:
        self.backend = check_backend_name(backend)  # "auto" becomes the best available
        self.limits = limits or Limits()
        self.sandbox: Sandbox = get_sandbox(sandbox, **sandbox_options)

    def __enter__(self) -> Evaluator:
        self.sandbox.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.sandbox.close()

    @property
    def fingerprint(self) -> dict[str, str]:
        return self.sandbox.fingerprint(self.backend)

    def evaluate(self, task: Task, code: str, known_functional: Iterable[str] = frozenset(),
                 limits: Limits | None = None) -> EvaluationResult:
        """Run the cascade for one candidate. Raises TaskError only for a broken task."""
        limits = limits or self.limits
        if task.kind == "program" and task.settings.get("limits"):
            # The task knows how long and how big its own evaluator runs (config.yaml).
            limits = limits.model_copy(update=task.settings["limits"])
        if task.kind == "architecture":
            # Training takes the task's own time budget; the harness stops training early enough
            # to leave the checks after it room inside this limit.
            train_s = float(task.settings.get("budget", {}).get("time_limit_s", 0.0))
            limits = limits.model_copy(update={"timeout_s": max(limits.timeout_s, 1.25 * train_s + 30)})
        if task.kind not in ("kernel", "program", "architecture"):
            raise TaskError(f"{task.path}: task kind {task.kind!r} is not evaluated by the "
                            "sandbox yet; give a kernel, program or architecture task")
        start = time.monotonic()
        overrides: dict[str, Any] = dict(task.overrides)
        artifacts: dict[str, Any] = {"code_hash": normalized_hash(code)}
        check = (check_candidate if task.kind in ("kernel", "architecture")
                 else policy_for(task.source, task.settings))
        checked = False
        if limits.policy and check is not None:
            checked = True
            violations = check(code)
            if violations:
                syntax = violations[0].rule == "syntax"
                return EvaluationResult(
                    status=Status.COMPILE_ERROR if syntax else Status.REJECTED, stage="static",
                    error="; ".join(str(v) for v in violations),
                    flags=sorted({f"policy:{v.rule}" for v in violations}),
                    duration_s=time.monotonic() - start, overrides=overrides,
                    artifacts=artifacts,
                )  # fmt: skip
        if self.backend == "cuda" and (nvcc_error := nvcc_precheck(code)) is not None:
            return EvaluationResult(status=Status.COMPILE_ERROR, stage="compile", error=nvcc_error,
                                    flags=["nvcc_precheck"], duration_s=time.monotonic() - start,
                                    overrides=overrides, artifacts=artifacts)  # fmt: skip
        request = {
            "task": {"name": task.name, "kind": task.kind, "path": str(task.path),
                     "source": task.source, "overrides": dict(task.overrides),
                     "atol": task.atol, "rtol": task.rtol, "seed": task.seed,
                     **({"files": task.files, "settings": task.settings}
                        if task.kind in ("program", "architecture") else {})},
            "code": code, "backend": self.backend, "limits": limits.model_dump(),
            "known_functional": sorted(set(known_functional)),
            # This process already applied the policy (and so parsed the code): the harness
            # need not again. A request without the mark is checked there.
            "policy_checked": checked,
        }  # fmt: skip
        run = self.sandbox.run(request, limits)
        if run.task_error is not None:
            raise TaskError(run.task_error)
        result = _result_of(run, limits, code)
        result.overrides = overrides
        result.artifacts.update(artifacts)
        result.fingerprint = self.fingerprint
        result.duration_s = time.monotonic() - start
        if result.ok and result.speedup is not None:
            result.objectives.setdefault("speedup", result.speedup)
        return result


def _result_of(run: SandboxRun, limits: Limits, code: str) -> EvaluationResult:
    common: dict[str, Any] = {"logs": run.logs, "isolation": run.isolation}
    data = run.result
    if data is not None and run.sandbox_error is None and not run.flooded:
        status = Status(data.get("status", Status.RUNTIME_ERROR))
        speedup = data.get("speedup") if status is Status.OK else None
        return EvaluationResult(
            status=status, stage=data.get("stage", run.stage), error=data.get("error"),
            correct=bool(data.get("correct")) and status is Status.OK, speedup=speedup,
            score=_score(data, status, speedup), objectives=dict(data.get("objectives") or {}),
            metrics={k: float(v) for k, v in data.get("metrics", {}).items()},
            flags=list(data.get("flags", [])), functional_hash=data.get("functional_hash"),
            artifacts=dict(data.get("artifacts", {})), **common,
        )  # fmt: skip
    stage = run.stage or "startup"
    where = f"during stage {stage!r}"
    if run.sandbox_error is not None:
        return EvaluationResult(status=Status.TIMEOUT if run.timed_out else Status.RUNTIME_ERROR,
                                stage=stage, error=run.sandbox_error, flags=["sandbox_error"],
                                **common)
    if run.flooded:
        return EvaluationResult(status=Status.RUNTIME_ERROR, stage=stage, flags=["output_flood"],
                                error=f"the candidate flooded stdout/stderr (over the limit of "
                                f"{flood_limit(limits)} bytes) {where} and "
                                "was killed; print less.", **common)
    if run.timed_out:
        budget = limits.timeout_s + (limits.compile_timeout_s if needs_build(code) else 0.0)
        return EvaluationResult(status=Status.TIMEOUT, stage=stage, error=f"exceeded the "
                                f"wall-clock limit of {budget:g} s {where}; the whole process "
                                "group was killed.", **common)
    status = Status.COMPILE_ERROR if stage in ("static", "compile") else Status.RUNTIME_ERROR
    if run.signal is not None:
        name = _signal_name(run.signal)
        if run.signal == signal.SIGXCPU:
            return EvaluationResult(status=Status.TIMEOUT, stage=stage, error=f"exceeded the "
                                    f"CPU-time limit of {limits.cpu_s} s {where}.", **common)
        if run.signal == signal.SIGXFSZ:
            why = f"wrote a file larger than the {limits.fsize_mb} MB limit"
        elif run.signal in _CRASH_SIGNALS:
            why = f"crashed with {name}"
        elif run.signal == signal.SIGKILL:
            why = ("was killed by SIGKILL (likely the memory limit of "
                   f"{limits.memory_mb} MB or the machine's out-of-memory killer)")
        else:
            why = f"was terminated by {name}"
        return EvaluationResult(status=status, stage=stage, error=f"the candidate process {why} "
                                f"{where}.", **common)
    return EvaluationResult(status=status, stage=stage, error=f"the candidate process exited "
                            f"with code {run.exit_code} {where} without reporting a result "
                            "(os._exit or sys.exit in candidate code?).", **common)


def _score(data: dict[str, Any], status: Status, speedup: float | None) -> float:
    """Kernels score their speedup; program tasks report the evaluator's score."""
    if status is Status.OK and data.get("score") is not None:
        return float(data["score"])
    return float(speedup) if speedup is not None else 0.0


def evaluate(task: Task, code: str, backend: str = "cpu", sandbox: str = "process",
             limits: Limits | None = None) -> EvaluationResult:
    """One-shot convenience: start a sandbox, evaluate one candidate, stop the sandbox."""
    with Evaluator(sandbox=sandbox, backend=backend, limits=limits) as ev:
        return ev.evaluate(task, code)
