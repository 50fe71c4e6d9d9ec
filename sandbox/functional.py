"""Functional-duplicate detection: a hash of what the candidate computes, not how it is spelled.

The candidate runs once on the first seeded input under a ``TorchDispatchMode`` that
records every aten op with its output shapes; the hash covers that trace and the exact
output bytes. Two candidates that differ only cosmetically (or by an equivalent refactor
that dispatches the same ops) collide. When the trace cannot see the computation (C++
extensions, Triton kernels, non-aten custom ops) the hash is None: a short trace of
``empty`` calls would make every custom kernel look alike.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from daedalus.sandbox.backends import compare as C
from daedalus.sandbox.static import uses_module

_TRACEABLE_NAMESPACES = frozenset({"aten", "prims"})
_OPAQUE_MODULES = ("triton", "torch.utils.cpp_extension")


class _Recorder(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Otherwise __torch_dispatch__ is wrapped in torch._disable_dynamo, whose first call
        # imports torch._dynamo: ~3 s and ~150 MB that every forked child would carry.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[str] = []
        self.opaque = False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if getattr(func, "namespace", "aten") not in _TRACEABLE_NAMESPACES:
            self.opaque = True
        leaves, _ = tree_flatten(out)
        shapes = [tuple(t.shape) for t in leaves if isinstance(t, torch.Tensor)]
        self.trace.append(f"{func}:{shapes}")
        return out


def warm_up() -> None:
    """Run one tiny trace in the fork server so children inherit whatever the first
    dispatch-mode trace initialises. Single-threaded tiny ops: fork-safe."""
    with _Recorder():
        torch.ones(4) * 2


def functional_hash(code: str, cand: Any, inputs: list[Any]) -> tuple[str | None, str]:
    """(hash or None, why None). Runs the candidate once more; failures here are not the
    candidate's fault (it already passed the quick check), so they only disable the hash."""
    if any(uses_module(code, m) for m in _OPAQUE_MODULES) or "load_inline" in code:
        return None, "custom C++/Triton kernels are invisible to the aten trace"
    recorder = _Recorder()
    args = C.clone_args(inputs)
    try:
        with recorder:
            out = cand(*args)
        outs = C.as_outputs(out, "duplicate")
    except Exception as exc:  # e.g. torch.compile refusing to trace under a dispatch mode
        return None, f"tracing failed ({type(exc).__name__}: {exc})"
    if recorder.opaque or not recorder.trace:
        return None, "the computation runs outside aten ops"
    digest = hashlib.sha256()
    digest.update("\n".join(recorder.trace).encode())
    for t in outs:
        snap = C.snapshot(t)
        digest.update(f"{snap.dtype}{snap.shape}".encode())
        digest.update(snap.data)
    return digest.hexdigest(), ""
