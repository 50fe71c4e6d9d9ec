"""Recording a candidate's evaluation (re-exported by ``store``): one transaction of the
caller's, at most a few statements whoever else records at the same time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from daedalus.archive import pareto
from daedalus.archive.models import EVALUATION_STATUSES, Candidate, Evaluation
from daedalus.archive.runs import RUNS_TABLE, by_prefix, check_choice, update_run_row

# INSERT constructs with ON CONFLICT, per dialect (the archive runs on these two).
_INSERT_OR_SKIP: dict[str, Callable[[type[Evaluation]], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert, "sqlite": sqlite.insert,
}


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
    candidate = by_prefix(session, Candidate, candidate_id, "candidate")
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
        improved = update_run_row(session, _raise_best(), run_id=candidate.run_id, score=score,
                                  candidate_id=candidate.id)
        new_best = improved.rowcount == 1
    session.flush()
    return RecordOutcome(evaluation, created=True, new_best=new_best)


def _insert_once(session: Session, values: dict[str, Any]) -> Evaluation | None:
    """Insert a candidate's evaluation unless it has one (then None), safe against a
    concurrent recorder of the same candidate: one INSERT ... ON CONFLICT DO NOTHING
    RETURNING where the database has it (PostgreSQL, SQLite 3.35+)."""
    dialect = session.get_bind().dialect
    if dialect.insert_returning and dialect.name in _INSERT_OR_SKIP:
        return session.scalars(_insert_or_skip(dialect.name), [values]).one_or_none()
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


@cache  # built once: building it per call cost more than running it
def _insert_or_skip(dialect_name: str) -> Any:
    insert = _INSERT_OR_SKIP[dialect_name](Evaluation)
    return insert.on_conflict_do_nothing(index_elements=[Evaluation.candidate_id]).returning(Evaluation)


@cache
def _raise_best() -> Update:
    runs = RUNS_TABLE.c
    return (
        update(RUNS_TABLE)
        .where(runs.id == bindparam("run_id"))
        .where(runs.best_score.is_(None) | (runs.best_score < bindparam("score")))
        .values(best_score=bindparam("score"), best_candidate_id=bindparam("candidate_id"),
                updated_at=bindparam("now"))
    )
