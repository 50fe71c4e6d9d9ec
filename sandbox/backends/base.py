"""The hardware backend interface, after MultiKernelBench's backend layer.

A backend knows how to load a candidate for its device, check it against the reference,
time both, and describe the hardware. It runs *inside* the sandbox child; the parent
never imports a backend (and so never imports torch). Importing this module is cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from daedalus.sandbox.backends.timing import summarize
from daedalus.sandbox.result import Status


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine or in this build; the message says why."""


class CandidateFailure(Exception):
    """The candidate failed a cascade stage; becomes an EvaluationResult, never escapes."""

    def __init__(self, status: Status, stage: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.stage = stage
        self.message = message


@dataclass
class Expected:
    """One trial: pristine inputs and the reference outputs, kept as bytes (see compare)."""

    seed: int
    inputs: list[Any]
    outputs: list[Any]  # compare.Snapshot objects
    keep_alive: list[Any] = field(default_factory=list)  # the (poisoned) reference outputs


@dataclass
class TimingReport:
    ref_ms: float
    cand_ms: float
    ref_iqr_rel: float
    cand_iqr_rel: float
    ref_ci_rel: float
    cand_ci_rel: float
    repeats: int
    threads: int
    remeasured: bool = False
    calls_per_sample: tuple[int, int] = (1, 1)
    flags: list[str] = field(default_factory=list)
    clock: str = "wall"  # what ref_ms/cand_ms measure: "wall" or "process_cpu"
    ref_wall_ms: float | None = None  # wall-clock medians, reported alongside
    cand_wall_ms: float | None = None

    samples: tuple[list[float], list[float], list[float], list[float]] = ([], [], [], [])

    @classmethod
    def from_samples(cls, ref: list[float], cand: list[float], ref_wall: list[float],
                     cand_wall: list[float], *, threads: int,
                     calls: tuple[int, int]) -> TimingReport:
        """Medians (ms) and spreads of seconds-per-call samples from the primary clock,
        with wall-clock medians alongside."""
        sa, sb = summarize(ref), summarize(cand)
        return cls(
            ref_ms=sa.median * 1e3, cand_ms=sb.median * 1e3,
            ref_iqr_rel=sa.iqr_rel, cand_iqr_rel=sb.iqr_rel,
            ref_ci_rel=sa.ci_rel, cand_ci_rel=sb.ci_rel,
            repeats=min(sa.n, sb.n), threads=threads, calls_per_sample=calls,
            ref_wall_ms=summarize(ref_wall).median * 1e3,
            cand_wall_ms=summarize(cand_wall).median * 1e3,
            samples=(ref, cand, ref_wall, cand_wall),
        )  # fmt: skip

    def with_wall_clock(self) -> TimingReport:
        """The same run summarised from its wall-clock samples instead."""
        _, _, ref_wall, cand_wall = self.samples
        report = TimingReport.from_samples(ref_wall, cand_wall, ref_wall, cand_wall,
                                           threads=self.threads, calls=self.calls_per_sample)
        report.remeasured, report.flags = self.remeasured, list(self.flags)
        report.clock = "wall"
        return report

    @property
    def speedup(self) -> float:
        return self.ref_ms / self.cand_ms if self.cand_ms > 0 else float("inf")

    def metrics(self) -> dict[str, float]:
        return {
            "ref_ms": self.ref_ms,
            "cand_ms": self.cand_ms,
            "speedup": self.speedup,
            "ref_iqr_rel": self.ref_iqr_rel,
            "cand_iqr_rel": self.cand_iqr_rel,
            "ref_ci_rel": self.ref_ci_rel,
            "cand_ci_rel": self.cand_ci_rel,
            "threads": float(self.threads),
            "repeats": float(self.repeats),
            "remeasured": float(self.remeasured),
            "ref_calls_per_sample": float(self.calls_per_sample[0]),
            "cand_calls_per_sample": float(self.calls_per_sample[1]),
            **({"ref_wall_ms": self.ref_wall_ms} if self.ref_wall_ms is not None else {}),
            **({"cand_wall_ms": self.cand_wall_ms} if self.cand_wall_ms is not None else {}),
        }


class Backend(ABC):
    """What a device must provide to evaluate kernel candidates."""

    name: ClassVar[str]

    @abstractmethod
    def available(self) -> bool:
        """Whether this machine can run the backend at all."""

    @abstractmethod
    def device(self) -> str:
        """The torch device string candidates run on, e.g. ``"cpu"``."""

    @abstractmethod
    def compile(self, code: str, workdir: Path) -> ModuleType:
        """Load the candidate source as a module (raises CandidateFailure(compile_error))."""

    @abstractmethod
    def check(self, cand: Any, trial: Expected, *, atol: float, rtol: float, stage: str) -> float:
        """Run the candidate on one trial's inputs against the reference outputs recorded
        for them; return the largest absolute error or raise CandidateFailure."""

    @abstractmethod
    def time(self, ref: Any, cand: Any, trial: Expected, *, atol: float, rtol: float,
             threads: int, budget_s: float) -> TimingReport:
        """Interleaved timing of reference and candidate; every candidate output checked."""

    @abstractmethod
    def fingerprint(self) -> dict[str, str]:
        """What the numbers depend on: device model, cores, library and compiler versions."""
