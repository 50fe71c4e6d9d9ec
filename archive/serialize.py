"""Plain-dict views of archive rows, for ``--json`` output, export and the web app.

Timestamps are ISO 8601 in UTC; every value is JSON-serialisable.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from daedalus.archive.models import Candidate, Evaluation, Lesson, Run


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_process_alive(run: Run) -> bool | None:
    """Whether the process that drives a ``running`` run still exists.

    None when that cannot be known from here (another host, no pid recorded) or the run
    is not ``running``. A ``running`` run whose process is gone was killed; ``--resume``
    continues it.
    """
    if run.status != "running" or run.pid is None or run.host != socket.gethostname():
        return None
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def run_to_dict(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "task": run.task,
        "task_path": run.task_path,
        "kind": run.kind,
        "status": run.status,
        "alive": run_process_alive(run),
        "proposer": run.proposer,
        "model": run.model,
        "iterations": run.iterations,
        "candidates": run.candidate_count,
        "best_score": run.best_score,
        "best_candidate_id": run.best_candidate_id,
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "cost_usd": run.cost_usd,
        "device_seconds": run.device_seconds,
        "elapsed_s": run.elapsed_s,
        "config": run.config,
        "guidance": run.guidance,
        "host": run.host,
        "pid": run.pid,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "finished_at": _iso(run.finished_at),
    }


def evaluation_to_dict(evaluation: Evaluation, *, logs: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": evaluation.id,
        "candidate_id": evaluation.candidate_id,
        "status": evaluation.status,
        "correct": evaluation.correct,
        "score": evaluation.score,
        "speedup": evaluation.speedup,
        "stage": evaluation.stage,
        "error": evaluation.error,
        "metrics": evaluation.metrics,
        "objectives": evaluation.objectives,
        "artifacts": evaluation.artifacts,
        "fingerprint": evaluation.fingerprint,
        "fingerprint_hash": evaluation.fingerprint_hash,
        "backend": evaluation.backend,
        "sandbox": evaluation.sandbox,
        "duration_s": evaluation.duration_s,
        "flags": evaluation.flags,
        "overrides": evaluation.overrides,
        "created_at": _iso(evaluation.created_at),
    }
    if logs:
        data["logs"] = evaluation.logs
    return data


def candidate_to_dict(
    candidate: Candidate, *, code: bool = False, prompt: bool = False, evaluation: bool = False
) -> dict[str, Any]:
    """The candidate's own fields plus ``speedup`` from its evaluation (loaded if needed).

    ``code``, ``prompt`` and ``evaluation`` (the full evaluation, logs included) are
    opt-in because they dominate the size of a listing.
    """
    ev = candidate.evaluation
    data: dict[str, Any] = {
        "id": candidate.id,
        "run_id": candidate.run_id,
        "task": candidate.task,
        "seq": candidate.seq,
        "status": candidate.status,
        "score": candidate.score,
        "speedup": ev.speedup if ev is not None else None,
        "error": ev.error if ev is not None else None,
        "mode": candidate.mode,
        "proposer": candidate.proposer,
        "model": candidate.model,
        "description": candidate.description,
        "instruction": candidate.instruction,
        "parent_id": candidate.parent_id,
        "inspirations": candidate.inspirations,
        "island": candidate.island,
        "generation": candidate.generation,
        "iteration": candidate.iteration,
        "features": candidate.features,
        "cell": candidate.cell,
        "code_hash": candidate.code_hash,
        "functional_hash": candidate.functional_hash,
        "duplicate_of": candidate.duplicate_of,
        "duplicate_kind": candidate.duplicate_kind,
        "prompt_tokens": candidate.prompt_tokens,
        "completion_tokens": candidate.completion_tokens,
        "cost_usd": candidate.cost_usd,
        "created_at": _iso(candidate.created_at),
    }
    if code:
        data["code"] = candidate.code
    if prompt:
        data["prompt"] = candidate.prompt
    if evaluation:
        data["evaluation"] = evaluation_to_dict(ev) if ev is not None else None
    return data


def lesson_to_dict(lesson: Lesson) -> dict[str, Any]:
    return {
        "id": lesson.id,
        "run_id": lesson.run_id,
        "task": lesson.task,
        "iteration": lesson.iteration,
        "text": lesson.text,
        "created_at": _iso(lesson.created_at),
    }
