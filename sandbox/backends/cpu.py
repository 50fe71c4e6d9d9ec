"""The CPU backend: candidates run in the sandbox child on the host CPU, single-threaded by
default, timed with ``time.perf_counter`` (captured before any candidate is imported)."""

from __future__ import annotations

import gc
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from daedalus.sandbox.backends import compare as C
from daedalus.sandbox.backends.base import Backend, CandidateFailure, Expected, TimingReport
from daedalus.sandbox.backends.detect import cpu_fingerprint
from daedalus.sandbox.backends.timing import NOISY_IQR_REL, calls_per_sample, interleave
from daedalus.sandbox.result import Status

_clock = time.perf_counter
_thread_clock = time.thread_time
_process_clock = time.process_time
OTHER_THREADS_TOLERANCE = 1.10  # process CPU above 110% of the timing thread's: other threads worked
_gc_disable = gc.disable
_gc_enable = gc.enable
_set_num_threads = torch.set_num_threads
_get_num_threads = torch.get_num_threads
_Module = torch.nn.Module
CANDIDATE_MODULE = "daedalus_candidate"


class CpuBackend(Backend):
    name = "cpu"

    def available(self) -> bool:
        return True

    def device(self) -> str:
        return "cpu"

    def compile(self, code: str, workdir: Path) -> ModuleType:
        # A real file, so inspect/linecache work (triton.jit reads the source back).
        path = workdir / "candidate.py"
        path.write_text(code)
        spec = importlib.util.spec_from_file_location(CANDIDATE_MODULE, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[CANDIDATE_MODULE] = module
        C.candidate_files.add(str(path))
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # SystemExit included: it is the candidate's failure
            raise CandidateFailure(Status.COMPILE_ERROR, "compile", "importing the candidate "
                                   f"raised {C.failure_text(exc)}") from None
        model_new = getattr(module, "ModelNew", None)
        if not (isinstance(model_new, type) and issubclass(model_new, _Module)):
            raise CandidateFailure(Status.COMPILE_ERROR, "compile", "the candidate defines no "
                                   "'class ModelNew(nn.Module)'; define it with the same "
                                   "constructor and forward signature as Model.")
        return module

    def check(self, cand: Any, trial: Expected, *, atol: float, rtol: float, stage: str) -> float:
        what = f"trial with input seed {trial.seed}"
        args = C.clone_args(trial.inputs)
        out = C.call_candidate(cand, args, stage, what)
        C.inputs_unchanged(trial.inputs, args, stage, what)
        expected = [C.restore(s) for s in trial.outputs]
        return C.compare(out, expected, atol=atol, rtol=rtol, stage=stage, what=what)

    def time(self, ref: Any, cand: Any, trial: Expected, *, atol: float, rtol: float,
             threads: int, budget_s: float) -> TimingReport:
        _set_num_threads(threads)
        # One thread: CPU time of the timing thread, which other processes' load cannot
        # inflate by time-slicing (on an idle machine it equals wall time; the process CPU
        # clock is tick-coarse once RLIMIT_CPU arms a timer). Several threads: wall time.
        clock, clock_name = (_thread_clock, "thread_cpu") if threads == 1 else (_clock, "wall")
        ref_args = C.clone_args(trial.inputs)
        cand_args = C.clone_args(trial.inputs)
        expected = [C.restore(s) for s in trial.outputs]
        what = "timing"

        def run_ref(n: int, walls: list[float]) -> float:
            outs = []
            try:
                wall, start = _clock(), clock()
                for _ in range(n):
                    outs.append(ref(*ref_args))
                elapsed = (clock() - start) / n
                walls.append((_clock() - wall) / n)
                return elapsed
            except Exception as exc:
                # The reference passed every trial before; failing now means interference.
                raise CandidateFailure(Status.RUNTIME_ERROR, "timing", "the reference Model "
                                       "failed during timing after the candidate was loaded: "
                                       f"{type(exc).__name__}: {exc}") from None

        def run_cand(n: int, walls: list[float]) -> float:
            outs = []
            try:
                wall, start = _clock(), clock()
                for _ in range(n):
                    outs.append(cand(*cand_args))
                elapsed = (clock() - start) / n
                walls.append((_clock() - wall) / n)
            except BaseException as exc:
                raise CandidateFailure(Status.RUNTIME_ERROR, "timing", "ModelNew.forward "
                                       f"raised during timing: {C.failure_text(exc)}") from None
            C.check_side_effects("timing", what)
            for out in outs:  # every timed output, not just one
                C.compare(out, expected, atol=atol, rtol=rtol, stage="timing", what=what,
                          measure=False)
            C.inputs_unchanged(trial.inputs, cand_args, "timing", what)
            return elapsed

        C._set_grad_enabled(False)
        _gc_disable()
        try:
            ref_est = min(run_ref(1, []) for _ in range(3))
            cand_est = min(run_cand(1, []) for _ in range(3))
            calls = (calls_per_sample(ref_est), calls_per_sample(cand_est))
            process0, thread0 = _process_clock(), _thread_clock()
            report = _measure(run_ref, run_cand, calls, threads, budget_s)
            if max(report.ref_iqr_rel, report.cand_iqr_rel) > NOISY_IQR_REL:
                again = _measure(run_ref, run_cand, calls, threads, budget_s)
                worst = max(report.ref_iqr_rel, report.cand_iqr_rel)
                if max(again.ref_iqr_rel, again.cand_iqr_rel) < worst:
                    report = again
                report.remeasured = True
                if max(report.ref_iqr_rel, report.cand_iqr_rel) > NOISY_IQR_REL:
                    report.flags.append("noisy_timing")
            other = (_process_clock() - process0) - (_thread_clock() - thread0)
            if clock_name == "thread_cpu" and other > 0.05 + (OTHER_THREADS_TOLERANCE - 1) * (
                    _thread_clock() - thread0):
                # Work ran on threads the timing clock cannot see: only wall time is honest.
                report = report.with_wall_clock()
                clock_name = "wall"
                report.flags.append("work_on_other_threads")
        finally:
            _gc_enable()
        if _get_num_threads() != threads:
            raise CandidateFailure(Status.RUNTIME_ERROR, "timing", "the candidate changed "
                                   "torch's thread count; timing uses a fixed count (rule: threads).")
        report.clock = clock_name
        return report

    def fingerprint(self) -> dict[str, str]:
        return {**cpu_fingerprint(), "backend": self.name}


def _measure(run_ref: Callable[[int, list[float]], float],
             run_cand: Callable[[int, list[float]], float], calls: tuple[int, int],
             threads: int, budget_s: float) -> TimingReport:
    ref_walls: list[float] = []
    cand_walls: list[float] = []
    a, b = interleave(lambda: run_ref(calls[0], ref_walls),
                      lambda: run_cand(calls[1], cand_walls), budget_s=budget_s)
    return TimingReport.from_samples(a, b, ref_walls, cand_walls, threads=threads, calls=calls)
