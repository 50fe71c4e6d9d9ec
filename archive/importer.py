"""Importing a JSONL export (``daedalus.archive.export``) into any archive.

Import merges in one transaction: rows already there unchanged are skipped (re-importing
is a no-op), new rows are added with their ids, and rows that clash (the same id with
different content, or a run that went on separately on two machines and used the same
``seq`` twice) are reported as conflicts and skipped, never overwritten. A file without
its end record, or whose counts disagree, is refused and nothing is imported.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, func, insert, select, update
from sqlalchemy.orm import Session

from daedalus.archive import pareto
from daedalus.archive.errors import ArchiveError
from daedalus.archive.export import CHUNK, FORMAT, MODELS, VERSION, columns
from daedalus.archive.models import Base, Candidate, Evaluation, Lesson, Run


class ImportFileError(ArchiveError):
    """The file is not a complete Daedalus archive export; nothing was imported."""


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
    cols = {c.key: c for c in columns(model)}
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
            pareto.rebuild(self.s, run_id=run_id)  # imported results rank afresh
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
        if kind not in MODELS:
            raise ImportFileError(f"{source} line {number}: unknown record type {kind!r}.")
        if kind != pending_kind or len(pending) >= CHUNK:
            flush()
            pending_kind = kind
        values = _parse(MODELS[kind], record.get("data") or {}, imp.report)
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
