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

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from daedalus.archive import pareto
from daedalus.archive.errors import ArchiveError, NotFoundError
from daedalus.archive.models import (
    DUPLICATE,
    DUPLICATE_KINDS,
    EVALUATION_STATUSES,
    MODES,
    PENDING,
    Candidate,
    Evaluation,
    Lesson,
    Run,
    new_id,
    utcnow,
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
    add_spend,
    by_prefix,
    check_choice,
    create_run,
    ensure_run,
    get_run,
    latest_run,
    list_runs,
    set_run_elapsed,
    update_run_status,
)

__all__ = [
    "RecordOutcome",
    "add_candidate",
    "add_lesson",
    "add_spend",
    "best_candidate",
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
    "sample_parent",
    "set_features",
    "set_run_elapsed",
    "top_candidates",
    "update_run_status",
]

# INSERT constructs with ON CONFLICT, per dialect (the archive runs on these two).
_INSERT_OR_SKIP: dict[str, Callable[[type[Evaluation]], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert, "sqlite": sqlite.insert,
}

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
    bump = update(Run).where(Run.id == run_id).values(candidate_count=Run.candidate_count + 1)
    allocated = select(Run.candidate_count, Run.task).where(Run.id == run_id)
    if session.get_bind().dialect.update_returning:  # one statement instead of two
        row = session.execute(bump.returning(*allocated.selected_columns)).one_or_none()
    else:
        bumped = session.execute(bump).rowcount  # type: ignore[attr-defined]
        row = session.execute(allocated).one() if bumped == 1 else None
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


def get_candidate(session: Session, *, candidate_id: str) -> Candidate:
    """The candidate with this id or unique id prefix; NotFoundError / AmbiguousIdError."""
    return by_prefix(session, Candidate, candidate_id, "candidate")


def find_candidate(session: Session, *, candidate_id: str) -> Candidate | None:
    """The candidate with exactly this id, or None (no prefix matching, no error): for
    "was this already written?" checks on resume."""
    return session.get(Candidate, candidate_id)


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


# --------------------------------------------------------------------------- evaluations


@dataclass(frozen=True)
class RecordOutcome:
    """What ``record_evaluation`` did: the stored row, whether it was new, and whether it
    became the run's new best."""

    evaluation: Evaluation
    created: bool
    new_best: bool


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """A short stable hash of a hardware fingerprint, for indexed filtering."""
    if not fingerprint:
        return ""
    canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def record_evaluation(
    session: Session,
    *,
    candidate_id: str,
    status: str,
    correct: bool = False,
    score: float = 0.0,
    speedup: float | None = None,
    stage: str = "",
    error: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    objectives: Mapping[str, Any] | None = None,
    logs: str = "",
    artifacts: Mapping[str, Any] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    backend: str = "",
    sandbox: str = "",
    duration_s: float = 0.0,
    flags: Iterable[str] = (),
    overrides: Mapping[str, Any] | None = None,
    functional_hash: str | None = None,
    features: Mapping[str, Any] | None = None,
    cell: str | None = None,
) -> RecordOutcome:
    """Store a candidate's one evaluation and update its run's best, in the caller's
    transaction. Idempotent: if the candidate already has an evaluation, that row is
    returned (``created=False``) and nothing changes.

    The keywords mirror ``EvaluationResult`` fields, so the agent can pass
    ``**result.model_dump(include=...)``; ``status`` is one of ``EVALUATION_STATUSES``.
    ``features`` and ``cell`` set the candidate's MAP-Elites values as ``set_features``
    does, in the same UPDATE as its status and score.
    """
    check_choice(status, EVALUATION_STATUSES, "evaluation status")
    candidate = get_candidate(session, candidate_id=candidate_id)
    fp = dict(fingerprint or {})
    evaluation = _insert_once(session, {
        "candidate_id": candidate.id, "status": status, "correct": correct, "score": score,
        "speedup": speedup, "stage": stage, "error": error, "metrics": dict(metrics or {}),
        "objectives": dict(objectives or {}), "logs": logs, "artifacts": dict(artifacts or {}),
        "fingerprint": fp, "fingerprint_hash": fingerprint_hash(fp), "backend": backend,
        "sandbox": sandbox, "duration_s": duration_s, "flags": list(flags),
        "overrides": dict(overrides or {}),
    })
    if evaluation is None:  # recorded before (a retried write) or by a concurrent recorder
        existing = session.scalar(select(Evaluation).where(Evaluation.candidate_id == candidate.id))
        assert existing is not None
        return RecordOutcome(existing, created=False, new_best=False)
    # Tell the identity map too, so candidate.evaluation needs no reload (or lazy load).
    set_committed_value(candidate, "evaluation", evaluation)
    candidate.status = status
    candidate.score = score
    if functional_hash is not None:
        candidate.functional_hash = functional_hash
    if features is not None:  # known only now that the metrics are in
        candidate.features, candidate.cell = dict(features), cell
    new_best = False
    if status == "ok":
        pareto.record(session, candidate, evaluation.objectives)
        # Conditional and atomic: concurrent recorders can only ever raise the best.
        improved = session.execute(
            update(Run)
            .where(Run.id == candidate.run_id)
            .where((Run.best_score.is_(None)) | (Run.best_score < score))
            .values(best_score=score, best_candidate_id=candidate.id, updated_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
        new_best = improved.rowcount == 1  # type: ignore[attr-defined]
    session.flush()
    return RecordOutcome(evaluation, created=True, new_best=new_best)


def _insert_once(session: Session, values: dict[str, Any]) -> Evaluation | None:
    """Insert a candidate's evaluation unless it has one (then None), safe against a
    concurrent recorder of the same candidate: one INSERT ... ON CONFLICT DO NOTHING
    RETURNING where the database has it (PostgreSQL, SQLite 3.35+)."""
    dialect = session.get_bind().dialect
    insert = _INSERT_OR_SKIP.get(dialect.name) if dialect.insert_returning else None
    if insert is not None:
        return session.scalar(
            insert(Evaluation).values(values)
            .on_conflict_do_nothing(index_elements=[Evaluation.candidate_id])
            .returning(Evaluation)
        )
    found = select(Evaluation.id).where(Evaluation.candidate_id == values["candidate_id"])
    if session.scalar(found) is not None:
        return None
    evaluation = Evaluation(**values)
    try:
        # A savepoint, so losing a race to another writer leaves the caller's transaction usable.
        with session.begin_nested():
            session.add(evaluation)
            session.flush()
    except IntegrityError:
        if session.scalar(found) is None:
            raise
        return None
    return evaluation


# ------------------------------------------------------------------------------- lessons


def add_lesson(session: Session, *, run_id: str, task: str, iteration: int, text: str) -> Lesson:
    """Keep one lesson the analyst distilled (plain text; fenced by the agent in prompts)."""
    lesson = Lesson(run_id=run_id, task=task, iteration=iteration, text=text)
    session.add(lesson)
    session.flush()
    return lesson
