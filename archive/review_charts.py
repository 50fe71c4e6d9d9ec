"""Chart data for review: progress over a run, the Pareto front, the MAP-Elites grid.

Each function returns plain data (the web app draws it as SVG on the server; the CLI and
JSON endpoints print it). Queries ride the ``candidates`` indexes: a GROUP BY over the
run's ``(run_id, status, seq)`` range for progress; the Pareto front is kept in the
archive as results land (``archive/pareto.py``, re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daedalus.archive.models import Candidate
from daedalus.archive.pareto import Pareto, ParetoPoint, objective_directions, pareto

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
# Kept in the archive as results land: see archive/pareto.py.

__all__ = ["Grid", "History", "Pareto", "ParetoPoint", "elites_grid", "history",
           "objective_directions", "pareto"]  # fmt: skip


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
