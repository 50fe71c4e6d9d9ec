"""Read-side selection queries for the planner, the memory module and review.

Each query is a range scan over one composite index of ``candidates`` (see models.py),
so cost grows with the rows returned, not with the archive: on 100,000 candidates a
parent selection or a top-20 stays in the low milliseconds (benchmarks/archive_queries.py).
Re-exported by ``daedalus.archive.store``; the caller owns the session.

Lists used to build prompts load each candidate's evaluation eagerly (one extra IN query),
so ``candidate.evaluation`` is safe to read after the session has closed.

The queries a discovery loop runs every iteration are built once per shape, with bound
parameters (``@cache``): building a statement and its cache key costs SQLAlchemy several
times what SQLite takes to run it (0.3-2 ms against 0.1-0.3 ms on the benchmark machine).
"""

from __future__ import annotations

import random
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, select, union_all
from sqlalchemy.orm import Session, aliased, load_only, selectinload

from daedalus.archive.models import DUPLICATE, EVALUATION_STATUSES, PENDING, Candidate, Lesson, Run

FAILURE_STATUSES = tuple(s for s in EVALUATION_STATUSES if s != "ok")


def _with_eval(query: Select[Candidate]) -> Select[Candidate]:
    return query.options(selectinload(Candidate.evaluation))


# What ranking and picking read of a candidate (``evaluations=False``): not its code, prompt
# and JSON columns, whose decoding dominates loading a row. Any other attribute loads on
# first access while the session is open (one query per row: read it in bulk instead).
_RANKED = load_only(Candidate.id, Candidate.run_id, Candidate.seq, Candidate.island,
                    Candidate.status, Candidate.score, Candidate.cell, Candidate.parent_id)


def _loading(query: Select[Candidate], evaluations: bool) -> Select[Candidate]:
    return _with_eval(query) if evaluations else query.options(_RANKED)


@cache  # one statement per shape
def _top_query(by_run: bool, island: bool, evaluations: bool) -> Select[Candidate]:
    query = select(Candidate).where(Candidate.status == bindparam("status"))
    if by_run:
        query = query.where(Candidate.run_id == bindparam("run_id"))
        if island:
            query = query.where(Candidate.island == bindparam("island"))
        query = query.order_by(Candidate.score.desc(), Candidate.seq)
    else:
        query = query.where(Candidate.task == bindparam("task"))
        query = query.order_by(Candidate.score.desc(), Candidate.created_at)
    return _loading(query.limit(bindparam("limit")), evaluations)


def top_candidates(
    session: Session,
    *,
    run_id: str | None = None,
    task: str | None = None,
    limit: int = 20,
    island: int | None = None,
    status: str = "ok",
    evaluations: bool = True,
) -> list[Candidate]:
    """The best candidates of one run (optionally one island) or of one task across runs,
    by score descending; ties go to the earlier candidate. ``evaluations=False`` loads
    neither their evaluations (a second query) nor their code, prompt or JSON columns:
    for ranking and picking, which need ids, statuses and scores."""
    if (run_id is None) == (task is None):
        raise ValueError("pass exactly one of run_id or task")
    if island is not None and run_id is None:
        raise ValueError("islands belong to one run: pass run_id with island")
    params: dict[str, Any] = {"status": status, "limit": limit}
    if run_id is not None:
        params["run_id"] = run_id
        if island is not None:
            params["island"] = island
    else:
        params["task"] = task
    query = _top_query(run_id is not None, island is not None, evaluations)
    return list(session.scalars(query, params))


def list_candidates(
    session: Session,
    *,
    run_id: str,
    status: str | None = None,
    limit: int = 50,
    order: str = "recent",
) -> list[Candidate]:
    """A page of a run's candidates for review: ``order="recent"`` (newest first) or
    ``"score"`` (best first, unevaluated last), optionally of one status."""
    query = select(Candidate).where(Candidate.run_id == run_id)
    if status is not None:
        query = query.where(Candidate.status == status)
    if order == "recent":
        query = query.order_by(Candidate.seq.desc())
    elif order == "score":
        query = query.order_by(Candidate.score.desc().nulls_last(), Candidate.seq)
    else:
        raise ValueError(f"unknown order {order!r}; expected 'recent' or 'score'")
    return list(session.scalars(_with_eval(query.limit(limit))))


def best_candidate(session: Session, *, run_id: str) -> Candidate | None:
    """The run's best correct candidate (the first to reach the best score), or None."""
    run = session.get(Run, run_id)
    if run is None or run.best_candidate_id is None:
        return None
    return session.scalar(
        _with_eval(select(Candidate).where(Candidate.id == run.best_candidate_id))
    )


def island_members(
    session: Session, *, run_id: str, island: int, limit: int = 50
) -> list[Candidate]:
    """An island's correct members, best first (its population as migration sees it)."""
    return top_candidates(session, run_id=run_id, island=island, limit=limit)


def sample_parent(
    session: Session,
    *,
    run_id: str,
    rng: random.Random,
    island: int | None = None,
    top_k: int = 10,
    tournament: int = 3,
) -> Candidate | None:
    """Tournament selection: draw ``tournament`` of the island's (or run's) ``top_k`` correct
    candidates at random and return the best of the draw. ``top_k`` sets the pressure:
    small exploits the best, large spreads over good-but-different parents. None when
    the run has no correct candidate yet."""
    pool = top_candidates(session, run_id=run_id, island=island, limit=top_k)
    if not pool:
        return None
    picks = rng.sample(range(len(pool)), min(tournament, len(pool)))
    return pool[min(picks)]  # the pool is sorted, so the smallest index is the best pick


def random_candidate(
    session: Session,
    *,
    run_id: str,
    rng: random.Random,
    island: int | None = None,
    status: str = "ok",
) -> Candidate | None:
    """A random candidate with ``status`` (for the explore/random share of parent choices).

    Draws a random ``seq`` and takes the next matching row by index, wrapping around, so
    it never scans the table. Approximately uniform: a row that follows a long run of
    non-matching rows is drawn more often.
    """
    run = session.get(Run, run_id)
    if run is None or run.candidate_count == 0:
        return None
    start = rng.randint(1, run.candidate_count)
    base = select(Candidate).where(Candidate.run_id == run_id, Candidate.status == status)
    if island is not None:
        base = base.where(Candidate.island == island)
    found = session.scalar(
        _with_eval(base.where(Candidate.seq >= start).order_by(Candidate.seq).limit(1))
    )
    if found is None:
        found = session.scalar(
            _with_eval(base.where(Candidate.seq < start).order_by(Candidate.seq).limit(1))
        )
    return found


def cell_elites(session: Session, *, run_id: str) -> list[Candidate]:
    """The best correct candidate of each MAP-Elites cell (ties: the earlier one), one per
    cell, ordered by cell key; ``candidate.cell`` says which cell each one holds."""

    return list(session.scalars(_cell_elites_query(), {"run_id": run_id}))


@cache  # built once: this statement is the costliest of the loop's to build
def _cell_elites_query() -> Select[Candidate]:
    # A loose index scan (recursive CTE): hop from one distinct cell to the next and take
    # each cell's top row, O(cells x log n) on the (run_id, status, cell, score) index,
    # where GROUP BY would read every correct row. Portable to PostgreSQL as written.
    def ok(table: type[Candidate] | Any) -> tuple[Any, ...]:
        return (table.run_id == bindparam("run_id"), table.status == "ok")

    first, step, top = (aliased(Candidate) for _ in range(3))
    cells = (
        select(func.min(first.cell).label("cell"))
        .where(*ok(first), first.cell.is_not(None))
        .cte("cells", recursive=True)
    )
    following = (
        select(func.min(step.cell)).where(*ok(step), step.cell > cells.c.cell).scalar_subquery()
    )
    cells = cells.union_all(select(following).where(cells.c.cell.is_not(None)))
    best_id = (
        select(top.id)
        .where(*ok(top), top.cell == cells.c.cell)
        .order_by(top.score.desc(), top.seq)
        .limit(1)
        .scalar_subquery()
    )
    ids = select(best_id).where(cells.c.cell.is_not(None))
    return _with_eval(select(Candidate).where(Candidate.id.in_(ids)).order_by(Candidate.cell))


def recent_candidates(session: Session, *, run_id: str, limit: int = 20) -> list[Candidate]:
    """The run's newest candidates of any status, newest first (what the analyst reviews)."""
    return list_candidates(session, run_id=run_id, limit=limit, order="recent")


def candidates_by_id(session: Session, ids: list[str]) -> dict[str, Candidate]:
    """The candidates with these exact ids, with their evaluations, in two queries."""
    if not ids:
        return {}
    return {c.id: c for c in session.scalars(_by_ids_query(), {"ids": sorted(set(ids))})}


@cache  # one statement per shape
def _by_ids_query() -> Select[Candidate]:
    return _with_eval(select(Candidate).where(Candidate.id.in_(bindparam("ids", expanding=True))))


def recent_failures(
    session: Session, *, run_id: str, limit: int = 5, evaluations: bool = True
) -> list[Candidate]:
    """The run's most recent failed evaluations (any non-ok status), newest first; with
    ``evaluations=False`` loaded as ``top_candidates`` loads them (ids, statuses, scores)."""
    return list(session.scalars(_failures_query(evaluations), {"run_id": run_id, "limit": limit}))


@cache  # one statement per shape
def _failures_query(evaluations: bool) -> Select[Candidate]:
    # One short index range per status (an IN query would sort every failure), all in one
    # statement: the newest ``limit`` of each status, then the newest of those.
    per_status = [
        select(Candidate.id, Candidate.seq)
        .where(Candidate.run_id == bindparam("run_id"), Candidate.status == status)
        .order_by(Candidate.seq.desc())
        .limit(bindparam("limit"))
        .subquery()
        for status in FAILURE_STATUSES
    ]
    newest = union_all(*(select(q.c.id, q.c.seq) for q in per_status)).subquery()
    ids = select(newest.c.id).order_by(newest.c.seq.desc()).limit(bindparam("limit"))
    query = select(Candidate).where(Candidate.id.in_(ids)).order_by(Candidate.seq.desc())
    return _loading(query, evaluations)


def pending_candidates(session: Session, *, run_id: str) -> list[Candidate]:
    """Candidates stored but never evaluated and not duplicates, in insertion order: the
    work a resumed run must finish first."""
    return list(
        session.scalars(
            select(Candidate)
            .where(
                Candidate.run_id == run_id,
                Candidate.status == PENDING,
                Candidate.duplicate_of.is_(None),
                ~Candidate.evaluation.has(),
            )
            .order_by(Candidate.seq)
        )
    )


def count_by_status(session: Session, *, run_id: str) -> dict[str, int]:
    """Number of the run's candidates per status, including ``pending`` and ``duplicate``."""
    rows = session.execute(
        select(Candidate.status, func.count())
        .where(Candidate.run_id == run_id)
        .group_by(Candidate.status)
    )
    return {status: int(n) for status, n in rows}


def find_by_code_hash(
    session: Session, *, task: str, code_hash: str, run_id: str | None = None
) -> Candidate | None:
    """The first original (non-duplicate) candidate of ``task`` with this normalised AST
    hash (in run ``run_id`` when given, else in any run), or None."""
    return _first_original(session, "code_hash", code_hash, task, run_id)


def find_by_functional_hash(
    session: Session, *, task: str, functional_hash: str, run_id: str | None = None
) -> Candidate | None:
    """The first original candidate of ``task`` (of run ``run_id`` when given) whose probe
    outputs hash to this value."""
    return _first_original(session, "functional_hash", functional_hash, task, run_id)


def _first_original(
    session: Session, column: str, value: str, task: str, run_id: str | None
) -> Candidate | None:
    params = {"task": task, "value": value, **({} if run_id is None else {"run_id": run_id})}
    return session.scalar(_first_original_query(column, run_id is not None), params)


@cache  # one statement per shape
def _first_original_query(column: str, of_run: bool) -> Select[Candidate]:
    query = select(Candidate).where(Candidate.task == bindparam("task"),
                                    getattr(Candidate, column) == bindparam("value"),
                                    Candidate.status != DUPLICATE)
    if of_run:
        query = query.where(Candidate.run_id == bindparam("run_id"))
    return query.order_by(Candidate.created_at, Candidate.seq).limit(1)


def known_functional_hashes(
    session: Session, *, task: str, run_id: str | None = None
) -> set[str]:
    """Every functional hash recorded for ``task`` (in run ``run_id`` when given): hand these
    to the evaluator's probe."""
    params = {"task": task} if run_id is None else {"run_id": run_id}
    return {h for h in session.scalars(_functional_hashes_query(run_id is not None), params) if h}


@cache  # one statement per shape
def _functional_hashes_query(of_run: bool) -> Select[str | None]:
    query = select(Candidate.functional_hash).where(Candidate.functional_hash.is_not(None))
    scope = Candidate.run_id == bindparam("run_id") if of_run else Candidate.task == bindparam("task")
    return query.where(scope).distinct()


def lineage(session: Session, *, candidate_id: str, max_depth: int = 10_000) -> list[Candidate]:
    """The candidate's ancestors, parent first and the root last (primary-key lookups)."""
    chain: list[Candidate] = []
    seen = {candidate_id}
    current = session.get(Candidate, candidate_id)
    while current is not None and current.parent_id and len(chain) < max_depth:
        if current.parent_id in seen:  # a corrupted (cyclic) import must not hang review
            break
        seen.add(current.parent_id)
        current = session.get(Candidate, current.parent_id)
        if current is not None:
            chain.append(current)
    return chain


def children(session: Session, *, candidate_id: str) -> list[Candidate]:
    """Candidates proposed with this one as their parent, oldest first."""
    return list(
        session.scalars(
            select(Candidate)
            .where(Candidate.parent_id == candidate_id)
            .order_by(Candidate.created_at, Candidate.seq)
        )
    )


def lessons(
    session: Session, *, task: str, run_id: str | None = None, limit: int = 20
) -> list[Lesson]:
    """The newest lessons for a task (optionally from one run only), newest first."""
    params = {"task": task, "limit": limit, **({} if run_id is None else {"run_id": run_id})}
    return list(session.scalars(_lessons_query(run_id is not None), params))


@cache  # one statement per shape
def _lessons_query(of_run: bool) -> Select[Lesson]:
    query = select(Lesson).where(Lesson.task == bindparam("task"))
    if of_run:
        query = query.where(Lesson.run_id == bindparam("run_id"))
    return query.order_by(Lesson.created_at.desc()).limit(bindparam("limit"))
