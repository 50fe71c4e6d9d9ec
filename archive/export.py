"""Moving archives between machines: the lossless JSONL export, and a CSV table.

The JSONL file is one JSON object per line: a ``header`` (format, version, schema), then
per run its ``run`` record, its ``candidate`` records in ``seq`` order, their
``evaluation`` records and its ``lesson`` records, and an ``end`` record with the counts,
so a file cut short in transfer is refused instead of half-imported. Every column is
written under ``data`` with its id, so an import preserves ids and lineage.

``daedalus.archive.importer`` reads it back into any archive.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from daedalus.archive.migrations import HEAD
from daedalus.archive.models import Base, Candidate, Evaluation, Lesson, Run, utcnow
from daedalus.archive.review import CandidateFilter, apply_filter, small_match

FORMAT = "daedalus-archive"
VERSION = 1
CHUNK = 1000
MODELS: dict[str, type[Base]] = {
    "run": Run,
    "candidate": Candidate,
    "evaluation": Evaluation,
    "lesson": Lesson,
}


def columns(model: type[Base]) -> list[Any]:
    return list(model.__table__.columns)


def row_to_data(obj: Base) -> dict[str, Any]:
    """Every column of a row, JSON-ready (datetimes as ISO 8601 UTC)."""
    data: dict[str, Any] = {}
    for col in columns(type(obj)):
        value = getattr(obj, col.key)
        data[col.key] = value.isoformat() if isinstance(value, datetime) else value
    return data


def _line(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), default=str) + "\n"


def _scope_runs(session: Session, flt: CandidateFilter) -> list[Run]:
    query = select(Run).order_by(Run.created_at, Run.id)
    if flt.run_id:
        query = query.where(Run.id == flt.run_id)
    if flt.task:
        query = query.where(Run.task == flt.task)
    return list(session.scalars(query))


def _candidates(session: Session, run: Run, flt: CandidateFilter) -> Iterator[Candidate]:
    """The run's candidates matching ``flt`` by seq, a chunk at a time (bounded memory)."""
    matched = small_match(session, flt)
    last = 0
    while True:
        query = apply_filter(
            select(Candidate), CandidateFilter(**{**flt.__dict__, "run_id": run.id}), matched
        )
        query = query.where(Candidate.seq > last).order_by(Candidate.seq).limit(CHUNK)
        chunk = list(session.scalars(query.options(selectinload(Candidate.evaluation))))
        yield from chunk
        if len(chunk) < CHUNK:
            return
        last = chunk[-1].seq
        session.expunge_all()  # keep memory flat on 100,000-candidate runs


def export_jsonl(
    session: Session, out: IO[str], *, flt: CandidateFilter | None = None
) -> Counter[str]:
    """Write the runs (and their candidates, evaluations, lessons) matching ``flt``."""
    flt = flt or CandidateFilter()
    counts: Counter[str] = Counter()
    out.write(
        _line(
            "header",
            format=FORMAT,
            version=VERSION,
            schema=HEAD,
            exported_at=utcnow().isoformat(),
            filters={k: v for k, v in flt.__dict__.items() if v},
        )
    )
    for run in _scope_runs(session, flt):
        out.write(_line("run", data=row_to_data(run)))
        counts["run"] += 1
        evaluations: list[str] = []
        for cand in _candidates(session, run, flt):
            out.write(_line("candidate", data=row_to_data(cand)))
            counts["candidate"] += 1
            evaluations.append(cand.id)
        for i in range(0, len(evaluations), CHUNK):
            for ev in session.scalars(
                select(Evaluation).where(Evaluation.candidate_id.in_(evaluations[i : i + CHUNK]))
            ):
                out.write(_line("evaluation", data=row_to_data(ev)))
                counts["evaluation"] += 1
            session.expunge_all()
        for lesson in session.scalars(
            select(Lesson).where(Lesson.run_id == run.id).order_by(Lesson.created_at)
        ):
            out.write(_line("lesson", data=row_to_data(lesson)))
            counts["lesson"] += 1
    out.write(_line("end", counts=dict(counts)))
    return counts


CSV_FIELDS = (
    "run_id", "task", "id", "seq", "status", "score", "speedup", "mode", "proposer", "model",
    "parent_id", "island", "generation", "iteration", "cell", "features", "duplicate_of",
    "duplicate_kind", "prompt_tokens", "completion_tokens", "cost_usd", "created_at",
    "description", "backend", "sandbox", "stage", "error", "duration_s", "fingerprint_hash",
)  # fmt: skip


def export_csv(session: Session, out: IO[str], *, flt: CandidateFilter | None = None) -> int:
    """One row per candidate with its evaluation, ``objective.*`` and ``metric.*`` columns
    flattened for spreadsheets (no code: use JSONL for a lossless copy). Returns rows."""
    flt = flt or CandidateFilter()
    runs = _scope_runs(session, flt)
    objective_keys: set[str] = set()
    metric_keys: set[str] = set()
    for run in runs:  # first pass: the union of objective and metric names
        for cand in _candidates(session, run, flt):
            ev = cand.evaluation
            if ev is not None:
                objective_keys.update(ev.objectives)
                metric_keys.update(ev.metrics)
    extra = [f"objective.{k}" for k in sorted(objective_keys)] + [
        f"metric.{k}" for k in sorted(metric_keys)
    ]
    writer = csv.DictWriter(out, fieldnames=[*CSV_FIELDS, *extra], extrasaction="ignore")
    writer.writeheader()
    rows = 0
    for run in runs:
        for cand in _candidates(session, run, flt):
            data = row_to_data(cand)
            data["features"] = json.dumps(cand.features, sort_keys=True)
            ev = cand.evaluation
            if ev is not None:
                error_lines = (ev.error or "").strip().splitlines()
                data.update(
                    speedup=ev.speedup,
                    backend=ev.backend,
                    sandbox=ev.sandbox,
                    stage=ev.stage,
                    error=error_lines[-1] if error_lines else "",
                    duration_s=ev.duration_s,
                    fingerprint_hash=ev.fingerprint_hash,
                )
                data.update({f"objective.{k}": v for k, v in ev.objectives.items()})
                data.update({f"metric.{k}": v for k, v in ev.metrics.items()})
            writer.writerow(data)
            rows += 1
    return rows
