"""The store API: small functions over a caller-owned session.

Every function takes the session first and everything else by keyword; none of them
commits. Wrap calls in ``with archive.session() as s:`` so each unit of work (for example
"record this evaluation and update the run's best") is one transaction.

Writes that several workers may race on are single atomic statements (counter increments,
conditional best-score updates) or are protected by a unique constraint, so they stay
correct on PostgreSQL's row locking as well as under SQLite's single writer.

Read-side selection queries (top-k, parent sampling, elites, lineage) live in
``daedalus.archive.queries`` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from sqlalchemy import Select, Update, bindparam, select, update
from sqlalchemy.orm import Session

from daedalus.archive.errors import ArchiveError, NotFoundError
from daedalus.archive.evaluations import RecordOutcome, fingerprint_hash, record_evaluation
from daedalus.archive.models import (
    DUPLICATE,
    DUPLICATE_KINDS,
    MODES,
    PENDING,
    Candidate,
    Lesson,
    Run,
    new_id,
)
from daedalus.archive.queries import (
    best_candidate,
    candidates_by_id,
    cell_elites,
    children,
    count_by_status,
    find_by_code_hash,
    find_by_functional_hash,
    island_members,
    known_functional_hashes,
    lessons,
    lineage,
    list_candidates,
    pending_candidates,
    random_candidate,
    recent_candidates,
    recent_failures,
    sample_parent,
    top_candidates,
)
from daedalus.archive.runs import (
    RUNS_TABLE,
    add_spend,
    by_prefix,
    check_choice,
    create_run,
    ensure_run,
    get_run,
    latest_run,
    list_runs,
    run_counters,
    set_run_elapsed,
    update_run_row,
    update_run_status,
)

__all__ = [
    "RecordOutcome",
    "add_candidate",
    "add_lesson",
    "add_spend",
    "best_candidate",
    "candidate_status",
    "candidates_by_id",
    "cell_elites",
    "children",
    "count_by_status",
    "create_run",
    "ensure_run",
    "find_by_code_hash",
    "find_by_functional_hash",
    "find_candidate",
    "fingerprint_hash",
    "get_candidate",
    "get_run",
    "island_members",
    "known_functional_hashes",
    "latest_run",
    "lessons",
    "lineage",
    "list_candidates",
    "list_runs",
    "mark_duplicate",
    "pending_candidates",
    "random_candidate",
    "recent_candidates",
    "recent_failures",
    "record_evaluation",
    "run_counters",
    "sample_parent",
    "set_features",
    "set_run_elapsed",
    "top_candidates",
    "update_run_status",
]

# ---------------------------------------------------------------------------- candidates


def add_candidate(
    session: Session,
    *,
    run_id: str,
    code: str,
    code_hash: str,
    task: str | None = None,
    candidate_id: str | None = None,
    parent_id: str | None = None,
    inspirations: Iterable[str] = (),
    island: int = 0,
    generation: int | None = None,
    iteration: int = 0,
    proposer: str = "builtin",
    model: str = "builtin",
    mode: str = "improve",
    prompt: str = "",
    description: str = "",
    instruction: str | None = None,
    features: Mapping[str, Any] | None = None,
    cell: str | None = None,
    functional_hash: str | None = None,
    duplicate_of: str | None = None,
    duplicate_kind: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost_usd: float = 0.0,
) -> Candidate:
    """Store a proposed program (status ``pending``, or ``duplicate`` with ``duplicate_of``).

    ``seq`` is allocated from the run's counter. ``task`` defaults to the run's task and
    ``generation`` to the parent's generation + 1. Passing a ``candidate_id`` that already
    exists returns the stored row unchanged, so a retried write never duplicates. Token
    counts here describe the proposal; charge the run separately with ``add_spend``.
    """
    check_choice(mode, MODES, "mode")
    if (duplicate_of is None) != (duplicate_kind is None):
        raise ValueError("pass duplicate_of and duplicate_kind together (or neither)")
    if duplicate_kind is not None:
        check_choice(duplicate_kind, DUPLICATE_KINDS, "duplicate kind")
    if candidate_id is not None:
        existing = session.get(Candidate, candidate_id)
        if existing is not None:
            if existing.run_id != run_id:
                raise ArchiveError(
                    f"candidate id {candidate_id!r} already belongs to run {existing.run_id!r}."
                    " Fix: let the archive generate ids (omit candidate_id)."
                )
            return existing
    # The UPDATE takes the run's row lock (PostgreSQL) / is inside the write lock (SQLite),
    # so concurrent writers get distinct, gap-free sequence numbers.
    returning = session.get_bind().dialect.update_returning  # one statement, else two
    bumped = update_run_row(session, _allocate_seq(returning), run_id=run_id)
    row: Any = bumped.one_or_none() if returning else None
    if not returning and bumped.rowcount == 1:
        row = session.execute(_allocated(), {"run_id": run_id}).one()
    if row is None:
        raise NotFoundError(f"no run {run_id!r} for this candidate. Fix: create the run first.")
    seq, run_task = row
    if generation is None:
        parent_gen = (
            session.scalar(select(Candidate.generation).where(Candidate.id == parent_id))
            if parent_id
            else None
        )
        generation = 0 if parent_gen is None else parent_gen + 1
    candidate = Candidate(
        id=candidate_id or new_id(),
        run_id=run_id,
        task=task or run_task,
        seq=seq,
        code=code,
        code_hash=code_hash,
        functional_hash=functional_hash,
        parent_id=parent_id,
        inspirations=list(inspirations),
        island=island,
        generation=generation,
        iteration=iteration,
        proposer=proposer,
        model=model,
        mode=mode,
        prompt=prompt,
        description=description,
        instruction=instruction,
        features=dict(features or {}),
        cell=cell,
        duplicate_of=duplicate_of,
        duplicate_kind=duplicate_kind,
        status=DUPLICATE if duplicate_of else PENDING,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=cost_usd,
    )
    session.add(candidate)
    session.flush()
    return candidate


@cache
def _allocate_seq(returning: bool) -> Update:
    runs = RUNS_TABLE.c
    bump = (update(RUNS_TABLE).where(runs.id == bindparam("run_id"))
            .values(candidate_count=runs.candidate_count + 1, updated_at=bindparam("now")))
    return bump.returning(runs.candidate_count, runs.task) if returning else bump


@cache
def _allocated() -> Select[int, str]:
    return select(Run.candidate_count, Run.task).where(Run.id == bindparam("run_id"))


def get_candidate(session: Session, *, candidate_id: str) -> Candidate:
    """The candidate with this id or unique id prefix; NotFoundError / AmbiguousIdError."""
    return by_prefix(session, Candidate, candidate_id, "candidate")


def find_candidate(session: Session, *, candidate_id: str) -> Candidate | None:
    """The candidate with exactly this id, or None (no prefix matching, no error): for
    "was this already written?" checks on resume."""
    return session.get(Candidate, candidate_id)


@cache
def _status_statement() -> Select[Any]:
    return select(Candidate.status).where(Candidate.id == bindparam("candidate_id"))


def candidate_status(session: Session, *, candidate_id: str) -> str | None:
    """The status of the candidate with exactly this id, or None when there is none: the
    loop's "was this already written?" check, one prebuilt SELECT of one column."""
    status: str | None = session.execute(_status_statement(), {"candidate_id": candidate_id}).scalar()
    return status


def set_features(
    session: Session, *, candidate_id: str, features: Mapping[str, Any], cell: str | None
) -> Candidate:
    """Store a candidate's MAP-Elites feature values and its cell key (known only once
    the evaluation's metrics are in)."""
    candidate = get_candidate(session, candidate_id=candidate_id)
    candidate.features = dict(features)
    candidate.cell = cell
    session.flush()
    return candidate


def mark_duplicate(
    session: Session,
    *,
    candidate_id: str,
    duplicate_of: str,
    kind: str,
    functional_hash: str | None = None,
) -> Candidate:
    """Link a pending candidate to the one it duplicates; it will not be evaluated.

    For functional duplicates found by the probe stage, after the candidate was stored.
    """
    check_choice(kind, DUPLICATE_KINDS, "duplicate kind")
    candidate = get_candidate(session, candidate_id=candidate_id)
    if candidate.id == duplicate_of:
        raise ValueError(f"candidate {candidate.id} cannot duplicate itself")
    candidate.duplicate_of, candidate.duplicate_kind = duplicate_of, kind
    candidate.status = DUPLICATE
    if functional_hash is not None:
        candidate.functional_hash = functional_hash
    session.flush()
    return candidate


# ------------------------------------------------------------------------------- lessons


def add_lesson(session: Session, *, run_id: str, task: str, iteration: int, text: str) -> Lesson:
    """Keep one lesson the analyst distilled (plain text; fenced by the agent in prompts)."""
    lesson = Lesson(run_id=run_id, task=task, iteration=iteration, text=text)
    session.add(lesson)
    session.flush()
    return lesson
