"""`daedalus archive pareto`: a run's non-dominated candidates over the task's objectives.

For multi-objective tasks (the architecture tasks: accuracy or bits per character, params,
latency_ms) the scalar score is one view; the Pareto front is the honest summary of the
trade-offs. The front is computed by ``archive.review_charts.pareto``, the same function
behind the review web app's chart, with the directions the run recorded from its task.
Registered onto ``cli_archive.app`` by ``register``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

RunOpt = Annotated[str, typer.Option("--run", help="Run id (prefix ok) or 'latest'.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def pareto_command(run: RunOpt = "latest", as_json: JsonFlag = False) -> None:
    """The run's Pareto front: candidates no other correct candidate beats on every objective."""
    from daedalus.agent import cli_archive as base
    from daedalus.archive import review_charts, store

    with base._session() as s:
        found = base._resolve_run(s, run)
        front = review_charts.pareto(s, run_id=found.id)
        if front is None:
            base._fail(f"run {found.id} has no Pareto front: it needs correct candidates with at "
                       "least two numeric objectives (architecture tasks record accuracy or "
                       "bpc, params and latency_ms); kernel runs have one, the speedup")
        scores: dict[str, float | None] = {}
        for point in front.front:
            found_candidate = store.find_candidate(s, candidate_id=point.candidate_id)
            scores[point.candidate_id] = found_candidate.score if found_candidate else None
        rows: list[dict[str, Any]] = [
            {"id": p.candidate_id, "seq": p.seq, "score": scores[p.candidate_id],
             **dict(zip(front.names, p.values, strict=True))} for p in front.front]  # fmt: skip
        if as_json:
            base._print_json({"run": found.id, "task": found.task,
                              "objectives": dict(zip(front.names, front.directions, strict=True)),
                              "evaluated": front.evaluated, "front": rows})  # fmt: skip
            return
        table = Table(title=f"Pareto front of run {found.id} ({found.task}): {len(rows)} of "
                            f"{front.evaluated} correct candidates")
        table.add_column("id")
        table.add_column("seq", justify="right")
        table.add_column("score", justify="right")
        for name, direction in zip(front.names, front.directions, strict=True):
            table.add_column(f"{name} ({direction})", justify="right")
        for row in rows:
            table.add_row(str(row["id"])[:12], str(row["seq"]), base._num(row["score"]),
                          *(f"{row[n]:.4g}" for n in front.names))  # fmt: skip
        base._out().print(table)


def register(app: typer.Typer) -> None:
    app.command("pareto")(pareto_command)
