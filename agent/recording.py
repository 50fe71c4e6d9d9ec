"""Writing evaluation outcomes into the archive, one caller-owned transaction each.

Shared by the discovery loop (``runtime.py``) and the chat agent's variants
(``chat_actions.py``), so a candidate is recorded the same way whoever proposed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daedalus.agent import planning, security
from daedalus.archive import store

if TYPE_CHECKING:
    from daedalus.sandbox.result import EvaluationResult
    from daedalus.tasks.model import Task


def record_rejection(s: Any, *, candidate_id: str, verdict: security.Verdict, backend: str,
                     sandbox: str) -> None:
    """Archive a vetting rejection as the candidate's evaluation (its rule is the stage)."""
    store.record_evaluation(
        s, candidate_id=candidate_id, status="rejected", stage=verdict.rule or "static",
        error=security.redact(verdict.reason), backend=backend, sandbox=sandbox,
    )


def record_result(s: Any, *, task: Task, candidate_id: str, result: EvaluationResult, backend: str,
                  sandbox: str) -> Any:
    """Store one finished evaluation in the caller's transaction: MAP-Elites features and cell,
    the functional-duplicate link, the evaluation itself and the run's device-seconds.

    Shared by the discovery loop and the chat agent's variants. Returns the store's
    ``RecordOutcome``.
    """
    candidate = store.find_candidate(s, candidate_id=candidate_id)
    if candidate is None:
        raise LookupError(f"candidate {candidate_id} is not in the archive")
    values = planning.features(candidate.code, task.features, result.metrics)
    if "functional_duplicate" in result.flags and result.functional_hash:
        original = store.find_by_functional_hash(
            s, task=task.key, functional_hash=result.functional_hash, run_id=candidate.run_id
        )
        if original is not None and original.id != candidate.id:
            store.mark_duplicate(s, candidate_id=candidate.id, duplicate_of=original.id, kind="functional")
    outcome = store.record_evaluation(
        s,
        candidate_id=candidate.id,
        status=str(result.status),
        correct=result.correct,
        score=result.score,
        speedup=result.speedup,
        stage=result.stage,
        error=security.redact(result.error) if result.error else None,
        metrics=result.metrics,
        objectives=result.objectives,
        logs=security.redact(result.logs),
        artifacts=result.artifacts,
        fingerprint=result.fingerprint,
        functional_hash=result.functional_hash,
        backend=backend,
        sandbox=sandbox,
        duration_s=result.duration_s,
        flags=result.flags,
        overrides=result.overrides,
        features=values,
        cell=planning.cell_key(values),
    )
    store.add_spend(s, run_id=candidate.run_id, device_seconds=result.duration_s)
    return outcome
