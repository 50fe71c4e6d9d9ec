"""`daedalus eval TASK CANDIDATE.py`: evaluate one candidate against one task.

Exit codes: 0 when the evaluation completed (whatever the candidate's status), 2 for usage
and task errors, 1 when the evaluator itself could not run. The sandbox and the task
loader are imported inside the command so `daedalus --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from daedalus.sandbox import EvaluationResult
    from daedalus.tasks import Task

_STATUS_STYLE = {
    "ok": "bold green",
    "incorrect": "bold yellow",
    "rejected": "bold magenta",
    "compile_error": "bold red",
    "runtime_error": "bold red",
    "timeout": "bold red",
}
LOG_LINES = 20


def _fail(message: str, code: int = 2) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def eval_command(
    task: Annotated[str, typer.Argument(
        help="A shipped task name (see `daedalus tasks list`) or a KernelBench-format .py file.")],
    candidate: Annotated[Path, typer.Argument(
        help="The candidate .py file; it defines class ModelNew like the task's Model.")],
    backend: Annotated[str, typer.Option(
        "--backend", help="Hardware backend: cpu, cuda, triton, npu or auto.")] = "cpu",
    sandbox: Annotated[str, typer.Option(
        "--sandbox", help="Isolation: process (fork server), docker, or auto (docker when an engine answers).")] = "process",
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", metavar="NAME=VALUE",
        help="Override a module-level constant of the task (repeatable), e.g. --set dim=1024.",
    )] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=0.1, help="Wall-clock limit for the candidate in seconds (default 60).",
    )] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead of the report.")] = False,
) -> None:
    """Evaluate one candidate file against a task in the sandbox and report the result."""
    from daedalus.sandbox import Evaluator, Limits
    from daedalus.sandbox.backends import BackendUnavailable
    from daedalus.tasks import TaskError, load_task, parse_overrides

    try:
        loaded = load_task(task, parse_overrides(overrides or []))
    except TaskError as exc:
        raise _fail(str(exc)) from exc
    try:
        code = candidate.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read the candidate {candidate} ({exc}); give the path to a .py "
                    "file that defines class ModelNew") from exc
    limits = Limits() if timeout is None else Limits(timeout_s=timeout)
    try:
        evaluator = Evaluator(sandbox=sandbox, backend=backend, limits=limits)
    except (BackendUnavailable, ValueError) as exc:
        raise _fail(str(exc)) from exc
    try:  # the sandbox starts on first use: a candidate the policy rejects costs no fork
        result = evaluator.evaluate(loaded, code)
    except TaskError as exc:
        raise _fail(str(exc)) from exc
    except (RuntimeError, OSError) as exc:
        raise _fail(f"the evaluator could not run: {exc}", code=1) from exc
    finally:
        evaluator.close()
    if as_json:
        record = {"task": loaded.key, "candidate": str(candidate),
                  **result.model_dump(mode="json")}
        typer.echo(json.dumps(record))
    else:
        report(loaded, candidate, result, Console(highlight=False))


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def report(task: Task, candidate: Path, result: EvaluationResult, console: Console) -> None:
    """The human-readable report of one evaluation."""
    style = _STATUS_STYLE.get(result.status.value, "bold")
    console.print(f"[bold]{escape(task.key)}[/]  ←  {escape(str(candidate))}")
    console.print(f"status [{style}]{result.status.value}[/] (stage {result.stage or '-'})  "
                  f"correct {'yes' if result.correct else 'no'}  speedup "
                  f"{_fmt(result.speedup, '.3f')}  score {result.score:.3f}  "
                  f"({result.duration_s:.1f} s)")
    m = result.metrics
    if "ref_ms" in m:
        table = Table(box=None, pad_edge=False)
        for column in ("", "median ms", "IQR/median", "repeats"):
            table.add_column(column, justify="right" if column else "left")
        repeats = str(int(m.get("repeats", 0)))
        table.add_row("reference", _fmt(m.get("ref_ms"), ".4g"), _fmt(m.get("ref_iqr_rel"), ".1%"),
                      repeats)
        table.add_row("candidate", _fmt(m.get("cand_ms"), ".4g"),
                      _fmt(m.get("cand_iqr_rel"), ".1%"), repeats)
        console.print(table)
        console.print(f"threads {int(m.get('threads', 1))}, max abs error "
                      f"{_fmt(m.get('max_abs_error'))}, trials {int(m.get('trials', 0))}")
    elif m.get("timing_meaningful") == 0.0:
        console.print("timing: not meaningful on this backend (Triton interpreter); "
                      f"max abs error {_fmt(m.get('max_abs_error'))}")
    if result.flags:
        console.print("flags: " + ", ".join(result.flags), markup=False)
    if result.error:
        console.print(f"[{style}]error:[/] {escape(result.error)}")
    if result.isolation:
        console.print("isolation: " + ", ".join(f"{k} {v}" for k, v in result.isolation.items()),
                      markup=False)
    if result.overrides:
        console.print("overrides: " + ", ".join(f"{k}={v}" for k, v in result.overrides.items()),
                      markup=False)
    fp = result.fingerprint
    if fp:
        console.print(f"machine: {fp.get('device', '?')} ({fp.get('cores', '?')} cores), torch "
                      f"{fp.get('torch', '?')}, python {fp.get('python', '?')}", markup=False)
    if result.logs.strip():
        tail = result.logs.rstrip().splitlines()[-LOG_LINES:]
        console.print(f"candidate output (last {len(tail)} lines):")
        console.print("\n".join(tail), markup=False, highlight=False)
