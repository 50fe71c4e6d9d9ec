"""Hardware backends by short name: ``get_backend("cpu")``.

Only ``cpu`` is implemented in this build. ``cuda``, ``triton`` and ``npu`` are known names
that fail with a clear message until their backends land, rather than pretending.
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

_IMPLEMENTED = {"cpu": "daedalus.sandbox.backends.cpu:CpuBackend"}
_PLANNED = {
    "cuda": "an NVIDIA GPU through torch.cuda",
    "triton": "Triton kernels compiled for a GPU",
    "npu": "Ascend NPUs through torch_npu",
}

__all__ = [
    "Backend",
    "BackendUnavailable",
    "CandidateFailure",
    "Expected",
    "TimingReport",
    "backend_names",
    "check_backend_name",
    "get_backend",
]


def backend_names() -> list[str]:
    return sorted([*_IMPLEMENTED, *_PLANNED])


def check_backend_name(name: str) -> None:
    """Raise BackendUnavailable unless ``name`` is an implemented backend (no torch import)."""
    if name in _IMPLEMENTED:
        return
    if name in _PLANNED:
        raise BackendUnavailable(
            f"backend {name!r} ({_PLANNED[name]}) is not implemented in this build yet; "
            "use --backend cpu (Triton candidates run on cpu under TRITON_INTERPRET=1)"
        )
    raise BackendUnavailable(
        f"unknown backend {name!r}; choose one of: {', '.join(backend_names())}"
    )


def get_backend(name: str) -> Backend:
    """An instance of the named backend; raises BackendUnavailable with the reason."""
    check_backend_name(name)
    module_name, _, cls_name = _IMPLEMENTED[name].partition(":")
    backend: Backend = getattr(importlib.import_module(module_name), cls_name)()
    if not backend.available():
        raise BackendUnavailable(f"backend {name!r} cannot run on this machine")
    return backend
