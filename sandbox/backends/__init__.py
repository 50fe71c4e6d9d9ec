"""Hardware backends by short name: ``get_backend("cpu")``.

``auto`` picks the best available (a GPU, else an Ascend NPU, else the CPU). A backend whose
hardware or toolkit is missing fails with a clear message naming what is missing; the
checks here read files and run vendor tools, never import torch (see ``detect``).
"""

from __future__ import annotations

import importlib

from daedalus.sandbox.backends.base import (
    Backend,
    BackendUnavailable,
    CandidateFailure,
    Expected,
    TimingReport,
)

_IMPLEMENTED = {
    "cpu": "daedalus.sandbox.backends.cpu:CpuBackend",
    "cuda": "daedalus.sandbox.backends.cuda:CudaBackend",
    "triton": "daedalus.sandbox.backends.triton:TritonBackend",
    "npu": "daedalus.sandbox.backends.npu:NpuBackend",
}

__all__ = [
    "Backend",
    "BackendUnavailable",
    "CandidateFailure",
    "Expected",
    "TimingReport",
    "backend_names",
    "check_backend_name",
    "fingerprints",
    "get_backend",
]


def backend_names() -> list[str]:
    return sorted(_IMPLEMENTED)


def _problem(name: str) -> str | None:
    from daedalus.sandbox.backends import detect

    if name == "cuda":
        return detect.cuda_problem()
    if name == "triton":
        return detect.triton_problem(need_gpu=False)
    if name == "npu":
        return detect.npu_problem()
    return None


def check_backend_name(name: str) -> str:
    """The backend to use for ``name`` (``auto`` resolved); raises BackendUnavailable when it
    cannot run on this machine, naming what is missing (no torch import)."""
    if name == "auto":
        from daedalus.sandbox.backends.detect import best_backend

        return best_backend()
    if name in _IMPLEMENTED:
        problem = _problem(name)
        if problem is not None:
            raise BackendUnavailable(f"backend {name!r} cannot run here: {problem}")
        return name
    raise BackendUnavailable(
        f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}"
    )


def get_backend(name: str) -> Backend:
    """An instance of the named backend; raises BackendUnavailable with the reason."""
    name = check_backend_name(name)
    module_name, _, cls_name = _IMPLEMENTED[name].partition(":")
    backend: Backend = getattr(importlib.import_module(module_name), cls_name)()
    if not backend.available():
        raise BackendUnavailable(f"backend {name!r} cannot run on this machine")
    return backend


def fingerprints() -> dict[str, dict[str, str]]:
    """Fingerprints of every backend that can run here, computed without initialising a
    device runtime (safe in the fork server before it forks)."""
    from daedalus.sandbox.backends import detect

    cpu = detect.cpu_fingerprint()
    found = {"cpu": cpu}
    if detect.cuda_problem() is None:
        gpu = {**cpu, **detect.cuda_fingerprint()}
        found["cuda"] = {**gpu, "backend": "cuda", "device": gpu["gpu"]}
        found["triton"] = {**gpu, "backend": "triton", "device": gpu["gpu"]}
    elif detect.triton_problem(need_gpu=False) is None:
        found["triton"] = {**cpu, "backend": "triton", "triton": detect.triton_version(),
                           "triton_mode": "interpreter (TRITON_INTERPRET=1): timing unavailable"}
    if detect.npu_problem() is None:
        npu = {**cpu, **detect.ascend_fingerprint()}
        found["npu"] = {**npu, "backend": "npu", "device": npu["npu"]}
    return found
