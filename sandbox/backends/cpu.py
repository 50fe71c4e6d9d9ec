"""The CPU backend: candidates run in the sandbox child on the host CPU, single-threaded by
default, timed with ``time.perf_counter`` (captured before any candidate is imported)."""

from __future__ import annotations

import gc
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from daedalus.sandbox.backends import compare as C
from daedalus.sandbox.backends.base import Backend, CandidateFailure, Expected, TimingReport
from daedalus.sandbox.backends.timing import NOISY_IQR_REL, calls_per_sample, interleave, summarize
from daedalus.sandbox.result import Status

_clock = time.perf_counter
_gc_disable = gc.disable
_gc_enable = gc.enable
_set_num_threads = torch.set_num_threads
_get_num_threads = torch.get_num_threads
_Module = torch.nn.Module
CANDIDATE_MODULE = "daedalus_candidate"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str:
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


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
        ref_args = C.clone_args(trial.inputs)
        cand_args = C.clone_args(trial.inputs)
        expected = [C.restore(s) for s in trial.outputs]
        what = "timing"

        def run_ref(n: int) -> float:
            outs = []
            try:
                start = _clock()
                for _ in range(n):
                    outs.append(ref(*ref_args))
                return (_clock() - start) / n
            except Exception as exc:
                # The reference passed every trial before; failing now means interference.
                raise CandidateFailure(Status.RUNTIME_ERROR, "timing", "the reference Model "
                                       "failed during timing after the candidate was loaded: "
                                       f"{type(exc).__name__}: {exc}") from None

        def run_cand(n: int) -> float:
            outs = []
            try:
                start = _clock()
                for _ in range(n):
                    outs.append(cand(*cand_args))
                elapsed = (_clock() - start) / n
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
            ref_est = min(run_ref(1) for _ in range(3))
            cand_est = min(run_cand(1) for _ in range(3))
            n_ref, n_cand = calls_per_sample(ref_est), calls_per_sample(cand_est)
            report = self._measure(run_ref, run_cand, n_ref, n_cand, threads, budget_s)
            if max(report.ref_iqr_rel, report.cand_iqr_rel) > NOISY_IQR_REL:
                again = self._measure(run_ref, run_cand, n_ref, n_cand, threads, budget_s)
                worst = max(report.ref_iqr_rel, report.cand_iqr_rel)
                if max(again.ref_iqr_rel, again.cand_iqr_rel) < worst:
                    report = again
                report.remeasured = True
                if max(report.ref_iqr_rel, report.cand_iqr_rel) > NOISY_IQR_REL:
                    report.flags.append("noisy_timing")
        finally:
            _gc_enable()
        if _get_num_threads() != threads:
            raise CandidateFailure(Status.RUNTIME_ERROR, "timing", "the candidate changed "
                                   "torch's thread count; timing uses a fixed count (rule: threads).")
        return report

    @staticmethod
    def _measure(run_ref: Any, run_cand: Any, n_ref: int, n_cand: int, threads: int,
                 budget_s: float) -> TimingReport:
        a, b = interleave(lambda: run_ref(n_ref), lambda: run_cand(n_cand), budget_s=budget_s)
        sa, sb = summarize(a), summarize(b)
        return TimingReport(
            ref_ms=sa.median * 1e3, cand_ms=sb.median * 1e3,
            ref_iqr_rel=sa.iqr_rel, cand_iqr_rel=sb.iqr_rel,
            ref_ci_rel=sa.ci_rel, cand_ci_rel=sb.ci_rel,
            repeats=min(sa.n, sb.n), threads=threads, calls_per_sample=(n_ref, n_cand),
        )  # fmt: skip

    def fingerprint(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "device": _cpu_model(),
            "cpu_model": _cpu_model(),
            "cores": str(os.cpu_count() or 0),
            "cores_usable": str(len(os.sched_getaffinity(0))),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "compiler": _compiler(),
            "os": platform.platform(),
        }
