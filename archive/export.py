"""Moving archives between machines: JSONL export and import (lossless), CSV export.

The JSONL file is one JSON object per line: a ``header`` (format, version, schema), then
per run its ``run`` record, its ``candidate`` records in ``seq`` order, their
``evaluation`` records and its ``lesson`` records, and an ``end`` record with the counts,
so a file cut short in transfer is refused instead of half-imported. Every column is
written under ``data`` with its id, so an import preserves ids and lineage.

Import merges into any archive in one transaction: rows already there unchanged are
skipped (re-importing is a no-op), new rows are added, and rows that clash (the same id
with different content, or a run that went on separately on two machines and used the
same ``seq`` twice) are reported as conflicts and skipped, never overwritten.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import DateTime, func, insert, select, update
from sqlalchemy.orm import Session, selectinload

from daedalus.archive.errors import ArchiveError
from daedalus.archive.migrations import HEAD
from daedalus.archive.models import Base, Candidate, Evaluation, Lesson, Run, utcnow
from daedalus.archive.review import CandidateFilter, apply_filter, small_match

FORMAT = "daedalus-archive"
VERSION = 1
CHUNK = 1000
_MODELS: dict[str, type[Base]] = {
    "run": Run,
    "candidate": Candidate,
    "evaluation": Evaluation,
    "lesson": Lesson,
}


class ImportFileError(ArchiveError):
    """The file is not a complete Daedalus archive export; nothing was imported."""


def _columns(model: type[Base]) -> list[Any]:
    return list(model.__table__.columns)


def row_to_data(obj: Base) -> dict[str, Any]:
    """Every column of a row, JSON-ready (datetimes as ISO 8601 UTC)."""
    data: dict[str, Any] = {}
    for col in _columns(type(obj)):
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


# ----------------------------------------------------------------------------- import


@dataclass(frozen=True)
class Conflict:
    kind: str
    id: str
    reason: str


@dataclass
class ImportReport:
    """What an import did, per record type: ``added``, ``same`` (already there unchanged),
    ``updated`` (runs whose counters the file moved forward), conflicts and warnings."""

    added: Counter[str] = field(default_factory=Counter)
    same: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    conflicts: list[Conflict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _is_datetime(column: Any) -> bool:
    kind = getattr(column.type, "impl", column.type)  # UTCDateTime decorates DateTime
    return isinstance(kind, DateTime)


def _parse(model: type[Base], data: dict[str, Any], report: ImportReport) -> dict[str, Any]:
    cols = {c.key: c for c in _columns(model)}
    unknown = sorted(set(data) - set(cols))
    note = f"ignored unknown {model.__tablename__} fields {', '.join(unknown)} (written by a newer Daedalus?)"
    if unknown and note not in report.warnings:
        report.warnings.append(note)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in cols:
            continue
        if isinstance(value, str) and _is_datetime(cols[key]):
            value = datetime.fromisoformat(value)
        values[key] = value
    if "id" not in values:
        raise ImportFileError(
            f"a {model.__tablename__} record has no id. Fix: re-export the archive."
        )
    return values


# Fields that identify a row: the same id with other values here is a conflict.
_IDENTITY = {
    "run": ("task", "created_at"),
    "candidate": ("run_id", "seq", "code_hash"),
    "evaluation": ("candidate_id", "status", "score"),
    "lesson": ("run_id", "text"),
}
_RUN_PROGRESS = (
    "status", "iterations", "prompt_tokens", "completion_tokens", "cost_usd", "device_seconds",
    "elapsed_s", "finished_at", "updated_at", "host", "pid", "guidance",
)  # fmt: skip


class _Importer:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.report = ImportReport()
        self.skipped_runs: set[str] = set()
        self.skipped_candidates: set[str] = set()
        self.touched_runs: set[str] = set()
        self.links: dict[str, tuple[str | None, str | None]] = {}

    def _same(self, kind: str, existing: Base, values: dict[str, Any]) -> bool:
        return all(getattr(existing, k) == values.get(k) for k in _IDENTITY[kind] if k in values)

    def run(self, values: dict[str, Any]) -> None:
        existing = self.s.get(Run, values["id"])
        if existing is None:
            values = {**values, "best_candidate_id": None, "best_score": None}
            self.s.execute(insert(Run), [values])
            self.report.added["run"] += 1
        elif not self._same("run", existing, values):
            self.skipped_runs.add(values["id"])
            self.report.conflicts.append(
                Conflict(
                    "run",
                    values["id"],
                    (
                        f"this archive already has a run {values['id']} of task {existing.task!r} "
                        f"created {existing.created_at}; the file's is of task {values.get('task')!r} "
                        f"created {values.get('created_at')}. Skipped with all its candidates."
                    ),
                )
            )
            return
        elif values.get("updated_at") and values["updated_at"] > existing.updated_at:
            for key in _RUN_PROGRESS:
                if key in values:
                    setattr(existing, key, values[key])
            self.report.updated["run"] += 1
        else:
            self.report.same["run"] += 1
        self.touched_runs.add(values["id"])

    def candidates(self, batch: list[dict[str, Any]]) -> None:
        fresh = []
        ids = [v["id"] for v in batch]
        have = {c.id: c for c in self.s.scalars(select(Candidate).where(Candidate.id.in_(ids)))}
        for values in batch:
            cid = values["id"]
            if values.get("run_id") in self.skipped_runs:
                self.skipped_candidates.add(cid)
                self.report.skipped["candidate"] += 1
                continue
            existing = have.get(cid)
            if existing is not None:
                if self._same("candidate", existing, values):
                    self.report.same["candidate"] += 1
                else:
                    self._conflict_candidate(
                        cid,
                        f"candidate {cid} exists here with other content "
                        f"(run {existing.run_id}, seq {existing.seq}).",
                    )
                continue
            taken = self.s.scalar(
                select(Candidate.id).where(
                    Candidate.run_id == values.get("run_id"), Candidate.seq == values.get("seq")
                )
            )
            if taken is not None:
                self._conflict_candidate(
                    cid,
                    (
                        f"seq {values.get('seq')} of run {values.get('run_id')} is already candidate "
                        f"{taken} here: the run went on separately on two machines. Fix: import the "
                        "other copy into a separate archive, or keep this one as it is."
                    ),
                )
                continue
            self.links[cid] = (values.get("parent_id"), values.get("duplicate_of"))
            fresh.append({**values, "parent_id": None, "duplicate_of": None})
        if fresh:
            self.s.execute(insert(Candidate), fresh)
            self.report.added["candidate"] += len(fresh)

    def _conflict_candidate(self, cid: str, reason: str) -> None:
        self.skipped_candidates.add(cid)
        self.report.conflicts.append(Conflict("candidate", cid, reason))

    def evaluations(self, batch: list[dict[str, Any]]) -> None:
        have = {
            e.candidate_id: e
            for e in self.s.scalars(
                select(Evaluation).where(
                    Evaluation.candidate_id.in_([v.get("candidate_id") for v in batch])
                )
            )
        }
        for values in batch:
            cid = str(values.get("candidate_id"))
            if cid in self.skipped_candidates:
                self.report.skipped["evaluation"] += 1
                continue
            existing = have.get(cid) or self.s.get(Evaluation, values["id"])
            if existing is not None:
                if self._same("evaluation", existing, values):
                    self.report.same["evaluation"] += 1
                else:
                    self.report.conflicts.append(
                        Conflict(
                            "evaluation",
                            values["id"],
                            (
                                f"candidate {cid} already has evaluation {existing.id} here "
                                f"({existing.status}, score {existing.score}); the file's says "
                                f"{values.get('status')}, score {values.get('score')}. Kept this one."
                            ),
                        )
                    )
                continue
            self.s.execute(insert(Evaluation), [values])
            self.s.execute(
                update(Candidate)
                .where(Candidate.id == cid)
                .values(status=values.get("status"), score=values.get("score"))
            )
            self.report.added["evaluation"] += 1

    def lesson(self, values: dict[str, Any]) -> None:
        if values.get("run_id") in self.skipped_runs:
            self.report.skipped["lesson"] += 1
            return
        existing = self.s.get(Lesson, values["id"])
        if existing is None:
            self.s.execute(insert(Lesson), [values])
            self.report.added["lesson"] += 1
        elif self._same("lesson", existing, values):
            self.report.same["lesson"] += 1
        else:
            self.report.conflicts.append(
                Conflict("lesson", values["id"], "a lesson with this id has other text here.")
            )

    def finish(self) -> None:
        for cid, (parent, dup) in self.links.items():
            values: dict[str, Any] = {}
            for key, target in (("parent_id", parent), ("duplicate_of", dup)):
                if target is None:
                    continue
                if self.s.get(Candidate, target) is not None:
                    values[key] = target
                else:
                    self.report.warnings.append(
                        f"candidate {cid}: its {key.replace('_id', '').replace('_', ' ')} "
                        f"{target} is neither in the file nor here; the link was dropped."
                    )
            if values:
                self.s.execute(update(Candidate).where(Candidate.id == cid).values(**values))
        for run_id in self.touched_runs:
            top_seq = (
                self.s.scalar(select(func.max(Candidate.seq)).where(Candidate.run_id == run_id))
                or 0
            )
            best = self.s.execute(
                select(Candidate.id, Candidate.score)
                .where(Candidate.run_id == run_id, Candidate.status == "ok")
                .order_by(Candidate.score.desc(), Candidate.seq)
                .limit(1)
            ).first()
            run = self.s.get(Run, run_id)
            assert run is not None
            self.s.flush()
            # Keep updated_at as the file (or this archive) had it: recomputing derived
            # fields is not progress, and a re-import must leave the archive byte-equal.
            self.s.execute(
                update(Run)
                .where(Run.id == run_id)
                .values(
                    candidate_count=max(run.candidate_count, top_seq),
                    best_candidate_id=best[0] if best else None,
                    best_score=best[1] if best else None,
                    updated_at=run.updated_at,
                )
                .execution_options(synchronize_session="fetch")
            )
        self.s.flush()


def import_jsonl(
    session: Session, lines: Iterable[str], *, source: str = "the file"
) -> ImportReport:
    """Merge an export into the archive in the caller's transaction; raises
    ImportFileError (roll back) when the file is not a complete export."""
    imp = _Importer(session)
    seen: Counter[str] = Counter()
    pending: list[dict[str, Any]] = []
    pending_kind = ""
    header = end = None

    def flush() -> None:
        nonlocal pending
        if pending:
            (imp.candidates if pending_kind == "candidate" else imp.evaluations)(pending)
            pending = []

    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            kind = record["type"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ImportFileError(
                f"{source} line {number} is not an export record ({exc}). "
                "Fix: pass a file written by `daedalus archive export --format jsonl`."
            ) from exc
        if header is None:
            if kind != "header" or record.get("format") != FORMAT:
                raise ImportFileError(
                    f"{source} does not start with a {FORMAT} header. Fix: pass a "
                    "file written by `daedalus archive export --format jsonl`."
                )
            if int(record.get("version", 0)) > VERSION:
                raise ImportFileError(
                    f"{source} is export format version {record.get('version')}; this "
                    f"Daedalus reads up to {VERSION}. Fix: upgrade daedalus here."
                )
            header = record
            continue
        if end is not None:
            raise ImportFileError(
                f"{source} has records after its end record (line {number}). "
                "Fix: export again instead of concatenating files."
            )
        if kind == "end":
            end = record
            continue
        if kind not in _MODELS:
            raise ImportFileError(f"{source} line {number}: unknown record type {kind!r}.")
        if kind != pending_kind or len(pending) >= CHUNK:
            flush()
            pending_kind = kind
        values = _parse(_MODELS[kind], record.get("data") or {}, imp.report)
        seen[kind] += 1
        if kind == "run":
            imp.run(values)
        elif kind == "lesson":
            imp.lesson(values)
        else:
            pending.append(values)
    flush()
    if header is None or end is None:
        raise ImportFileError(
            f"{source} ends before its end record: it was cut short. "
            "Nothing was imported. Fix: copy or export the file again."
        )
    expected = Counter({k: int(v) for k, v in (end.get("counts") or {}).items()})
    if +expected != +seen:
        raise ImportFileError(
            f"{source} promises {dict(expected)} records but holds {dict(seen)}. "
            "Nothing was imported. Fix: copy or export the file again."
        )
    imp.finish()
    return imp.report
