"""Chart data for review: progress over a run, the Pareto front, the MAP-Elites grid.

Each function returns plain data (the web app draws it as SVG on the server; the CLI and
JSON endpoints print it). Queries ride the ``candidates`` indexes: a GROUP BY over the
run's ``(run_id, status, seq)`` range for progress, one join for objectives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daedalus.archive.models import Candidate, Evaluation, Run
from daedalus.archive.queries import best_candidate

# Name fragments of objectives where smaller is better; everything else is maximised.
_MINIMISED = re.compile(
    r"(^|_)(latency|time|ms|us|s|seconds|params|parameters|memory|mem|bytes|loss|error|"
    r"err|size|flops|macs|cost|energy|perplexity|ppl)(_|$)"
)


# ------------------------------------------------------------------- progress over time


@dataclass(frozen=True)
class History:
    """A run's candidates in ``bucket``-sized slices of ``seq``: status counts per slice,
    the best correct score reached by the end of each slice (None before the first), and
    for slices that raised it, the candidate that did (``record_ids``, else None)."""

    bucket: int
    ends: list[int]
    counts: list[dict[str, int]]
    best_so_far: list[float | None]
    improved: list[bool]
    record_ids: list[str | None] = field(default_factory=list)


def history(session: Session, *, run_id: str, buckets: int = 100) -> History:
    """Status counts and best-score-so-far over the run, in at most ``buckets`` slices.

    Two GROUP BY scans of the run's index ranges; the chart needs slices, not rows.
    """
    total = session.scalar(select(func.max(Candidate.seq)).where(Candidate.run_id == run_id))
    if not total:
        return History(1, [], [], [], [], [])
    size = max(1, math.ceil(total / buckets))
    slot = (Candidate.seq - 1) // size
    n = (total - 1) // size + 1
    counts: list[dict[str, int]] = [{} for _ in range(n)]
    for index, status, count in session.execute(
        select(slot, Candidate.status, func.count())
        .where(Candidate.run_id == run_id)
        .group_by(slot, Candidate.status)
    ):
        counts[int(index)][status] = int(count)
    best: list[float | None] = [None] * n
    for index, score in session.execute(
        select(slot, func.max(Candidate.score))
        .where(Candidate.run_id == run_id, Candidate.status == "ok")
        .group_by(slot)
    ):
        best[int(index)] = score
    so_far: list[float | None] = []
    improved: list[bool] = []
    running: float | None = None
    for value in best:
        better = value is not None and (running is None or value > running)
        if better:
            running = value
        so_far.append(running)
        improved.append(better)
    ends = [min(total, (i + 1) * size) for i in range(n)]
    records: list[str | None] = []
    for i, better in enumerate(improved):
        # One short index range per improvement (a handful per run), not per slice.
        records.append(
            session.scalar(
                select(Candidate.id)
                .where(Candidate.run_id == run_id, Candidate.status == "ok")
                .where(Candidate.seq > i * size, Candidate.seq <= ends[i])
                .order_by(Candidate.score.desc(), Candidate.seq)
                .limit(1)
            )
            if better
            else None
        )
    return History(size, ends, counts, so_far, improved, records)


# ------------------------------------------------------------------------ Pareto front


def objective_directions(run: Run, names: Iterable[str]) -> dict[str, str]:
    """``max`` or ``min`` per objective: from the run's config when it records the task's
    objectives (``config["objectives"] = [{"name", "direction"}]``), else from the name
    (latency, params, memory, loss ... are minimised)."""
    declared: dict[str, str] = {}
    for item in run.config.get("objectives") or []:
        if isinstance(item, Mapping) and item.get("direction") in ("max", "min"):
            declared[str(item.get("name"))] = str(item["direction"])
    return {
        name: declared.get(name) or ("min" if _MINIMISED.search(name.lower()) else "max")
        for name in names
    }


@dataclass(frozen=True)
class ParetoPoint:
    candidate_id: str
    seq: int
    values: tuple[float, ...]


@dataclass(frozen=True)
class Pareto:
    """The non-dominated correct candidates of a run over ``names``, and a sample of
    the others for context (every point is a correct candidate)."""

    names: tuple[str, ...]
    directions: tuple[str, ...]
    front: list[ParetoPoint]
    others: list[ParetoPoint]
    evaluated: int


def pareto(session: Session, *, run_id: str, sample: int = 800) -> Pareto | None:
    """The run's Pareto front, or None when its evaluations carry fewer than two numeric
    objectives. Objective names come from the best candidate's evaluation."""
    import numpy as np

    run = session.get(Run, run_id)
    best = best_candidate(session, run_id=run_id)
    if run is None or best is None or best.evaluation is None:
        return None
    names = tuple(
        sorted(k for k, v in best.evaluation.objectives.items() if isinstance(v, int | float))
    )
    if len(names) < 2:
        return None
    directions = objective_directions(run, names)
    columns = [Evaluation.objectives[name].as_float() for name in names]
    rows = session.execute(
        select(Candidate.id, Candidate.seq, *columns)
        .join(Evaluation, Evaluation.candidate_id == Candidate.id)
        .where(Candidate.run_id == run_id, Candidate.status == "ok")
    ).all()
    points = [r for r in rows if all(v is not None and math.isfinite(v) for v in r[2:])]
    if not points:
        return None
    values = np.array([r[2:] for r in points], dtype=float)
    # Flip minimised objectives so "larger is better" holds for every column.
    signs = np.array([1.0 if directions[n] == "max" else -1.0 for n in names])
    oriented = values * signs
    on_front = _front_mask(oriented)
    front = [
        ParetoPoint(p[0], p[1], tuple(p[2:])) for p, f in zip(points, on_front, strict=True) if f
    ]
    rest = [i for i, f in enumerate(on_front) if not f]
    step = max(1, len(rest) // sample)
    others = [ParetoPoint(points[i][0], points[i][1], tuple(points[i][2:])) for i in rest[::step]]
    front.sort(key=lambda p: p.values)
    return Pareto(names, tuple(directions[n] for n in names), front, others, len(points))


def _front_mask(oriented: Any) -> Any:
    """Boolean mask of the non-dominated rows (maximising every column).

    Repeatedly takes the remaining row with the largest normalised sum (it cannot be
    dominated by anything left, nor by anything removed, since dominance is transitive)
    and drops every row it dominates: O(front x n) vectorised, not O(n^2) in Python.
    """
    import numpy as np

    span = oriented.max(axis=0) - oriented.min(axis=0)
    span[span == 0] = 1.0
    total = ((oriented - oriented.min(axis=0)) / span).sum(axis=1)
    alive = np.ones(len(oriented), dtype=bool)
    mask = np.zeros(len(oriented), dtype=bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        pick = idx[np.argmax(total[idx])]
        mask[pick] = True
        p = oriented[pick]
        dominated = (oriented[idx] <= p).all(axis=1) & (oriented[idx] < p).any(axis=1)
        same = (oriented[idx] == p).all(axis=1)  # exact ties stay on the front together
        mask[idx[same]] = True
        alive[idx[dominated | same]] = False
    return mask


# ----------------------------------------------------------------------- MAP-Elites grid


@dataclass(frozen=True)
class Grid:
    """The MAP-Elites archive as a grid: ``x`` and ``y`` are the first two feature axes
    (``y`` is empty with one axis); ``cells[(xv, yv)]`` is that cell's elite."""

    x_axis: str
    y_axis: str | None
    x_values: list[Any]
    y_values: list[Any]
    cells: dict[tuple[str, str], Candidate] = field(default_factory=dict)
    extra_axes: tuple[str, ...] = ()


def _axis_order(values: Iterable[Any]) -> list[Any]:
    return sorted(
        set(values),
        key=lambda v: (
            v is None,
            not isinstance(v, int | float),
            v if isinstance(v, int | float) else str(v),
        ),
    )


def elites_grid(elites: list[Candidate]) -> Grid | None:
    """Lay out ``cell_elites`` over their first two feature axes (None without features)."""
    axes = sorted({k for c in elites for k in c.features})
    if not axes:
        return None
    x_axis, y_axis = axes[0], axes[1] if len(axes) > 1 else None
    cells: dict[tuple[str, str], Candidate] = {}
    for c in elites:
        key = (str(c.features.get(x_axis)), str(c.features.get(y_axis)) if y_axis else "")
        # With more than two axes several elites share a drawn cell; show the best.
        if key not in cells or (c.score or 0) > (cells[key].score or 0):
            cells[key] = c
    x_values = _axis_order(c.features.get(x_axis) for c in elites)
    y_values = _axis_order(c.features.get(y_axis) for c in elites) if y_axis else [""]
    return Grid(
        x_axis,
        y_axis,
        [str(v) for v in x_values],
        [str(v) for v in y_values],
        cells,
        tuple(axes[2:]),
    )
