"""The Triton backend: ``@triton.jit`` kernels compiled for an NVIDIA GPU.

On a machine without a usable GPU the same candidates still get a real correctness check:
the Triton interpreter (``TRITON_INTERPRET=1``) runs the kernels on the CPU. Their speed
there says nothing about a GPU, so timing is reported as unavailable (the harness flags
``timing_not_meaningful_on_cpu`` and leaves the speedup empty) instead of being faked.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from daedalus.sandbox.backends import detect
from daedalus.sandbox.backends.base import Expected, TimingReport
from daedalus.sandbox.backends.cpu import CpuBackend
from daedalus.sandbox.backends.cuda import CudaBackend


class TritonBackend(CudaBackend):
    name = "triton"

    def __init__(self) -> None:
        self.gpu = CudaBackend.available(self)

    def available(self) -> bool:
        return detect.triton_problem(need_gpu=False) is None

    def device(self) -> str:
        return "cuda:0" if self.gpu else "cpu"

    def compile(self, code: str, workdir: Path) -> ModuleType:
        # Triton reads this when the candidate's kernels are defined and launched.
        os.environ["TRITON_INTERPRET"] = "0" if self.gpu else "1"
        return super().compile(code, workdir)

    def check(self, cand: Any, trial: Expected, *, atol: float, rtol: float, stage: str) -> float:
        if self.gpu:
            return super().check(cand, trial, atol=atol, rtol=rtol, stage=stage)
        return CpuBackend.check(self, cand, trial, atol=atol, rtol=rtol, stage=stage)

    def time(self, ref: Any, cand: Any, trial: Expected, *, atol: float, rtol: float,
             threads: int, budget_s: float) -> TimingReport:
        if self.gpu:
            return super().time(ref, cand, trial, atol=atol, rtol=rtol, threads=threads,
                                budget_s=budget_s)  # fmt: skip
        # Only plain-torch candidates get here (the harness skips timing for Triton code on
        # the CPU): their CPU time is real, but it is not the GPU time this backend is for.
        report = CpuBackend.time(self, ref, cand, trial, atol=atol, rtol=rtol,
                                 threads=threads, budget_s=budget_s)  # fmt: skip
        report.flags.append("timed_on_cpu_not_gpu")
        return report

    def fingerprint(self) -> dict[str, str]:
        if self.gpu:
            return super().fingerprint()
        found = CpuBackend.fingerprint(self)
        found.update(backend=self.name, triton=detect.triton_version(),
                     triton_mode="interpreter (TRITON_INTERPRET=1): timing unavailable")
        return found
