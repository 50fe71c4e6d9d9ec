"""`daedalus archive ...`: review runs and candidates from the terminal.

The archive (SQLAlchemy) is imported inside each command so `daedalus --help` stays fast.
Errors go to stderr with exit status 2 and say how to fix them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from daedalus.agent import cli_pareto, cli_review
from daedalus.agent.cli_render import code_panel, render_candidate
from daedalus.agent.cli_render import fmt_num as _num
from daedalus.agent.cli_render import fmt_when as _when
from daedalus.agent.cli_render import status_text as _status
from daedalus.agent.cli_review import BackendOpt, FingerprintOpt, SearchOpt, TaskOpt

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from daedalus.archive.models import Candidate, Run

app = typer.Typer(
    help="Review the archive: runs, candidates, the best result.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RunRef = Annotated[str, typer.Option("--run", "-r", help="Run id, unique id prefix, or 'latest'.")]


def _out() -> Console:
    # Piped output gets a wide page instead of rich's 80 columns, so tables stay readable
    # in files and pagers.
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=160)


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False).print(Text(f"error: {message}", style="red"))
    raise typer.Exit(2)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def _session() -> Iterator[Session]:
    """A read-only session on the archive; a missing archive or any archive error is a
    clean exit 2 with the fix."""
    from daedalus.archive.db import default_url, open_archive, sqlite_path
    from daedalus.archive.errors import ArchiveError

    url = default_url(create_dir=False)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        _fail(
            f"no archive at {path}. Fix: run `daedalus run TASK` in this directory first, "
            "or set DAEDALUS_DATABASE_URL to the archive you want to review."
        )
    from sqlalchemy.exc import DBAPIError

    try:
        archive = open_archive(url)
    except ArchiveError as exc:
        _fail(str(exc))
    except DBAPIError as exc:
        _fail(
            f"cannot open the archive at {url}: {exc.orig}. Fix: check DAEDALUS_DATABASE_URL "
            "(and that the database server is running), or unset it to use ./.daedalus/."
        )
    try:
        with archive.session(readonly=True) as session:
            yield session
    except ArchiveError as exc:
        _fail(str(exc))
    finally:
        archive.close()


def _require_runs(session: Session) -> None:
    from daedalus.archive import store

    if store.latest_run(session) is None:
        _fail(
            "the archive has no runs yet. Fix: start one with `daedalus run TASK` "
            "(for example `daedalus run swish_scale --iterations 20`)."
        )


def _resolve_run(session: Session, ref: str) -> Run:
    from daedalus.archive import store

    _require_runs(session)
    if ref == "latest":
        run = store.latest_run(session)
        assert run is not None
        return run
    return store.get_run(session, run_id=ref)


def _summary(c: Candidate) -> str:
    """One line for a listing: the error of a failure, else what the proposer said."""
    ev = c.evaluation
    if ev is not None and ev.error and c.status != "ok":
        return ev.error.strip().splitlines()[-1] if ev.error.strip() else ""
    if c.duplicate_of:
        return f"{c.duplicate_kind} duplicate of {c.duplicate_of[:12]}"
    return c.description.splitlines()[0] if c.description else ""


def _run_status(run: Run) -> Text:
    from daedalus.archive.serialize import run_process_alive

    colour = {"running": "cyan", "finished": "green", "failed": "red", "killed": "red"}
    if run_process_alive(run) is False:
        return Text("running (dead)", style="yellow")
    return Text(run.status, style=colour.get(run.status, ""))


@app.command("runs")
def runs_command(
    task: Annotated[str | None, typer.Option(help="Only runs of this task.")] = None,
    status: Annotated[
        str | None, typer.Option(help="running, stopped, finished, failed or killed.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs, newest first.")] = 50,
    backend: BackendOpt = None,
    fingerprint: FingerprintOpt = None,
    search: SearchOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    from daedalus.archive import store
    from daedalus.archive.models import RUN_STATUSES
    from daedalus.archive.serialize import run_to_dict

    if status is not None and status not in RUN_STATUSES:
        _fail(f"unknown run status {status!r}. Fix: use one of {', '.join(RUN_STATUSES)}.")
    with _session() as s:
        _require_runs(s)
        runs = store.list_runs(s, task=task, status=status, limit=limit)
        if backend or fingerprint or search:
            flt = {"backend": backend, "fingerprint": fingerprint, "search": search}
            runs = cli_review.runs_on(s, task=task, status=status, limit=limit, **flt)
        if as_json:
            _print_json([run_to_dict(r) for r in runs])
            return
        table = Table(title="Runs", title_justify="left")
        for col in ("id", "task", "status", "iters", "best", "cost $", "model", "created"):
            numeric = col in ("iters", "best", "cost $")
            table.add_column(
                col, justify="right" if numeric else "left", no_wrap=True, min_width=len(col)
            )
        for r in runs:
            table.add_row(
                r.id,
                r.task,
                _run_status(r),
                str(r.iterations),
                _num(r.best_score),
                f"{r.cost_usd:.4f}",
                Text(r.model, overflow="ellipsis"),
                _when(r.created_at),
            )
        _out().print(table if runs else Text("No runs match these filters."))


@app.command("list")
def list_command(
    run: Annotated[
        str | None,
        typer.Option(
            "--run", "-r", help="Run id, prefix or 'latest' (default: latest; all runs of --task)."
        ),
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status (ok, incorrect, pending, ...).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many candidates.")] = 50,
    sort: Annotated[str, typer.Option(help="'recent' (newest first) or 'score'.")] = "recent",
    task: TaskOpt = None,
    backend: BackendOpt = None,
    fingerprint: FingerprintOpt = None,
    search: SearchOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """List a run's candidates (or, with --task and no --run, those of every run of it)."""
    from daedalus.archive import store
    from daedalus.archive.models import CANDIDATE_STATUSES
    from daedalus.archive.serialize import candidate_to_dict

    if status is not None and status not in CANDIDATE_STATUSES:
        _fail(f"unknown status {status!r}. Fix: use one of {', '.join(CANDIDATE_STATUSES)}.")
    if sort not in ("recent", "score"):
        _fail(f"unknown sort {sort!r}. Fix: use --sort recent or --sort score.")
    with _session() as s:
        the_run = _resolve_run(s, run or "latest")
        if task or backend or fingerprint or search:
            scope = the_run if run or not task else None
            cands = cli_review.filtered(
                s,
                run_id=scope.id if scope else None,
                task=task,
                status=status,
                backend=backend,
                fingerprint=fingerprint,
                search=search,
                limit=limit,
                order=sort,
            )
        else:
            scope = the_run
            cands = store.list_candidates(
                s, run_id=the_run.id, status=status, limit=limit, order=sort
            )
        if as_json:
            _print_json([candidate_to_dict(c) for c in cands])
            return
        if scope is None:
            title = f"Task {task}: candidates of all its runs, {sort} first"
        else:
            counts = store.count_by_status(s, run_id=scope.id)
            summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            title = f"Run {scope.id} ({scope.task}): {summary or 'empty'}"
        table = Table(title=title, title_justify="left")
        for col in ("id", "seq", "status", "score", "speedup", "mode", "parent", "isl"):
            numeric = col in ("seq", "score", "speedup", "isl")
            table.add_column(
                col, justify="right" if numeric else "left", no_wrap=True, min_width=len(col)
            )
        table.add_column("description / error", overflow="ellipsis", no_wrap=True, ratio=1)
        for c in cands:
            ev = c.evaluation
            table.add_row(
                c.id[:12],
                str(c.seq),
                _status(c.status),
                _num(c.score),
                _num(ev.speedup if ev else None, ".3f"),
                c.mode,
                (c.parent_id or "-")[:8],
                str(c.island),
                Text(_summary(c)),
            )
        _out().print(table if cands else Text("No candidates match these filters."))


@app.command("show")
def show_command(
    candidate: Annotated[str, typer.Argument(help="Candidate id or unique id prefix.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one candidate: code, evaluation, logs, lineage and hardware."""
    from daedalus.archive import store
    from daedalus.archive.serialize import candidate_to_dict

    with _session() as s:
        _require_runs(s)
        c = store.get_candidate(s, candidate_id=candidate)
        ancestors = store.lineage(s, candidate_id=c.id)
        kids = store.children(s, candidate_id=c.id)
        if as_json:
            data = candidate_to_dict(c, code=True, prompt=True, evaluation=True)
            data["lineage"] = [a.id for a in ancestors]
            data["children"] = [k.id for k in kids]
            _print_json(data)
            return
        _out().print(render_candidate(c, ancestors, kids))


@app.command("best")
def best_command(
    run: RunRef = "latest",
    task: Annotated[
        str | None, typer.Option(help="Best of this task across all runs (ignores --run).")
    ] = None,
    backend: BackendOpt = None,
    fingerprint: FingerprintOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the best correct candidate of a run (default: the latest run) or of a task."""
    from daedalus.archive import store
    from daedalus.archive.serialize import candidate_to_dict

    with _session() as s:
        _require_runs(s)
        if backend or fingerprint:
            best = cli_review.best_on(s, run=run, task=task, backend=backend, fp=fingerprint)
        elif task is not None:
            top = store.top_candidates(s, task=task, limit=1)
            if not top:
                _fail(
                    f"no correct candidate for task {task!r} in any run. Fix: check the task "
                    "key with `daedalus archive runs`, or run `daedalus run TASK`."
                )
            best = top[0]
        else:
            the_run = _resolve_run(s, run)
            found = store.best_candidate(s, run_id=the_run.id)
            if found is None:
                counts = store.count_by_status(s, run_id=the_run.id)
                summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
                _fail(
                    f"run {the_run.id} ({the_run.task}) has no correct candidate yet "
                    f"(candidates: {summary}). Fix: continue it with `daedalus run "
                    f"{the_run.task} --resume {the_run.id}`, or look at the failures with "
                    f"`daedalus archive list --run {the_run.id}`."
                )
            best = found
        if as_json:
            data = candidate_to_dict(best, code=True)
            ev = best.evaluation
            data["metrics"] = ev.metrics if ev else {}
            data["fingerprint"] = ev.fingerprint if ev else {}
            _print_json(data)
            return
        ev = best.evaluation
        speedup = _num(ev.speedup if ev else None, ".3f")
        out = _out()
        title = Text.assemble(("best ", "bold"), (best.id, "bold green"))
        title.append(
            f"  run {best.run_id}  task {best.task}  score {_num(best.score)}  "
            f"speedup {speedup}x  ({best.mode} by {best.proposer})"
        )
        out.print(title)
        out.print(code_panel(best.code))
        out.print(Text(f"Details: daedalus archive show {best.id[:12]}", style="dim"))


cli_review.register(app)
cli_pareto.register(app)
