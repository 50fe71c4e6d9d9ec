"""The evaluation cascade, run inside the sandbox child.

static policy -> reference (the task's own checks) -> compile -> quick check -> duplicate
-> full check -> timing (-> re-verify when the speedup is above 10x). The first failing
stage decides the status. The reference runs on every trial's inputs *before* the
candidate is imported, so a reference failure is always the task's fault (TaskError),
never the candidate's, and the candidate never sees a live reference output.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import torch

from daedalus.sandbox.backends import CandidateFailure, Expected, get_backend
from daedalus.sandbox.backends import compare as C
from daedalus.sandbox.functional import functional_hash
from daedalus.sandbox.result import Limits, Status
from daedalus.sandbox.static import check_candidate, uses_module
from daedalus.tasks.runtime import TaskModule

_manual_seed = torch.manual_seed
_set_num_threads = torch.set_num_threads
_random_seed = random.seed
_numpy_seed = numpy.random.seed
REVERIFY_ABOVE = 10.0

Emit = Callable[[dict[str, Any]], None]


def _seed(seed: int) -> None:
    _manual_seed(seed)
    _random_seed(seed)
    _numpy_seed(seed % 2**32)


def _state_tensors(tm: TaskModule, ref: torch.nn.Module) -> list[torch.Tensor]:
    """Tensors the reference keeps between calls (weights, buffers, plain tensor attributes,
    task-level constants): its outputs may alias them, and those must never be poisoned."""
    found = [*ref.parameters(), *ref.buffers()]
    for module in ref.modules():
        found += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
    found += [v for v in vars(tm.module).values() if isinstance(v, torch.Tensor)]
    return found


def _reference_trial(tm: TaskModule, ref: torch.nn.Module, seed: int) -> Expected:
    _seed(seed)
    inputs = tm.get_inputs()
    outputs = tm.run_reference(ref, C.clone_args(inputs))
    return C.expect(seed, inputs, outputs, _state_tensors(tm, ref))


def _build_candidate(module: Any, init: list[Any], seed: int) -> torch.nn.Module:
    _seed(seed)
    try:
        cand = module.ModelNew(*C.clone_args(init))
    except BaseException as exc:
        raise CandidateFailure(Status.COMPILE_ERROR, "compile", "ModelNew(*get_init_inputs()) "
                               f"raised {C.failure_text(exc)}") from None
    C.check_side_effects("compile", "constructing ModelNew")
    if not isinstance(cand, torch.nn.Module):
        raise CandidateFailure(Status.COMPILE_ERROR, "compile", "ModelNew(...) did not build "
                               "an nn.Module; subclass torch.nn.Module.")
    return cand.eval()


def run_cascade(req: dict[str, Any], tm: TaskModule, workdir: Path, emit: Emit) -> dict[str, Any]:
    """Evaluate ``req["code"]`` against the task; the returned dict is the harness's result.

    Raises ``TaskError`` when the task itself is broken; every candidate failure is data.
    """
    limits = Limits(**req.get("limits", {}))
    code: str = req["code"]
    task = tm.task
    result: dict[str, Any] = {"metrics": {}, "flags": [], "artifacts": {}, "correct": False,
                              "speedup": None, "functional_hash": None, "error": None}

    clock = C.clock
    marks: list[tuple[str, float]] = []

    def stage(name: str) -> None:
        marks.append((name, clock()))
        result["stage"] = name
        emit({"event": "stage", "stage": name})

    try:
        stage("static")
        if limits.policy:
            violations = check_candidate(code)
            if violations:
                status = Status.COMPILE_ERROR if violations[0].rule == "syntax" else Status.REJECTED
                raise CandidateFailure(status, "static", "; ".join(str(v) for v in violations))
        backend = get_backend(req.get("backend", "cpu"))
        stage("reference")
        _set_num_threads(limits.threads)  # the server stays at one; this child may use more
        C._set_grad_enabled(False)
        _seed(task.seed)
        init = tm.get_init_inputs()
        _seed(task.seed)
        ref = tm.make_model(C.clone_args(init)).eval()
        seeds = [task.seed + 1000 + i for i in range(1 + max(1, limits.trials))]
        trials = [_reference_trial(tm, ref, s) for s in [*seeds, task.seed + 2000]]
        timing_trial = trials.pop()

        stage("compile")
        module = backend.compile(code, workdir)
        cand = _build_candidate(module, init, task.seed)

        stage("check")
        errors = [backend.check(cand, trials[0], atol=task.atol, rtol=task.rtol, stage="check")]
        fhash, why = functional_hash(code, cand, trials[0].inputs)
        result["functional_hash"] = fhash
        if fhash is None:
            result["artifacts"]["functional_hash_unavailable"] = why
        elif fhash in set(req.get("known_functional", ())):
            result["flags"].append("functional_duplicate")
            raise CandidateFailure(Status.REJECTED, "duplicate", "computes exactly what an "
                                   "earlier candidate computes (same aten op trace and "
                                   "outputs); propose a different approach.")
        stage("full_check")
        for trial in trials[1:]:
            errors.append(backend.check(cand, trial, atol=task.atol, rtol=task.rtol,
                                        stage="full_check"))
        result["metrics"].update({"max_abs_error": max(errors), "trials": float(len(errors))})
        result["correct"] = True

        if uses_module(code, "triton") and backend.device() == "cpu":
            # The interpreter runs kernels in numpy on the CPU; its speed says nothing.
            result["flags"].append("timing_not_meaningful_on_cpu")
            result["metrics"]["timing_meaningful"] = 0.0
            result["status"] = Status.OK.value
            return result
        stage("timing")
        report = backend.time(ref, cand, timing_trial, atol=task.atol, rtol=task.rtol,
                              threads=limits.threads, budget_s=limits.timing_budget_s)
        result["metrics"].update(report.metrics())
        result["metrics"]["timing_meaningful"] = 1.0
        result["artifacts"]["timing_clock"] = report.clock
        result["flags"].extend(report.flags)
        if report.speedup > REVERIFY_ABOVE:
            stage("reverify")
            fresh = _reference_trial(tm, ref, task.seed + 3000)
            backend.check(cand, fresh, atol=task.atol, rtol=task.rtol, stage="reverify")
            result["flags"].append("speedup_above_10x_reverified")
        result["speedup"] = report.speedup
        result["status"] = Status.OK.value
    except CandidateFailure as failure:
        result.update(status=failure.status.value, stage=failure.stage, error=failure.message,
                      correct=False, speedup=None)
    marks.append(("end", clock()))
    for (name, start), (_, end) in itertools.pairwise(marks):
        result["metrics"][f"seconds_{name}"] = end - start
    return result
