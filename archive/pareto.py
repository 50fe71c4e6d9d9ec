"""A run's Pareto front, kept in the archive as results land.

``candidates.pareto`` ranks every correct candidate of a run that declares two or more
objectives (``config["objectives"]``, as ``daedalus run`` records the task's): True on the
front, False dominated, NULL not ranked (not correct, or missing a finite objective).
``record`` keeps it exact as each evaluation is stored (a newcomer joins the front unless
a front member dominates it, and drops the members it dominates), so drawing the front
reads the front's rows and a sample of the rest instead of every evaluation of the run.
``rebuild`` recomputes a run from scratch (bulk imports); runs without declared
objectives are scanned in full on each draw, as before.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from daedalus.archive import front as math_front
from daedalus.archive.models import Candidate, Evaluation, Run
from daedalus.archive.queries import best_candidate


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


def objective_directions(run: Run, names: Iterable[str]) -> dict[str, str]:
    """``max`` or ``min`` per objective: from the run's config when it records the task's
    objectives (``config["objectives"] = [{"name", "direction"}]``), else from the name
    (latency, params, memory, loss ... are minimised)."""
    found = math_front.declared(run.config)
    return {name: found.get(name) or math_front.guess_direction(name) for name in names}


# ------------------------------------------------------------------------ keeping it


def record(session: Session, candidate: Candidate, objectives: Any) -> None:
    """Rank a candidate whose correct evaluation was just stored, in the caller's
    transaction (``store.record_evaluation`` calls it)."""
    if not isinstance(objectives, Mapping) or len(objectives) < 2:
        return  # a front has two or more objectives; no need to read the run's config
    run = session.get(Run, candidate.run_id)
    spec = math_front.run_objectives(run.config) if run is not None else None
    vector = math_front.oriented(objectives, *spec) if spec is not None else None
    if spec is None or vector is None:
        return
    # One ranker per run at a time: on PostgreSQL the run's row lock orders concurrent
    # recorders (each then sees the other's front); SQLite already holds its write lock.
    session.execute(select(Run.id).where(Run.id == candidate.run_id).with_for_update())
    members = session.execute(
        select(Candidate.id, Evaluation.objectives)
        .join(Evaluation, Evaluation.candidate_id == Candidate.id)
        .where(Candidate.run_id == candidate.run_id, Candidate.pareto.is_(True))
        .where(Candidate.id != candidate.id)
    ).all()
    beaten: list[str] = []
    for cid, values in members:
        other = math_front.oriented(values, *spec)
        if other is None:
            continue
        if math_front.dominates(other, vector):
            candidate.pareto = False
            return
        if math_front.dominates(vector, other):
            beaten.append(cid)
    candidate.pareto = True
    if beaten:
        session.execute(
            update(Candidate)
            .where(Candidate.id.in_(beaten))
            .values(pareto=False)
            .execution_options(synchronize_session="fetch")
        )


def rebuild(session: Session, *, run_id: str) -> int:
    """Rank every correct candidate of the run from scratch (after a bulk insert or
    import); returns the front's size."""
    run = session.get(Run, run_id)
    spec = math_front.run_objectives(run.config) if run is not None else None
    session.execute(
        update(Candidate)
        .where(Candidate.run_id == run_id, Candidate.pareto.is_not(None))
        .values(pareto=None)
        .execution_options(synchronize_session="fetch")
    )
    if spec is None:
        return 0
    rows = session.execute(
        select(Candidate.id, Evaluation.objectives)
        .join(Evaluation, Evaluation.candidate_id == Candidate.id)
        .where(Candidate.run_id == run_id, Candidate.status == "ok")
    ).all()
    ranks = math_front.rank(((r[0], r[1]) for r in rows), *spec)
    if ranks:
        session.execute(update(Candidate), [{"id": c, "pareto": on} for c, on in ranks.items()])
    return sum(ranks.values())


# ------------------------------------------------------------------------ drawing it


def pareto(session: Session, *, run_id: str, sample: int = 800) -> Pareto | None:
    """The run's Pareto front over its declared objectives, or None when it has fewer
    than two numeric objectives or no correct candidate carrying them all.

    A run with declared objectives reads its front and ``sample`` dominated points only;
    one without (older or hand-made runs) is scanned in full, over the numeric
    objectives of its best candidate's evaluation."""
    run = session.get(Run, run_id)
    if run is None:
        return None
    spec = math_front.run_objectives(run.config)
    if spec is None:
        return _scan(session, run, sample)
    names, directions = spec
    front = _points(session, names, Candidate.run_id == run_id, Candidate.pareto.is_(True))
    if not front:
        # Nothing ranked: a run filled by bulk insert without ``rebuild``.
        return _scan(session, run, sample)
    # `sample` of the dominated points, evenly over seq, picked inside the database
    # (a count and a numbered pass over one covering-index range; no rows to Python).
    dominated = Candidate.run_id == run_id, Candidate.pareto.is_(False)
    count = session.scalar(select(func.count()).select_from(Candidate).where(*dominated)) or 0
    numbered = (
        select(Candidate.seq, func.row_number().over(order_by=Candidate.seq).label("n"))
        .where(*dominated)
        .subquery()
    )
    step = max(1, math.ceil(count / sample))
    picked = select(numbered.c.seq).where((numbered.c.n - 1) % step == 0)
    others = _points(session, names, Candidate.run_id == run_id, Candidate.seq.in_(picked))
    others.sort(key=lambda p: p.seq)
    front.sort(key=lambda p: p.values)
    return Pareto(names, directions, front, others, len(front) + count)


def _points(session: Session, names: tuple[str, ...], *where: Any) -> list[ParetoPoint]:
    rows = session.execute(
        select(Candidate.id, Candidate.seq, Evaluation.objectives)
        .join(Evaluation, Evaluation.candidate_id == Candidate.id)
        .where(*where)
    ).all()
    points = []
    for cid, seq, objectives in rows:
        # Oriented as all-"max": the values as stored, checked to be finite numbers.
        values = math_front.oriented(objectives, names, ("max",) * len(names))
        if values is not None:
            points.append(ParetoPoint(cid, seq, values))
    return points


def _scan(session: Session, run: Run, sample: int) -> Pareto | None:
    """Every correct candidate's objectives, ranked here (runs without a kept front)."""
    import numpy as np

    spec = math_front.run_objectives(run.config)
    if spec is not None:
        names, directions = spec
    else:
        best = best_candidate(session, run_id=run.id)
        if best is None or best.evaluation is None:
            return None
        names = tuple(
            sorted(k for k, v in best.evaluation.objectives.items() if isinstance(v, int | float))
        )
        if len(names) < 2:
            return None
        found = objective_directions(run, names)
        directions = tuple(found[n] for n in names)
    # Whole objectives, parsed here: SQLite's JSON functions reject a stored NaN.
    points = _points(session, names, Candidate.run_id == run.id, Candidate.status == "ok")
    if not points:
        return None
    signs = np.array([1.0 if d == "max" else -1.0 for d in directions])
    on_front = math_front.front_mask(np.array([p.values for p in points]) * signs)
    front = [p for p, f in zip(points, on_front, strict=True) if f]
    rest = [p for p, f in zip(points, on_front, strict=True) if not f]
    rest.sort(key=lambda p: p.seq)
    others = rest[:: max(1, math.ceil(len(rest) / sample))]
    front.sort(key=lambda p: p.values)
    return Pareto(names, directions, front, others, len(points))
