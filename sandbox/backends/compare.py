"""Output comparison and candidate calls, written against references captured at import.

The fork server imports this module before any candidate exists, so the functions bound
below are the real ones even if a candidate later replaces ``torch.allclose``,
``torch.Tensor.clone`` or a builtin (which the static policy forbids anyway).
"""

from __future__ import annotations

import _thread
import builtins
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import torch

from daedalus.sandbox.backends.base import CandidateFailure, Expected
from daedalus.sandbox.result import Status

_TensorBase = torch._C.TensorBase
_Tensor = torch.Tensor
_type = builtins.type
_isinstance = builtins.isinstance
_len = builtins.len
_tuple = builtins.tuple
_list = builtins.list
_float = builtins.float
_bytes = builtins.bytes
_bytearray = builtins.bytearray
_isclose = torch.isclose
_equal = torch.equal
_eq = torch.eq
_abs = torch.abs
_sub = torch.sub
_amax = torch.amax
_isfinite = torch.isfinite
_logical_not = torch.logical_not
_count_nonzero = torch.count_nonzero
_where = torch.where
_zeros_like = torch.zeros_like
_frombuffer = torch.frombuffer
_empty = torch.empty
_set_grad_enabled = torch._C._set_grad_enabled
_dispatch_depth = torch._C._len_torch_dispatch_stack
_function_depth = torch._C._len_torch_function_stack
_current_frames = sys._current_frames
_get_ident = _thread.get_ident
# Source files of the loaded candidate: a thread running code from them after forward
# returned is doing the candidate's work in the background.
candidate_files: set[str] = set()
_clone = _TensorBase.clone
_detach = _TensorBase.detach
_contiguous = _TensorBase.contiguous
_view = _TensorBase.view
_reshape = _TensorBase.reshape
_numpy = _TensorBase.numpy
_fill = _TensorBase.fill_
_size = _TensorBase.size
_item = _TensorBase.item
_numel = _TensorBase.numel
_to_double = _TensorBase.double
# Property getters of the C base class: a candidate rebinding torch.Tensor.dtype cannot
# reach them.
_dtype_of = _TensorBase.__dict__["dtype"].__get__
_device_of = _TensorBase.__dict__["device"].__get__
_layout_of = _TensorBase.__dict__["layout"].__get__
_is_float = _TensorBase.is_floating_point
_is_complex = _TensorBase.is_complex
_storage = _TensorBase.untyped_storage
_uint8 = torch.uint8
_strided = torch.strided
_HALF = frozenset({torch.float16, torch.bfloat16})
_format_exception = traceback.format_exception
clock = time.perf_counter


@dataclass(frozen=True)
class Snapshot:
    """A tensor's value as bytes: invisible to ``gc.get_objects()``, unlike a tensor."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    data: bytes


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return _view(_reshape(_contiguous(_detach(t)), (-1,)), _uint8)


def snapshot(t: torch.Tensor) -> Snapshot:
    return Snapshot(_tuple(_size(t)), _dtype_of(t), _numpy(_as_bytes(t)).tobytes())


def restore(s: Snapshot) -> torch.Tensor:
    if not s.data:
        return _empty(s.shape, dtype=s.dtype)
    flat = _frombuffer(_bytearray(s.data), dtype=_uint8)
    return _reshape(_view(flat, s.dtype), s.shape)


def clone_args(args: list[Any]) -> list[Any]:
    return [_clone(a) if _isinstance(a, _TensorBase) else a for a in args]


def tolerances(dtype: torch.dtype, atol: float, rtol: float) -> tuple[float, float]:
    """The task's tolerances, widened to what half-precision arithmetic can hold."""
    if dtype in _HALF:
        return max(atol, 1e-2), max(rtol, 1e-2)
    return atol, rtol


def as_outputs(out: Any, stage: str) -> list[Any]:
    if _type(out) is _Tensor:
        return [out]
    if _isinstance(out, _tuple | _list):
        return _list(out)
    raise CandidateFailure(Status.INCORRECT, stage, f"ModelNew.forward returned "
                           f"{_type(out).__name__}; it must return torch.Tensor outputs like Model.")


def compare(out: Any, expected: list[torch.Tensor], *, atol: float, rtol: float, stage: str,
            what: str, measure: bool = True) -> float:
    """The largest absolute error (0.0 unless ``measure``; timing skips that work) or
    CandidateFailure(incorrect) on any mismatch."""
    outs = as_outputs(out, stage)
    if _len(outs) != _len(expected):
        raise CandidateFailure(Status.INCORRECT, stage, f"{what}: ModelNew returned "
                               f"{_len(outs)} outputs, Model returns {_len(expected)}.")
    worst = 0.0
    for i, (got, ref) in enumerate(zip(outs, expected, strict=True)):
        name = f"{what}, output {i}"
        if _type(got) is not _Tensor:
            raise CandidateFailure(Status.INCORRECT, stage, f"{name} is a {_type(got).__name__}"
                                   "; outputs must be plain torch.Tensor objects (no subclasses).")
        if _device_of(got).type != "cpu" or _layout_of(got) != _strided:
            raise CandidateFailure(Status.INCORRECT, stage, f"{name} is a {_layout_of(got)} "
                                   f"tensor on {_device_of(got)}; return a dense CPU tensor.")
        shape, dtype = _tuple(_size(ref)), _dtype_of(ref)
        if _dtype_of(got) != dtype or _tuple(_size(got)) != shape:
            raise CandidateFailure(Status.INCORRECT, stage, f"{name} has shape "
                                   f"{_tuple(_size(got))} and dtype {_dtype_of(got)}; expected "
                                   f"shape {shape} and dtype {dtype}.")
        count = _numel(ref)
        if count == 0:
            continue
        if not (_is_float(ref) or _is_complex(ref)):
            if not _equal(got, ref):
                bad = _item(_count_nonzero(_logical_not(_eq(got, ref))))
                raise CandidateFailure(Status.INCORRECT, stage, f"{name}: {bad} of {count} "
                                       "values differ (exact match required).")
            continue
        if not measure and _equal(got, ref):
            continue  # bit-identical: the common case for a correct candidate while timing
        a, r = tolerances(dtype, atol, rtol)
        bad = _item(_count_nonzero(_logical_not(_isclose(got, ref, rtol=r, atol=a,
                                                         equal_nan=True))))
        if not (bad or measure):
            continue
        diff = _to_double(_abs(_sub(got, ref)))
        err = _float(_item(_amax(_where(_isfinite(diff), diff, _zeros_like(diff)))))
        worst = max(worst, err)
        if bad:
            raise CandidateFailure(Status.INCORRECT, stage, f"{name}: {bad} of {count} values "
                                   f"outside atol={a:g} rtol={r:g} (max abs error {err:.3g}; "
                                   "non-finite values must match the reference).")
    return worst


def inputs_unchanged(pristine: list[Any], used: list[Any], stage: str, what: str) -> None:
    for i, (orig, now) in enumerate(zip(pristine, used, strict=True)):
        if _isinstance(orig, _TensorBase):
            same = (_type(now) is _type(orig) and _dtype_of(now) == _dtype_of(orig)
                    and _tuple(_size(now)) == _tuple(_size(orig))
                    and _equal(_as_bytes(now), _as_bytes(orig)))
        else:
            same = now == orig
        if not same:
            raise CandidateFailure(Status.INCORRECT, stage, f"{what}: ModelNew modified its "
                                   f"input {i}; candidates must not change their inputs.")


def poison(outputs: list[Any], protected: list[torch.Tensor]) -> None:
    """Overwrite reference outputs that stay alive so a candidate digging them out (e.g.
    through ``gc``) finds garbage, unless they share memory with the model's weights."""
    guarded = {_storage(p).data_ptr() for p in protected}
    for t in outputs:
        if _storage(t).data_ptr() in guarded:
            continue
        try:
            _fill(t, float("nan") if _is_float(t) or _is_complex(t) else 0x5A)
        except RuntimeError:
            continue  # expanded views cannot be written; leaving them readable is harmless


def expect(seed: int, inputs: list[Any], outputs: list[torch.Tensor],
           protected: list[torch.Tensor]) -> Expected:
    """Record a reference run: outputs as bytes, the live outputs poisoned but kept alive
    (so a candidate's fresh allocation can never reuse their memory and look correct)."""
    snaps = [snapshot(t) for t in outputs]
    poison(outputs, protected)
    return Expected(seed=seed, inputs=inputs, outputs=snaps, keep_alive=_list(outputs))


def clip(text: str, head: int = 1500, tail: int = 2500) -> str:
    """Long text (compiler output) cut to its start and its end, where errors usually are."""
    if _len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {_len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


def failure_text(exc: BaseException) -> str:
    """``Type: first line of the message``, then the clipped traceback (which repeats the
    whole message at its end)."""
    lines = str(exc).strip().splitlines()
    first = f"{_type(exc).__name__}: {lines[0] if lines else ''}"
    return f"{clip(first, 300, 0)}\n{clip(''.join(_format_exception(exc)))}"


def call_candidate(cand: Any, args: list[Any], stage: str, what: str) -> Any:
    """``cand(*args)`` in inference mode; any failure or leftover side effect is the candidate's."""
    _set_grad_enabled(False)
    try:
        out = cand(*args)
    except CandidateFailure:
        raise
    except BaseException as exc:  # SystemExit too: the candidate may not end the harness
        raise CandidateFailure(Status.RUNTIME_ERROR, stage, f"{what}: ModelNew.forward raised "
                               f"{failure_text(exc)}") from None
    check_side_effects(stage, what)
    return out


def _runs_candidate_code(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename in candidate_files:
            return True
        frame = frame.f_back
    return False


def check_side_effects(stage: str, what: str) -> None:
    """Fail if another thread is still running candidate code (torch's own worker threads,
    e.g. inductor's, are fine) or a dispatch/function mode was left active."""
    me = _get_ident()
    busy = [t for t, frame in _current_frames().items() if t != me and _runs_candidate_code(frame)]
    if busy:
        raise CandidateFailure(Status.RUNTIME_ERROR, stage, f"{what}: {_len(busy)} background "
                               "thread(s) still run candidate code after forward returned; all "
                               "work must finish before forward returns (rule: threads).")
    if _dispatch_depth() or _function_depth():
        raise CandidateFailure(Status.RUNTIME_ERROR, stage, f"{what}: ModelNew left a torch "
                               "dispatch/function mode active (rule: tensor-subclass).")
