"""Read-side helpers for review (``daedalus archive ...`` and the web app): filters.

The same filters work everywhere (task, run, status, backend, hardware fingerprint and a
free-text search). Listings page with a cursor and, when asked, scan a bounded number of
candidates per request, so even a search that matches nothing answers in bounded time
on an archive of 100,000 candidates (benchmarks/web_pages.py) and says how far it got.
Chart data lives in ``review_charts``, lineage trees in ``review_tree``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from daedalus.archive.models import Candidate, Evaluation, Run
from daedalus.archive.queries import best_candidate

_HEX = re.compile(r"[0-9a-f]{1,32}")
# Below this many matching evaluations a backend/fingerprint filter is answered from the
# evaluation indexes (an IN list of candidate ids); above it, matches are common and a
# join found while scanning candidates is cheaper.
SMALL_MATCH = 2000
SCAN_LIMIT = 25_000  # candidates one web request may examine for a filtered listing


@dataclass(frozen=True)
class CandidateFilter:
    """The filters every listing accepts. ``fingerprint`` is a prefix of the 12-char
    hardware fingerprint hash; ``search`` matches an id prefix, the description or code."""

    run_id: str | None = None
    task: str | None = None
    status: str | None = None
    backend: str | None = None
    fingerprint: str | None = None
    search: str | None = None

    def needs_evaluation(self) -> bool:
        return bool(self.backend or self.fingerprint)

    def is_selective(self) -> bool:
        """True when rows must be checked one by one (search or evaluation filters)."""
        return bool(self.needs_evaluation() or (self.search or "").strip())


def prefix_range(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix`` as an index range (LIKE would scan)."""
    prefix = prefix.strip().lower()
    if not prefix:
        return column.is_not(None)
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return (column >= prefix) & (column < upper)


def _eval_conditions(flt: CandidateFilter) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if flt.backend:
        conds.append(Evaluation.backend == flt.backend)
    if flt.fingerprint:
        conds.append(prefix_range(Evaluation.fingerprint_hash, flt.fingerprint))
    return conds


def small_match(session: Session, flt: CandidateFilter) -> list[str] | None:
    """The ids of candidates whose evaluation matches the backend/fingerprint filters,
    when there are at most ``SMALL_MATCH`` of them (one bounded index read); else None."""
    if not flt.needs_evaluation():
        return None
    ids = session.scalars(
        select(Evaluation.candidate_id).where(*_eval_conditions(flt)).limit(SMALL_MATCH + 1)
    ).all()
    return list(ids) if len(ids) <= SMALL_MATCH else None


def apply_filter(
    query: Select[Any], flt: CandidateFilter, matched: list[str] | None
) -> Select[Any]:
    if flt.run_id:
        query = query.where(Candidate.run_id == flt.run_id)
    if flt.task:
        query = query.where(Candidate.task == flt.task)
    if flt.status:
        query = query.where(Candidate.status == flt.status)
    term = (flt.search or "").strip()
    if term:
        matches = [
            Candidate.description.contains(term, autoescape=True),
            Candidate.code.contains(term, autoescape=True),
        ]
        if _HEX.fullmatch(term.lower()):
            matches.append(Candidate.id.startswith(term.lower(), autoescape=True))
        query = query.where(or_(*matches))
    if matched is not None:
        query = query.where(Candidate.id.in_(matched))
    elif flt.needs_evaluation():
        # A correlated EXISTS, not a join: the planner must walk the candidates index and
        # probe each one's evaluation. A join lets it drive from the backend index instead,
        # reading every evaluation in the archive to find one run's matches.
        query = query.where(
            select(Evaluation.id)
            .where(Evaluation.candidate_id == Candidate.id, *_eval_conditions(flt))
            .exists()
        )
    return query


@dataclass(frozen=True)
class Page:
    """One page of a listing. ``cursor`` continues it (None at the end); ``scanned`` is how
    many candidates a bounded scan examined, and ``partial`` says the scan stopped at its
    bound before filling the page (follow ``cursor`` to search further back)."""

    items: list[Candidate]
    cursor: str | None
    scanned: int = 0
    partial: bool = False


def _parse_cursor(cursor: str | None) -> tuple[str | None, int | None]:
    if not cursor:
        return None, None
    run_id, _, seq = cursor.partition(":")
    if not run_id or not seq.isdigit():
        raise ValueError(
            f"bad cursor {cursor!r}; expected RUN:SEQ. Fix: follow the 'next' link as given."
        )
    return run_id, int(seq)


def browse(
    session: Session,
    *,
    flt: CandidateFilter,
    limit: int = 50,
    cursor: str | None = None,
    scan_limit: int | None = SCAN_LIMIT,
) -> Page:
    """Candidates matching ``flt``, newest run first and newest candidate first, with
    evaluations loaded. A page resumes at ``cursor`` (``RUN:SEQ``, exclusive).

    Each step reads one window of one run's ``seq`` range on the ``(run_id, ...)``
    indexes, so cost is bounded by ``scan_limit`` candidates (None: unbounded) however
    rare the matches are.
    """
    matched = small_match(session, flt)
    if matched == []:
        return Page([], None)
    start_run, start_seq = _parse_cursor(cursor)
    if flt.run_id:
        run_ids = [flt.run_id]
    else:
        runs = select(Run.id).order_by(Run.created_at.desc(), Run.id)
        if flt.task:
            runs = runs.where(Run.task == flt.task)
        run_ids = list(session.scalars(runs))
    if start_run is not None:
        if start_run not in run_ids:
            raise ValueError(f"cursor run {start_run!r} is not in this listing. Fix: start over.")
        run_ids = run_ids[run_ids.index(start_run) :]
    items: list[Candidate] = []
    scanned = 0
    selective = flt.is_selective() and matched is None
    for run_id in run_ids:
        hi = start_seq if run_id == start_run and start_seq is not None else None
        if hi is None:
            top = session.scalar(select(func.max(Candidate.seq)).where(Candidate.run_id == run_id))
            hi = (top or 0) + 1
        while hi > 1 and len(items) < limit:
            if selective and scan_limit is not None:
                room = scan_limit - scanned
                if room <= 0:
                    return Page(items, f"{run_id}:{hi}", scanned, partial=True)
                lo = max(1, hi - room)
            else:
                lo = 1
            query = apply_filter(select(Candidate), replace(flt, run_id=run_id), matched)
            query = query.where(Candidate.seq >= lo, Candidate.seq < hi)
            found = list(
                session.scalars(
                    query.order_by(Candidate.seq.desc())
                    .limit(limit - len(items))
                    .options(selectinload(Candidate.evaluation))
                )
            )
            items += found
            if len(items) >= limit:
                hi = found[-1].seq
                break
            scanned += hi - lo
            hi = lo
        if len(items) >= limit:
            more = hi > 1 or run_id != run_ids[-1]
            return Page(items, f"{run_id}:{hi}" if more else None, scanned)
    return Page(items, None, scanned)


def filter_candidates(
    session: Session, *, flt: CandidateFilter, limit: int = 50, order: str = "recent"
) -> list[Candidate]:
    """The first ``limit`` matches, unbounded scan: ``order="recent"`` (as ``browse``) or
    ``"score"`` (best first, unscored last)."""
    if order == "recent":
        return browse(session, flt=flt, limit=limit, scan_limit=None).items
    if order != "score":
        raise ValueError(f"unknown order {order!r}; expected 'recent' or 'score'")
    matched = small_match(session, flt)
    query = apply_filter(select(Candidate), flt, matched)
    query = query.order_by(Candidate.score.desc().nulls_last(), Candidate.seq)
    return list(session.scalars(query.limit(limit).options(selectinload(Candidate.evaluation))))


def best_matching(session: Session, *, flt: CandidateFilter) -> Candidate | None:
    """The best correct candidate matching ``flt`` (its status filter is replaced by ok)."""
    if flt.run_id and not (flt.task or flt.is_selective()):
        return best_candidate(session, run_id=flt.run_id)
    found = filter_candidates(session, flt=replace(flt, status="ok"), limit=1, order="score")
    return found[0] if found else None


def filter_runs(
    session: Session,
    *,
    task: str | None = None,
    status: str | None = None,
    backend: str | None = None,
    fingerprint: str | None = None,
    search: str | None = None,
    limit: int | None = 200,
) -> list[Run]:
    """Runs newest first. ``backend``/``fingerprint`` keep runs with at least one
    evaluation on that backend / hardware; ``search`` matches the task or an id prefix."""
    query = select(Run)
    if task:
        query = query.where(Run.task == task)
    if status:
        query = query.where(Run.status == status)
    term = (search or "").strip()
    if term:
        query = query.where(
            or_(Run.task.contains(term, autoescape=True), Run.id.startswith(term.lower()))
        )
    flt = CandidateFilter(backend=backend, fingerprint=fingerprint)
    matched = small_match(session, flt)
    if matched is not None:
        holders = select(Candidate.run_id).where(Candidate.id.in_(matched)).distinct()
        query = query.where(Run.id.in_(holders))
    elif flt.needs_evaluation():
        query = query.where(
            exists(apply_filter(select(Candidate.id).where(Candidate.run_id == Run.id), flt, None))
        )
    query = query.order_by(Run.created_at.desc(), Run.id)
    return list(session.scalars(query.limit(limit) if limit else query))


@dataclass(frozen=True)
class Hardware:
    """One hardware fingerprint seen in the archive: how many evaluations ran on it, and
    the backend and fingerprint of one of them."""

    fingerprint_hash: str
    evaluations: int
    backend: str
    fingerprint: dict[str, Any]


def hardware(session: Session, *, backend: str | None = None) -> list[Hardware]:
    """Every fingerprint in the archive, most used first (index-only counts)."""
    rows = session.execute(
        select(Evaluation.fingerprint_hash, func.count()).group_by(Evaluation.fingerprint_hash)
    ).all()
    found = []
    for fp_hash, count in rows:
        query = select(Evaluation.backend, Evaluation.fingerprint).where(
            Evaluation.fingerprint_hash == fp_hash
        )
        if backend:
            query = query.where(Evaluation.backend == backend)
        sample = session.execute(query.limit(1)).first()
        if sample is not None:
            found.append(Hardware(fp_hash, int(count), sample[0], dict(sample[1] or {})))
    return sorted(found, key=lambda h: (-h.evaluations, h.fingerprint_hash))
