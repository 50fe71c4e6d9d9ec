"""The program-task cascade, run inside the sandbox child (the kernel one is ``harness.py``).

static policy -> compile -> load the task's evaluator -> [evaluate_stage1 -> threshold ->]
evaluate (or evaluate_stage2) [-> threshold -> evaluate_stage3] -> score. The user's
evaluator and the candidate share this child process, exactly as OpenEvolve runs them,
so the sandbox's limits (wall clock, CPU time, memory, files, network, processes) bound
both; the first failing stage decides the status, as for kernels:

- ``rejected`` / ``compile_error``: the static policy, or the program does not compile;
- ``runtime_error``: an evaluate function raised (the candidate's exception escaped it), or
  returned something that is not metrics;
- ``incorrect``: the evaluator reported an ``error`` string, a cascade stage scored below
  its threshold, or the score is missing or not finite (NaN, inf);
- ``ok``: a finite score. Timeouts and crashes are decided by the fork server.

The evaluator's artifacts (``EvaluationResult.artifacts`` and any text values beside the
metrics) come back in ``artifacts["evaluator"]``, bounded, for the next prompt.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daedalus.sandbox.program_policy import check_program
from daedalus.sandbox.result import Limits, Status
from daedalus.tasks.model import TaskError

Emit = Callable[[dict[str, Any]], None]
DEFAULT_THRESHOLDS = (0.5, 0.75, 0.9)  # OpenEvolve's defaults
MAX_ARTIFACT_BYTES = 20 * 1024
MAX_ARTIFACTS_TOTAL = 64 * 1024
_TRACE_CHARS = 2000


class _Failure(Exception):
    def __init__(self, status: Status, stage: str, message: str) -> None:
        super().__init__(message)
        self.status, self.stage, self.message = status, stage, message


@dataclass
class Outcome:
    """What the evaluator said, normalised: numeric metrics, flags, text artifacts."""

    metrics: dict[str, float] = field(default_factory=dict)
    booleans: set[str] = field(default_factory=set)  # metrics that were bools (not scores)
    artifacts: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def merge(self, other: Outcome) -> None:
        self.metrics.update(other.metrics)
        self.booleans |= other.booleans
        self.artifacts.update(other.artifacts)
        self.error = other.error


def _clip(text: str, limit: int) -> str:
    data = text.encode(errors="replace")
    if len(data) <= limit:
        return text
    return data[:limit].decode(errors="ignore") + f"\n... ({len(data) - limit} bytes cut)"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else repr(value)


def _is_bool(value: Any) -> bool:
    return type(value).__name__ in ("bool", "bool_")


def _number(value: Any) -> float | None:
    if _is_bool(value) or isinstance(value, str | bytes):
        return None
    try:
        return float(value)  # numpy scalars and 0-d arrays too
    except (TypeError, ValueError, OverflowError):
        return None


def normalise(raw: Any, stage: str, max_bytes: int) -> Outcome:
    """A dict of metrics, or an object with ``.metrics`` (and ``.artifacts``), as an Outcome."""
    extra: dict[Any, Any] = {}
    if isinstance(raw, dict):
        metrics = raw
    elif isinstance(getattr(raw, "metrics", None), dict):
        metrics = raw.metrics
        extra = getattr(raw, "artifacts", None) or {}
        if not isinstance(extra, dict):
            extra = {"artifacts": extra}
    else:
        raise _Failure(Status.RUNTIME_ERROR, stage, f"{stage}() returned {type(raw).__name__}, "
                       "not a dict of metrics (or an EvaluationResult); fix the evaluator or "
                       "whatever the program changed in it.")
    out = Outcome()
    for key, value in metrics.items():
        name = str(key)
        if value is None:
            continue
        if _is_bool(value):
            out.metrics[name] = float(bool(value))
            out.booleans.add(name)
        elif (number := _number(value)) is not None:
            out.metrics[name] = number
        elif name == "error" and _text(value).strip():
            out.error = _clip(_text(value).strip(), max_bytes)
        else:
            out.artifacts[name] = _clip(_text(value), max_bytes)
    for key, value in extra.items():
        out.artifacts[str(key)] = _clip(_text(value), max_bytes)
    return out


def stage_score(metrics: dict[str, float], booleans: set[str]) -> float | None:
    """OpenEvolve's threshold score: combined_score, else the mean of numeric metrics."""
    if "combined_score" in metrics:
        return metrics["combined_score"]
    values = [v for k, v in metrics.items() if k != "error" and k not in booleans]
    return sum(values) / len(values) if values else None


@dataclass
class EvaluationResult:
    """OpenEvolve's ``EvaluationResult``, for evaluators that import it where OpenEvolve is
    not installed (defined once here: the fork server's children inherit it)."""

    metrics: dict[str, Any]
    artifacts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, metrics: dict[str, Any]) -> EvaluationResult:
        return cls(metrics=metrics)

    def to_dict(self) -> dict[str, Any]:
        return self.metrics

    def has_artifacts(self) -> bool:
        return bool(self.artifacts)


# Filled by the fork server before it forks (``prepare_evaluator``), inherited by children.
_openevolve_installed: bool | None = None
_compiled: dict[tuple[str, str], types.CodeType] = {}
_COMPILED_MAX = 8


def _openevolve_is_installed() -> bool:
    """Whether OpenEvolve itself is importable (looked up once, in the fork server)."""
    global _openevolve_installed
    if _openevolve_installed is None:
        _openevolve_installed = importlib.util.find_spec("openevolve") is not None
    return _openevolve_installed


def _evaluator_file(spec: dict[str, Any]) -> tuple[str, str, str | None]:
    """(file name, path shown in messages and tracebacks, source sent with the task)."""
    name = spec.get("settings", {}).get("evaluator_file", "evaluator.py")
    source = spec.get("files", {}).get(name)
    return name, f"{spec.get('path', '')}/{name}", source if isinstance(source, str) else None


def prepare_evaluator(spec: dict[str, Any]) -> None:
    """In the fork server, before forking: compile the task's evaluator once, so each child
    runs the compiled code instead of parsing the file again, and look for OpenEvolve once.
    Compiling runs none of the evaluator's code; a file that does not compile is left to
    the child, which reports it exactly as before."""
    _openevolve_is_installed()
    name, where, source = _evaluator_file(spec)
    if source is None or (name, source) in _compiled:
        return
    try:
        code = compile(source, where, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return
    while len(_compiled) >= _COMPILED_MAX:
        _compiled.pop(next(iter(_compiled)))
    _compiled[(name, source)] = code


def _install_openevolve_shim(taskdir: Path) -> None:
    """Evaluators written for OpenEvolve import its EvaluationResult; provide one when
    OpenEvolve is not installed, so such evaluators run unchanged."""
    if "openevolve" in sys.modules or _openevolve_is_installed():
        return
    if (taskdir / "openevolve.py").exists() or (taskdir / "openevolve").is_dir():
        return  # the task ships its own
    package = types.ModuleType("openevolve")
    package.__path__ = []
    module = types.ModuleType("openevolve.evaluation_result")
    module.EvaluationResult = EvaluationResult  # type: ignore[attr-defined]
    package.evaluation_result = module  # type: ignore[attr-defined]
    package.EvaluationResult = EvaluationResult  # type: ignore[attr-defined]
    sys.modules.update({"openevolve": package, "openevolve.evaluation_result": module})


def _load_evaluator(spec: dict[str, Any], workdir: Path) -> types.ModuleType:
    taskdir = workdir / "task"
    taskdir.mkdir(exist_ok=True)
    for file, text in spec.get("files", {}).items():
        if Path(file).name == file and not file.startswith("."):
            (taskdir / file).write_text(text, encoding="utf-8")
    name, where, source = _evaluator_file(spec)
    sys.path.insert(0, str(taskdir))  # as OpenEvolve does: the evaluator's own helpers
    _install_openevolve_shim(taskdir)
    loader_spec = importlib.util.spec_from_file_location("evaluation_module", taskdir / name)
    if loader_spec is None or loader_spec.loader is None:
        raise TaskError(f"{where}: cannot be loaded as a Python module; check the file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules["evaluation_module"] = module
    try:
        if source is None:  # not sent with the task: the loader reports what is wrong
            loader_spec.loader.exec_module(module)
        else:  # what exec_module does, with the code the fork server compiled if it could
            code = _compiled.get((name, source)) or compile(source, where, "exec", dont_inherit=True)
            exec(code, module.__dict__)
    except BaseException as exc:
        raise TaskError(f"{where}: importing the evaluator raised {type(exc).__name__}: {exc}; "
                        "fix the evaluator (or install what it imports)") from None
    return module


def preload_evaluator(req: dict[str, Any], workdir: Path) -> types.ModuleType | TaskError:
    """A spare child's evaluator, loaded before its candidate arrives; a broken evaluator's
    error is kept and raised where a fresh child would raise it."""
    try:
        return _load_evaluator(req["task"], workdir)
    except TaskError as exc:
        return exc


def _stages(module: types.ModuleType, settings: dict[str, Any]) -> list[tuple[str, Any]]:
    if settings.get("cascade", True) and callable(getattr(module, "evaluate_stage1", None)):
        # Unlike OpenEvolve, a cascade without evaluate_stage2 goes on to evaluate().
        stages = [("evaluate_stage1", module.evaluate_stage1)]
        for name in ("evaluate_stage2", "evaluate"):
            if callable(getattr(module, name, None)):
                stages.append((name, getattr(module, name)))
                break
        if callable(third := getattr(module, "evaluate_stage3", None)):
            stages.append(("evaluate_stage3", third))
        return stages
    if not callable(getattr(module, "evaluate", None)):
        raise TaskError("the evaluator defines no evaluate(program_path) function; add one")
    return [("evaluate", module.evaluate)]


def _call(fn: Any, name: str, program: Path) -> Any:
    try:
        return fn(str(program))
    except BaseException as exc:  # SystemExit too: the program may not end the harness
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        trace = trace[-_TRACE_CHARS:]
        kind = "called sys.exit" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}"
        raise _Failure(Status.RUNTIME_ERROR, name, f"{name}() {kind}: {exc}\n{trace}") from None


def _final_score(outcome: Outcome, settings: dict[str, Any], flags: list[str]) -> float:
    key = settings.get("score", "combined_score")
    if key in outcome.metrics:
        score = outcome.metrics[key]
    elif key in outcome.artifacts:
        raise _Failure(Status.INCORRECT, "score", f"the score metric {key!r} is "
                       f"{outcome.artifacts[key][:80]!r}, not a number.")
    elif settings.get("score_explicit"):
        raise _Failure(Status.INCORRECT, "score", f"the evaluator returned no {key!r} metric "
                       f"(it returned: {', '.join(sorted(outcome.metrics)) or 'none'}).")
    else:
        average = stage_score(outcome.metrics, outcome.booleans)
        if average is None:
            raise _Failure(Status.INCORRECT, "score", f"the evaluator returned no {key!r} and "
                           "no numeric metric to average.")
        score = average
        flags.append("score_is_metric_average")  # OpenEvolve's fallback
    if not math.isfinite(score):
        raise _Failure(Status.INCORRECT, "score", f"non-finite score: {key}={score}; a score "
                       "must be a finite number.")
    return score


def run_program(req: dict[str, Any], workdir: Path, emit: Emit,
                preloaded: types.ModuleType | TaskError | None = None) -> dict[str, Any]:
    """Evaluate ``req["code"]`` against a program task; the dict is the harness's result.

    Raises ``TaskError`` when the task's evaluator cannot be loaded; candidate failures are
    data. ``preloaded``: the evaluator a spare child loaded already (``preload_evaluator``).
    """
    limits = Limits(**req.get("limits", {}))
    spec: dict[str, Any] = req["task"]
    settings: dict[str, Any] = spec.get("settings", {})
    code: str = req["code"]
    max_bytes = int(settings.get("max_artifact_bytes", MAX_ARTIFACT_BYTES))
    result: dict[str, Any] = {"metrics": {}, "flags": [], "artifacts": {}, "correct": False,
                              "speedup": None, "score": None, "objectives": {},
                              "functional_hash": None, "error": None}  # fmt: skip
    merged = Outcome()
    marks: list[tuple[str, float]] = []

    def stage(name: str) -> None:
        marks.append((name, time.perf_counter()))
        result["stage"] = name
        emit({"event": "stage", "stage": name})

    try:
        stage("static")
        checked = limits.policy and settings.get("policy", "on") != "off"
        if checked and not req.get("policy_checked"):  # the Evaluator checked it already
            violations = check_program(code, initial=spec.get("source", ""),
                                       extra=tuple(settings.get("allowed_imports") or ()))
            if violations:
                status = Status.COMPILE_ERROR if violations[0].rule == "syntax" else Status.REJECTED
                raise _Failure(status, "static", "; ".join(str(v) for v in violations))
        stage("compile")
        program = workdir / "program" / settings.get("program_file", "program.py")
        program.parent.mkdir(exist_ok=True)
        program.write_text(code, encoding="utf-8")
        if not checked:  # the policy parsed it already; without it, say "compile_error" here
            try:
                compile(code, str(program), "exec")
            except (SyntaxError, ValueError) as exc:
                raise _Failure(Status.COMPILE_ERROR, "compile",
                               f"the program does not compile: {exc}") from None
        stage("load_evaluator")
        if isinstance(preloaded, TaskError):
            raise preloaded
        module = preloaded or _load_evaluator(spec, workdir)
        stages = _stages(module, settings)
        thresholds = list(settings.get("cascade_thresholds") or DEFAULT_THRESHOLDS)
        for i, (name, fn) in enumerate(stages):
            stage(name)
            outcome = normalise(_call(fn, name, program), name, max_bytes)
            merged.merge(outcome)
            if outcome.error:
                raise _Failure(Status.INCORRECT, name, f"the evaluator reported: {outcome.error}")
            if i + 1 < len(stages) and i < len(thresholds):
                got = stage_score(outcome.metrics, outcome.booleans)
                if got is None or not got >= thresholds[i]:
                    raise _Failure(Status.INCORRECT, name, f"{name} scored {got}, below the "
                                   f"cascade threshold {thresholds[i]:g}; the later stages "
                                   "did not run.")
        stage("score")
        score = _final_score(merged, settings, result["flags"])
        result.update(status=Status.OK.value, correct=True, score=score,
                      objectives={settings.get("score", "combined_score"): score})
    except _Failure as failure:
        result.update(status=failure.status.value, stage=failure.stage, error=failure.message,
                      correct=False, score=None)
    marks.append(("end", time.perf_counter()))
    for name, value in merged.metrics.items():
        if math.isfinite(value):
            result["metrics"][name] = value
        else:  # JSON and the archive hold finite numbers only; keep the fact as text
            result["artifacts"].setdefault("nonfinite_metrics", {})[name] = repr(value)
    for (name, start), (_, end) in itertools.pairwise(marks):
        result["metrics"][f"seconds_{name}"] = end - start
    if settings.get("include_artifacts", True) and merged.artifacts:
        kept: dict[str, str] = {}
        total = 0
        for key, text in merged.artifacts.items():
            size = len(text.encode(errors="replace"))
            if total + size > MAX_ARTIFACTS_TOTAL:
                result["flags"].append("artifacts_truncated")
                break
            kept[key] = text
            total += size
        result["artifacts"]["evaluator"] = kept
    return result
