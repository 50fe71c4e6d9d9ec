"""Shared machinery of the accelerator backends (cuda, triton on a GPU, npu).

The correctness protocol is the CPU backend's, unchanged: the harness computes the
reference on the CPU from seeded inputs, and ``compare`` judges the candidate. What an
accelerator adds is only the movement: the candidate and its input copies go to the
device, its outputs must come back as plain tensors *on the device* and are copied to the
host for the comparison.

Timing uses the device's events around each call with a device-wide synchronisation
before the end event is recorded, so work a candidate queues on side streams cannot
escape the measurement; each sample starts by overwriting a buffer larger than the L2
cache, so no call profits from data its predecessor left in cache; both sides are warmed
up, then sampled interleaved (A B, B A, ...) until the medians are tight.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from daedalus.sandbox.backends import compare as C
from daedalus.sandbox.backends.base import CandidateFailure, Expected, TimingReport
from daedalus.sandbox.backends.cpu import CpuBackend
from daedalus.sandbox.backends.timing import NOISY_IQR_REL, interleave, summarize
from daedalus.sandbox.result import Status

_Tensor = torch.Tensor
_TensorBase = torch._C.TensorBase
_to = _TensorBase.to
_module_to = torch.nn.Module.to
_device_of = _TensorBase.__dict__["device"].__get__
WARMUP_CALLS = 3
MIN_FLUSH_BYTES = 64 * 1024 * 1024


class AcceleratorBackend(CpuBackend):
    """A backend whose candidates run on ``device_type`` (``"cuda"`` or ``"npu"``)."""

    device_type: ClassVar[str]

    # -- what a device must supply -------------------------------------------------------
    def synchronize(self) -> None:
        raise NotImplementedError

    def event(self) -> Any:
        """A new timing event (``torch.cuda.Event(enable_timing=True)`` or the NPU's)."""
        raise NotImplementedError

    def l2_bytes(self) -> int:
        """The last-level cache size the flush buffer must exceed."""
        raise NotImplementedError

    # -- movement ------------------------------------------------------------------------
    def device(self) -> str:
        return f"{self.device_type}:0"

    def to_device(self, args: list[Any]) -> list[Any]:
        return [_to(a, self.device()) if isinstance(a, _TensorBase) else a for a in args]

    def to_host(self, args: list[Any]) -> list[Any]:
        return [_to(a, "cpu") if isinstance(a, _TensorBase) else a for a in args]

    def place(self, model: Any) -> Any:
        """Move a module's weights to the device (through nn.Module.to captured at import)."""
        if isinstance(model, torch.nn.Module):
            _module_to(model, self.device())
        return model

    def outputs_to_host(self, out: Any, stage: str, what: str) -> list[Any]:
        """Plain device tensors come back to the host; anything else is left for ``compare``
        to reject with its usual message."""
        outs = C.as_outputs(out, stage)
        moved = []
        for i, got in enumerate(outs):
            if type(got) is _Tensor and _device_of(got).type != self.device_type:
                raise CandidateFailure(Status.INCORRECT, stage, f"{what}, output {i} is on "
                                       f"{_device_of(got)}; return it on the {self.device_type} "
                                       "device like Model does.")  # fmt: skip
            moved.append(_to(got, "cpu") if type(got) is _Tensor else got)
        return moved

    # -- correctness -----------------------------------------------------------------------
    def check(self, cand: Any, trial: Expected, *, atol: float, rtol: float, stage: str) -> float:
        what = f"trial with input seed {trial.seed}"
        self.place(cand)
        args = self.to_device(C.clone_args(trial.inputs))
        out = C.call_candidate(cand, args, stage, what)
        self.synchronize()
        got = self.outputs_to_host(out, stage, what)
        C.inputs_unchanged(trial.inputs, self.to_host(args), stage, what)
        expected = [C.restore(s) for s in trial.outputs]
        return C.compare(got, expected, atol=atol, rtol=rtol, stage=stage, what=what)

    # -- timing ----------------------------------------------------------------------------
    def time(self, ref: Any, cand: Any, trial: Expected, *, atol: float, rtol: float,
             threads: int, budget_s: float) -> TimingReport:
        C._set_grad_enabled(False)
        self.place(ref)
        self.place(cand)
        ref_args = self.to_device(C.clone_args(trial.inputs))
        cand_args = self.to_device(C.clone_args(trial.inputs))
        expected = [C.restore(s) for s in trial.outputs]
        flush = torch.empty(max(MIN_FLUSH_BYTES, 2 * self.l2_bytes()) // 4,
                            dtype=torch.float32, device=self.device())  # fmt: skip

        def timed(call: Any) -> tuple[float, Any]:
            flush.zero_()  # evict the L2 cache before every sample
            self.synchronize()
            start, end = self.event(), self.event()
            start.record()
            out = call()
            self.synchronize()  # device-wide: side-stream work lands inside the timer
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, out

        def run_ref() -> float:
            try:
                seconds, _ = timed(lambda: ref(*ref_args))
            except Exception as exc:
                raise CandidateFailure(Status.RUNTIME_ERROR, "timing", "the reference Model "
                                       "failed during timing after the candidate was loaded: "
                                       f"{type(exc).__name__}: {exc}") from None  # fmt: skip
            return seconds

        def run_cand() -> float:
            seconds, out = timed(lambda: C.call_candidate(cand, cand_args, "timing", "timing"))
            C.compare(self.outputs_to_host(out, "timing", "timing"), expected, atol=atol,
                      rtol=rtol, stage="timing", what="timing", measure=False)  # fmt: skip
            C.inputs_unchanged(trial.inputs, self.to_host(cand_args), "timing", "timing")
            return seconds

        for _ in range(WARMUP_CALLS):
            run_ref()
            run_cand()
        report = self._sample(run_ref, run_cand, threads, budget_s)
        if max(report.ref_iqr_rel, report.cand_iqr_rel) > NOISY_IQR_REL:
            again = self._sample(run_ref, run_cand, threads, budget_s)
            if max(again.ref_iqr_rel, again.cand_iqr_rel) < max(report.ref_iqr_rel,
                                                                  report.cand_iqr_rel):
                report = again
            report.remeasured = True
            if max(report.ref_iqr_rel, report.cand_iqr_rel) > NOISY_IQR_REL:
                report.flags.append("noisy_timing")
        return report

    @staticmethod
    def _sample(run_ref: Any, run_cand: Any, threads: int, budget_s: float) -> TimingReport:
        a, b = interleave(run_ref, run_cand, budget_s=budget_s)
        sa, sb = summarize(a), summarize(b)
        return TimingReport(
            ref_ms=sa.median * 1e3, cand_ms=sb.median * 1e3,
            ref_iqr_rel=sa.iqr_rel, cand_iqr_rel=sb.iqr_rel,
            ref_ci_rel=sa.ci_rel, cand_ci_rel=sb.ci_rel,
            repeats=min(sa.n, sb.n), threads=threads,
        )  # fmt: skip
