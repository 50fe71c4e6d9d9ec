"""`daedalus run`: an autonomous discovery run with a live progress display."""

from __future__ import annotations

import functools
import gc
import json
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from daedalus.agent.runtime import RunContext


def _collector_off_at_start(command: Callable[..., None]) -> Callable[..., None]:
    """Start-up imports ~500,000 long-lived objects, and the cyclic collector would walk
    them again and again while they load (about 1 s of CPU before the first request):
    keep it off until ``drive``'s import thread freezes them and turns it back on (and on
    again here, whatever happens, for callers that stay alive, such as tests)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        gc.disable()
        try:
            command(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper


@_collector_off_at_start
def run_command(
    task: str = typer.Argument(None, help="A shipped task name, a KernelBench-format file, or a program task directory (initial_program.py + evaluator.py, e.g. an OpenEvolve example)."),
    iterations: int = typer.Option(None, "--iterations", "-n", help="Proposals to make (default 40)."),
    workers: int = typer.Option(None, "--workers", "-w", help="Evaluations in flight at once (default 2)."),
    lookahead: int = typer.Option(None, "--lookahead", help="Proposals prepared while every worker is busy (default 1; 0: none)."),
    proposer: list[str] = typer.Option(None, "--proposer", "-p", help="builtin (offline default) or llm; repeat to mix."),
    model: list[str] = typer.Option(None, "--model", "-m", help="litellm model string, e.g. openai/gpt-4o; repeatable."),
    api_base: str = typer.Option(None, "--api-base", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."),
    budget_usd: float = typer.Option(None, "--budget-usd", help="Stop when LLM spend reaches this many USD."),
    time_limit: float = typer.Option(None, "--time-limit", help="Stop proposing after this many seconds."),
    device_seconds: float = typer.Option(None, "--device-seconds", help="Stop after this much evaluation time."),
    target_score: float = typer.Option(None, "--target-score", help="Stop when the best score reaches this."),
    backend: str = typer.Option(None, "--backend", help="cpu (default), cuda, triton, npu."),
    sandbox: str = typer.Option(None, "--sandbox", help="Isolation: process (default, fork server), docker, or auto (docker when an engine answers)."),
    executor: str = typer.Option(None, "--executor", help="Where evaluations run: local (default) or ray."),
    ray_address: str = typer.Option(None, "--ray-address", help="Ray cluster for --executor ray: auto (default) or HOST:PORT."),
    threads: int = typer.Option(None, "--threads", help="Torch threads per evaluation (default 1)."),
    timeout: float = typer.Option(None, "--timeout", help="Wall-clock limit per candidate in seconds (default 60)."),
    compile_timeout: float = typer.Option(None, "--compile-timeout", help="Limit for candidates that build C++ or compile (default 180)."),
    seed: int = typer.Option(None, "--seed", help="Random seed for planning and the built-in proposer."),
    sets: list[str] = typer.Option(None, "--set", help="Override a task constant: NAME=VALUE (repeatable)."),
    config_file: str = typer.Option(None, "--config", help="TOML file with run settings ([run] table)."),
    resume: str = typer.Option(None, "--resume", help="Continue a stopped or killed run by id (prefix ok)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary instead of the live display."),
) -> None:
    """Launch an autonomous discovery run (or --resume one) and archive every candidate."""
    from pathlib import Path

    from daedalus.agent.config import RunConfig, load_config_file
    from daedalus.agent.launch import LaunchError, create_run, drive
    from daedalus.archive import store
    from daedalus.archive.db import open_archive
    from daedalus.tasks import load_task, parse_overrides
    from daedalus.tasks.model import TaskError

    given = {
        "iterations": iterations, "workers": workers, "lookahead": lookahead, "proposers": proposer or None, "models": model or None,
        "api_base": api_base, "budget_usd": budget_usd, "time_limit_s": time_limit,
        "device_seconds": device_seconds, "target_score": target_score, "backend": backend,
        "sandbox": sandbox, "threads": threads, "seed": seed, "timeout_s": timeout,
        "compile_timeout_s": compile_timeout, "executor": executor,
        "ray_address": ray_address,
    }
    given = {k: v for k, v in given.items() if v is not None}
    archive = open_archive()
    try:
        if resume:
            with archive.session() as s:
                run = store.get_run(s, run_id=resume)
                run_id, settings = run.id, dict(run.config)
            elapsed = float(settings.pop("elapsed_s", 0.0) or 0.0)
            config = RunConfig(**{**settings, **given})
        else:
            if not task:
                _fail("name a task (see `daedalus tasks list`) or pass --resume RUN_ID")
            settings = load_config_file(Path(config_file)) if config_file else {}
            overrides = parse_overrides(sets or [])
            loaded = load_task(task, overrides or None)
            defaults = _program_defaults(loaded) if loaded.kind == "program" else {}
            name = str(loaded.path) if loaded.kind == "program" and Path(task).is_dir() else task
            config = RunConfig(**{**defaults, **settings, **given, "task": name, "overrides": overrides})
            elapsed = 0.0
        if resume:
            loaded = load_task(config.task, config.overrides or None)
        if "llm" in config.proposers and not (config.models or config.default_model):
            _fail("--proposer llm needs a model: pass --model provider/name (or set DAEDALUS_MODEL), "
                  "and --api-base for a local OpenAI-compatible server")
        if not resume:
            run_id = create_run(archive, loaded, config)
    except (TaskError, LaunchError, ValueError, LookupError) as exc:
        _fail(str(exc))

    display = _Display(run_id, config.iterations, quiet=as_json,
                       metric="speedup" if loaded.kind == "kernel" else "score")
    holder: dict[str, RunContext] = {}

    def on_sigint(signum: int, frame: Any) -> None:
        ctx = holder.get("ctx")
        if ctx is None or ctx.stop_event.is_set():
            raise KeyboardInterrupt
        ctx.stop_event.set()
        display.note("stopping: finishing the current step (Ctrl-C again to abort now)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    started = time.monotonic()
    stop_reason: str | None = None
    try:
        with display:
            ctx = drive(archive, loaded, config, run_id, on_event=display.event,
                        elapsed_before=elapsed, context_hook=lambda c: holder.update(ctx=c))
            display.refresh(ctx)
            stop_reason = ctx.stop_reason
    except KeyboardInterrupt:
        with archive.session() as s, s.begin():
            store.update_run_status(s, run_id=run_id, status="stopped")
        typer.echo(f"\naborted; resume with: daedalus run --resume {run_id}", err=True)
        raise typer.Exit(130) from None
    except LaunchError as exc:
        _fail(str(exc))
    finally:
        signal.signal(signal.SIGINT, previous)
    _summary(archive, run_id, time.monotonic() - started, as_json, stop_reason)


def _program_defaults(task: Any) -> dict[str, Any]:
    """Run settings from a program task's config.yaml / daedalus.toml [run]; says what it used."""
    from daedalus.agent.config import RunConfig
    from daedalus.tasks.program import describe

    for line in describe(task):
        typer.echo(line, err=True)
    defaults = dict(task.settings.get("run", {}))
    unknown = sorted(set(defaults) - set(RunConfig.model_fields))
    if unknown:
        raise ValueError(f"{task.path}: unknown run settings {unknown} in daedalus.toml [run]; "
                         f"valid keys are: {', '.join(sorted(RunConfig.model_fields))}")
    return defaults


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def _summary(archive: Any, run_id: str, wall_s: float, as_json: bool, stop_reason: str | None = None) -> None:
    from daedalus.archive import store

    with archive.session() as s:
        run = store.get_run(s, run_id=run_id)
        best = store.best_candidate(s, run_id=run_id)
        counts = store.count_by_status(s, run_id=run_id)
        summary = {
            "run_id": run.id, "task": run.task, "status": run.status, "iterations": run.iterations,
            "best_id": best.id if best else None, "best_score": run.best_score,
            "best_speedup": best.evaluation.speedup if best and best.evaluation else None,
            "by_status": counts, "cost_usd": run.cost_usd, "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens, "device_seconds": run.device_seconds,
            "wall_s": round(wall_s, 1), "stop_reason": stop_reason,
        }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console

    console = Console()
    console.rule(f"run {run_id} {summary['status']}")
    if best is not None and run.kind == "program":
        console.print(f"best: candidate [bold]{best.id}[/] — score {run.best_score:.6g}")
    elif best is not None and run.kind == "architecture" and best.evaluation is not None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in best.evaluation.objectives.items())
        console.print(f"best: candidate [bold]{best.id}[/] — score {run.best_score:.4f} ({shown}); "
                      f"the Pareto front: daedalus archive pareto --run {run_id}")
    elif best is not None and summary["best_speedup"]:
        console.print(f"best: candidate [bold]{best.id}[/] — {summary['best_speedup']:.3f}x speedup (score {run.best_score:.3f})")
    else:
        console.print("no correct candidate beat the reference yet")
    console.print("statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    if stop_reason:
        console.print(f"stopped: {stop_reason}")
    console.print(f"spent: {run.iterations} proposals, ${run.cost_usd:.4f}, {run.device_seconds:.0f} device-s, {wall_s:.0f} s wall")
    console.print("\nreview it with:")
    console.print(f"  daedalus archive best --run {run_id}")
    console.print(f"  daedalus archive list --run {run_id}")
    if best is not None:
        console.print(f"  daedalus archive show {best.id}")
    if run.status != "finished":
        console.print(f"  daedalus run --resume {run_id}    # continue this run")


class _Display:
    """A rich live panel: iteration, best score and speedup, failures by status, cost."""

    def __init__(self, run_id: str, total: int, *, quiet: bool, metric: str = "speedup") -> None:
        self.run_id, self.total, self.quiet, self.metric = run_id, total, quiet, metric
        self.counts: dict[str, int] = {}
        self.best: float | None = None
        self.proposed = 0
        self.messages: list[str] = []
        self._live: Any = None

    def __enter__(self) -> _Display:
        if not self.quiet:
            from rich.live import Live

            self._live = Live(self._render(), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def note(self, message: str) -> None:
        self.messages = [*self.messages[-3:], message]
        self._update()

    def event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "proposed":
            self.proposed += 1
        elif kind == "recorded":
            status = str(data.get("status"))
            self.counts[status] = self.counts.get(status, 0) + 1
            value = data.get("speedup") if self.metric == "speedup" else data.get("score")
            if status == "ok" and value is not None and (self.best is None or value > self.best):
                self.best = float(value)
                shown = f"{self.best:.3f}x" if self.metric == "speedup" else f"{self.metric} {self.best:.6g}"
                self.note(f"new best: {shown} ({data['id']})")
        elif kind == "note":
            self.note(str(data["message"]))
        elif kind == "finished":
            self.note(f"stopped: {data['reason']}")
        elif kind == "lessons":
            self.note("lesson: " + str(data["lessons"][0])[:100])
        self._update()

    def refresh(self, ctx: RunContext) -> None:
        self._update()

    def _update(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Any:
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 2))
        grid.add_row("run", self.run_id)
        grid.add_row("proposals", f"{self.proposed} this session / budget {self.total}")
        grid.add_row("progress", ProgressBar(total=self.total, completed=min(self.proposed, self.total), width=40))
        if self.metric == "speedup":
            grid.add_row("best speedup", f"{self.best:.3f}x" if self.best else "-")
        else:
            grid.add_row(f"best {self.metric}", f"{self.best:.6g}" if self.best is not None else "-")
        grid.add_row("results", ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "-")
        for message in self.messages:
            grid.add_row("", message)
        return Panel(grid, title="daedalus run", border_style="cyan")
