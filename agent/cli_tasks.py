"""`daedalus tasks ...`: list, show and check tasks.

Only the task loader is imported at start-up (it reads files, it never runs them);
torch and the sandbox are imported inside `check`, the one command that executes code.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from daedalus.tasks import Task, TaskError, constants_of, list_all_tasks, load_task, parse_overrides
from daedalus.tasks.check import CheckReport, Outcome

if TYPE_CHECKING:
    from daedalus.sandbox import Evaluator, Limits
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(help="List, inspect and sanity-check tasks: kernels, architectures, programs.", no_args_is_help=True)

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="NAME=VALUE",
        help="Override a module-level constant of the task file (repeatable), e.g. --set dim=1024.",
    ),
]
CHECK_TIMING_BUDGET_S = 0.5
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _console(stderr: bool = False) -> Console:
    # markup off: task names like "relu[dim=1024]" and error texts must print verbatim.
    return Console(stderr=stderr, highlight=False, soft_wrap=False, markup=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _console(stderr=True).print(Text("error: ", style="bold red") + Text(message))
    return typer.Exit(code)


def _load(name_or_path: str, overrides: list[str] | None) -> Task:
    try:
        return load_task(name_or_path, parse_overrides(overrides or []))
    except TaskError as exc:
        raise _fail(str(exc)) from exc


def task_record(task: Task) -> dict[str, Any]:
    """The JSON shape of a task in `tasks list --json` and `tasks show --json`."""
    return {
        "name": task.name,
        "kind": task.kind,
        "category": task.category,
        "description": task.description,
        "path": str(task.path),
        "atol": task.atol,
        "rtol": task.rtol,
        "backends": list(task.backends),
        "objectives": [{"name": o.name, "direction": o.direction} for o in task.objectives],
        "features": list(task.features),
        "seed": task.seed,
        "constants": constants_of(task),
        "overrides": dict(task.overrides),
    }


KINDS = ("kernel", "architecture", "program")


@app.command("list")
def list_command(
    as_json: JsonOption = False,
    kind: Annotated[
        str, typer.Option("--kind", help="Only this kind: kernel, architecture, program or all.")
    ] = "all",
) -> None:
    """List the shipped tasks: kernels, architecture folders and program folders."""
    if kind != "all" and kind not in KINDS:
        raise _fail(f"unknown kind {kind!r}; choose one of: all, {', '.join(KINDS)}")
    try:
        tasks = list_all_tasks(KINDS if kind == "all" else (kind,))
    except TaskError as exc:
        raise _fail(f"the shipped library is broken: {exc}") from exc
    if as_json:
        typer.echo(json.dumps([task_record(t) for t in tasks], indent=2))
        return
    counts = ", ".join(f"{sum(t.kind == k for t in tasks)} {k}" for k in KINDS
                       if any(t.kind == k for t in tasks))
    table = Table(title=f"{len(tasks)} shipped tasks ({counts})", title_justify="left")
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("category", style="magenta", no_wrap=True)
    table.add_column("description")
    for task in tasks:
        table.add_row(task.name, task.kind, task.category, task.description)
    console = _console()
    console.print(table)
    console.print(
        "Show one with [bold]daedalus tasks show NAME[/]; any KernelBench file loads by path, "
        "any architecture or program folder by its path.",
        markup=True,
    )


@app.command("show")
def show_command(
    name_or_path: Annotated[
        str, typer.Argument(metavar="NAME_OR_PATH", help="A task name or a path.")
    ],
    overrides: SetOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a task's metadata and its source (with any --set overrides applied)."""
    from rich.syntax import Syntax

    from daedalus.tasks.source import apply_overrides

    task = _load(name_or_path, overrides)
    record = task_record(task)
    if as_json:
        typer.echo(json.dumps({**record, "source": task.source}, indent=2))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in ("name", "kind", "category", "description", "path", "atol", "rtol"):
        table.add_row(key, str(record[key]))
    table.add_row("backends", ", ".join(task.backends))
    table.add_row("objectives", ", ".join(f"{o.name} ({o.direction})" for o in task.objectives))
    table.add_row("features", ", ".join(task.features))
    constants = ", ".join(f"{k}={v}" for k, v in record["constants"].items()) or "none"
    table.add_row("constants", constants)
    if task.overrides:
        table.add_row("overrides", ", ".join(f"{k}={v!r}" for k, v in task.overrides.items()))
    console = _console()
    console.print(table)
    console.print()
    source = apply_overrides(task.source, dict(task.overrides), str(task.path))
    console.print(Syntax(source, "python", line_numbers=True, word_wrap=False))


@app.command("check")
def check_command(
    name_or_path: Annotated[
        str, typer.Argument(metavar="NAME_OR_PATH", help="A task name or a path.")
    ],
    overrides: SetOption = None,
    backend: Annotated[str, typer.Option(help="Backend to evaluate on.")] = "cpu",
    sandbox: Annotated[str, typer.Option(help="Sandbox to run candidates in: process, docker, or auto (docker when an engine answers).")] = "process",
    as_json: JsonOption = False,
) -> None:
    """Run trivial baselines (zeros, first input, constant, cached output) against a task.

    Exit 0: no baseline passes. Exit 1: some baseline passes, so the task cannot tell it
    from a real solution. Exit 2: the task is broken or the check is inconclusive.
    """
    from daedalus.sandbox.backends import BackendUnavailable

    task = _load(name_or_path, overrides)
    try:
        report = run_check(task, backend=backend, sandbox=sandbox)
    except TaskError as exc:
        raise _fail(str(exc)) from exc
    except (BackendUnavailable, ValueError) as exc:  # an unknown backend or sandbox name
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(report_record(report), indent=2))
    else:
        _print_report(report)
    raise typer.Exit(report.exit_code)


def run_check(
    task: Task,
    *,
    backend: str = "cpu",
    sandbox: str = "process",
    limits: Limits | None = None,
    evaluator: Evaluator | None = None,
    control: bool = True,
) -> CheckReport:
    """The degenerate-task check of ``task`` through the real evaluator.

    The reference runs here first, so a broken task is reported as broken (TaskError)
    before any candidate is evaluated. Pass ``evaluator`` to reuse a warm one across tasks.
    """
    from daedalus.tasks.check import check_task, reference_run

    run = reference_run(task)
    if evaluator is not None:
        return check_task(
            task,
            lambda t, code: evaluator.evaluate(t, code, limits=limits),
            run=run,
            control=control,
        )
    from daedalus.sandbox import Evaluator

    if limits is None:
        from daedalus.sandbox import Limits

        # The check is about correctness; a short timing budget keeps the control quick.
        limits = Limits(timing_budget_s=CHECK_TIMING_BUDGET_S)
    with Evaluator(sandbox=sandbox, backend=backend, limits=limits) as warm:
        return check_task(task, lambda t, code: warm.evaluate(t, code), run=run, control=control)


def report_record(report: CheckReport) -> dict[str, Any]:
    def outcome(o: Outcome) -> dict[str, Any]:
        return {
            "baseline": o.baseline.name,
            "description": o.baseline.description,
            "status": o.status,
            "passed": o.passed,
            "stage": o.stage,
            "error": o.error,
        }

    return {
        "task": report.task.key,
        "degenerate": bool(report.passing),
        "inconclusive": report.inconclusive,
        "control": outcome(report.control) if report.control else None,
        "baselines": [outcome(o) for o in report.outcomes],
        "exit_code": report.exit_code,
    }


def _print_report(report: CheckReport) -> None:
    console = _console()
    table = Table(title=f"degenerate-task check: {report.task.key}", title_justify="left")
    table.add_column("baseline", style="bold")
    table.add_column("what it does")
    table.add_column("status")
    table.add_column("verdict")
    table.add_column("detail", overflow="fold", max_width=60)
    rows = ([report.control] if report.control else []) + list(report.outcomes)
    for o in rows:
        if o.baseline.name == "reference":
            verdict = Text.from_markup(
                "[green]passes (as it must)[/]" if o.passed else "[red]FAILS[/]"
            )
        elif o.status == "skipped":
            verdict = Text("not applicable", style="dim")
        else:
            verdict = Text.from_markup("[bold red]PASSES[/]" if o.passed else "[green]rejected[/]")
        table.add_row(
            o.baseline.name, o.baseline.description, o.status, verdict, (o.error or "")[:300]
        )
    console.print(table)
    if report.inconclusive:
        console.print(Text("inconclusive: ", style="bold red") + Text(report.inconclusive))
    elif report.passing:
        names = ", ".join(o.baseline.name for o in report.passing)
        console.print(
            f"[bold yellow]warning:[/] baseline(s) {names} pass: this task cannot tell them apart "
            "from a real solution. Make the output depend on every input (avoid outputs that "
            "are ~0, ~constant or equal to an input), or tighten atol/rtol in the sidecar .toml.",
            markup=True,
        )
    else:
        console.print(Text("ok: ", style="green") + Text("no trivial baseline passes this task."))
