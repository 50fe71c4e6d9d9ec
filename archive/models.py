"""SQLAlchemy 2.0 typed models: runs, candidates, evaluations and lessons.

The schema is created by the Alembic migrations in ``archive/migrations`` only; a test
checks that these models and the migrations agree, so edit both together.

``Candidate.status`` and ``Candidate.score`` are denormalised copies of the candidate's
evaluation (written in the same transaction by ``store.record_evaluation``). They exist
so that every hot query (top-k, parent selection, elites, pending work) is a single-table
range scan over one composite index instead of a join over 100,000 rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("running", "stopped", "finished", "failed", "killed")
# Evaluation statuses mirror daedalus.sandbox.result.Status (archive may not import sandbox).
EVALUATION_STATUSES = ("rejected", "compile_error", "runtime_error", "timeout", "incorrect", "ok")
# Candidate-only statuses: not evaluated yet, or skipped because it duplicates another.
PENDING = "pending"
DUPLICATE = "duplicate"
CANDIDATE_STATUSES = (PENDING, DUPLICATE, *EVALUATION_STATUSES)
MODES = ("improve", "fix", "crossover", "explore", "seed", "chat")
DUPLICATE_KINDS = ("exact", "functional")

RUN_ID_LENGTH = 12
ID_LENGTH = 16


def new_run_id() -> str:
    """A short random run id (12 hex chars): easy to type, and prefixes work too."""
    return uuid.uuid4().hex[:RUN_ID_LENGTH]


def new_id() -> str:
    """A random id for candidates, evaluations and lessons (16 hex chars).

    Longer than run ids because one archive may hold millions of candidates; users
    still type only a unique prefix.
    """
    return uuid.uuid4().hex[:ID_LENGTH]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    SQLite has no timezone type and hands back naive datetimes; storing naive UTC and
    re-attaching UTC on the way out gives the same values on SQLite and PostgreSQL.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Deterministic constraint names, so migrations can alter them on PostgreSQL later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Run(Base):
    """One discovery run (or one chat session's run) on one task."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_run_id)
    task: Mapped[str] = mapped_column(String(255))  # Task.key
    task_path: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(32), default="kernel")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="running")
    proposer: Mapped[str] = mapped_column(String(64), default="builtin")
    model: Mapped[str] = mapped_column(String(255), default="builtin")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Which process drives the run, so a reviewer can tell "running" from "died".
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    # Budget spent; only ever changed by atomic increments in store.add_spend.
    iterations: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    device_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Wall time the run has been driven, summed over resumes (for --time-limit).
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
    # Allocates Candidate.seq; bumped atomically so concurrent writers never share a seq.
    candidate_count: Mapped[int] = mapped_column(Integer, default=0)
    # No foreign key: runs <-> candidates would be a cycle, which complicates DDL and import.
    best_candidate_id: Mapped[str | None] = mapped_column(String(32), default=None)
    best_score: Mapped[float | None] = mapped_column(Float, default=None)
    guidance: Mapped[list[Any]] = mapped_column(default=list)

    __table_args__ = (
        Index("ix_runs_task_created_at", "task", "created_at"),
        Index("ix_runs_status_created_at", "status", "created_at"),
        Index("ix_runs_created_at", "created_at"),
    )

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, task={self.task!r}, status={self.status!r})"


class Candidate(Base):
    """One proposed program, with where it came from and (denormalised) how it scored."""

    __tablename__ = "candidates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(255))
    seq: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(Text)
    code_hash: Mapped[str] = mapped_column(String(64))
    functional_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), default=None
    )
    inspirations: Mapped[list[Any]] = mapped_column(default=list)
    island: Mapped[int] = mapped_column(Integer, default=0)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    iteration: Mapped[int] = mapped_column(Integer, default=0)
    proposer: Mapped[str] = mapped_column(String(64), default="builtin")
    model: Mapped[str] = mapped_column(String(255), default="builtin")
    mode: Mapped[str] = mapped_column(String(16), default="improve")
    prompt: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    instruction: Mapped[str | None] = mapped_column(Text, default=None)
    features: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cell: Mapped[str | None] = mapped_column(String(255), default=None)
    duplicate_of: Mapped[str | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), default=None
    )
    duplicate_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Denormalised from the evaluation (see the module docstring).
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    # Pareto rank over the run's declared objectives (archive/pareto.py): True on the
    # front, False dominated, None not ranked.
    pareto: Mapped[bool | None] = mapped_column(default=None)

    evaluation: Mapped[Evaluation | None] = relationship(
        back_populates="candidate", uselist=False, lazy="select"
    )

    __table_args__ = (
        Index("uq_candidates_run_id_seq", "run_id", "seq", unique=True),
        # top_candidates, sample_parent without an island
        Index("ix_candidates_run_status_score", "run_id", "status", "score"),
        # pending_candidates, recent_failures, random_candidate, count_by_status
        Index("ix_candidates_run_status_seq", "run_id", "status", "seq"),
        # island_members / sample_parent on an island
        Index("ix_candidates_run_island_status_score", "run_id", "island", "status", "score"),
        # cell_elites: one ordered pass per cell
        Index("ix_candidates_run_status_cell_score", "run_id", "status", "cell", "score"),
        # the Pareto front and its dominated points (archive/pareto.py)
        Index("ix_candidates_run_pareto_seq", "run_id", "pareto", "seq"),
        # task-wide top-k across runs
        Index("ix_candidates_task_status_score", "task", "status", "score"),
        Index("ix_candidates_task_code_hash", "task", "code_hash"),
        Index("ix_candidates_task_functional_hash", "task", "functional_hash"),
        Index("ix_candidates_parent_id", "parent_id"),
        Index("ix_candidates_duplicate_of", "duplicate_of"),
    )

    def __repr__(self) -> str:
        return f"Candidate(id={self.id!r}, run_id={self.run_id!r}, seq={self.seq}, status={self.status!r})"


class Evaluation(Base):
    """The one evaluation of a candidate: the sandbox's EvaluationResult, stored."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    candidate_id: Mapped[str] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16))
    correct: Mapped[bool] = mapped_column(default=False)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    speedup: Mapped[float | None] = mapped_column(Float, default=None)
    stage: Mapped[str] = mapped_column(String(64), default="")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    objectives: Mapped[dict[str, Any]] = mapped_column(default=dict)
    logs: Mapped[str] = mapped_column(Text, default="")
    artifacts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fingerprint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fingerprint_hash: Mapped[str] = mapped_column(String(16), default="")
    backend: Mapped[str] = mapped_column(String(32), default="")
    sandbox: Mapped[str] = mapped_column(String(32), default="")
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    flags: Mapped[list[Any]] = mapped_column(default=list)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    candidate: Mapped[Candidate] = relationship(back_populates="evaluation")

    __table_args__ = (
        Index("ix_evaluations_fingerprint_hash", "fingerprint_hash"),
        Index("ix_evaluations_backend", "backend"),
    )

    def __repr__(self) -> str:
        return f"Evaluation(candidate_id={self.candidate_id!r}, status={self.status!r}, score={self.score})"


class Lesson(Base):
    """Something the analyst distilled from recent results, kept for later prompts."""

    __tablename__ = "lessons"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(255))
    iteration: Mapped[int] = mapped_column(Integer, default=0)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_lessons_task_created_at", "task", "created_at"),
        Index("ix_lessons_run_id_created_at", "run_id", "created_at"),
    )
