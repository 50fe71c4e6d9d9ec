"""The evaluation contract: limits going in, a result coming out.

A failing candidate is data, never an exception: every outcome is an
``EvaluationResult`` with one of the statuses below.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Status(StrEnum):
    REJECTED = "rejected"
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    INCORRECT = "incorrect"
    OK = "ok"


class Limits(BaseModel):
    """Resource limits for one candidate. Defaults suit the shipped CPU tasks."""

    timeout_s: float = 60.0
    compile_timeout_s: float = 180.0
    memory_mb: int = 6144
    cpu_s: int = 240
    fsize_mb: int = 64
    output_bytes: int = 64_000
    threads: int = 1
    trials: int = 5
    processes: int = 256  # RLIMIT_NPROC of the sandbox user: shared by concurrent candidates
    timing_budget_s: float = 6.0  # adaptive timing stops here even if the estimate is noisy
    policy: bool = True  # the static candidate policy; off only in sandbox containment tests


class EvaluationResult(BaseModel):
    status: Status
    correct: bool = False
    speedup: float | None = None
    score: float = 0.0
    error: str | None = None
    stage: str = ""  # the cascade stage that decided the status
    metrics: dict[str, float] = Field(default_factory=dict)
    objectives: dict[str, float] = Field(default_factory=dict)
    logs: str = ""
    artifacts: dict[str, Any] = Field(default_factory=dict)
    fingerprint: dict[str, str] = Field(default_factory=dict)
    functional_hash: str | None = None
    flags: list[str] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = 0.0
    isolation: dict[str, Any] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK
