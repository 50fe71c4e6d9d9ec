"""The transformation catalogue: every rewrite the built-in proposer can apply, by name."""

from __future__ import annotations

from daedalus.tools.builtin import buffers, cpp, cpp_rows, layout, memory, peephole, simplify
from daedalus.tools.builtin.base import Change, Context, Transform, TransformFn
from daedalus.tools.builtin.compilers import torch_compile
from daedalus.tools.builtin.peephole import Rewrite, run_rewrites


def _pass(name: str, *rewrites: Rewrite) -> TransformFn:
    def apply(ctx: Context) -> list[Change]:
        changes: list[Change] = []
        for rewrite in rewrites:
            changes += run_rewrites(ctx, name, rewrite)
        return changes

    return apply


def _identity(ctx: Context) -> list[Change]:
    changes = _pass("identity", simplify.identity, simplify.zero_dropout)(ctx)
    return changes + simplify.drop_self_assignments(ctx) if changes else changes


def _softmax(ctx: Context) -> list[Change]:
    return simplify.softmax_statements(ctx) + run_rewrites(ctx, "softmax", simplify.softmax)


TRANSFORMS: tuple[Transform, ...] = (
    Transform("inplace", "memory", "elementwise ops written into dead temporaries (no new allocation)",
              memory.inplace_temporaries, stage=2),
    Transform("out_buffers", "memory", "intermediates read only by reductions/matmuls written "
              "into reusable out= buffers", buffers.out_buffers, stage=2),
    Transform("silu", "algebraic", "x * sigmoid(x) -> F.silu(x)", _pass("silu", peephole.silu)),
    Transform("gelu", "algebraic", "erf/tanh GELU formulas -> F.gelu", _pass("gelu", peephole.gelu)),
    Transform("relu", "algebraic", "clamp(min=0), max(x, 0), where(x>0, x, 0) -> relu",
              _pass("relu", peephole.relu)),
    Transform("powers", "algebraic", "x**2 -> x*x, x**0.5 -> sqrt, x**-0.5 -> rsqrt",
              _pass("powers", peephole.powers)),
    Transform("const_div", "algebraic", "x / c -> x * (1/c) for constants",
              _pass("const_div", peephole.const_div)),
    Transform("const_fold", "algebraic", "(x * a) * b -> x * (a*b) for scalars",
              _pass("const_fold", peephole.const_fold)),
    Transform("identity", "cleanup", "drop x*1, x+0, zero/eval dropout, redundant contiguous",
              _identity),
    Transform("clone", "cleanup", "drop clones of read-only temporaries", simplify.clone),
    Transform("linear", "library", "matmul + bias -> F.linear(x, W, b)",
              _pass("linear", simplify.linear)),
    Transform("softmax", "library", "exp / sum(exp) -> softmax, x - logsumexp -> log_softmax",
              _softmax),
    Transform("fold_scale", "parameters", "layer(x) * c -> layer with c folded into its weights",
              layout.fold_scale),
    Transform("channels_last", "layout", "dense Conv2d in NHWC memory format",
              layout.channels_last),
    Transform("torch_compile", "compiler", "forward compiled with torch.compile (inductor)",
              torch_compile, cost=4.0, conflicts=frozenset({"cpp_fuse", "cpp_rowfuse"}), stage=3),
    Transform("cpp_rowfuse", "cpp", "chain with last-dimension reductions (mean/sum, LayerNorm, "
              "softmax) fused into one generated C++ function per row", cpp_rows.cpp_rowfuse,
              cost=6.0, conflicts=frozenset({"torch_compile"}), stage=1),
    Transform("cpp_fuse", "cpp", "pointwise chain fused into a generated C++ loop (load_inline)",
              cpp.cpp_fuse, cost=6.0, conflicts=frozenset({"torch_compile"}), stage=1),
)  # fmt: skip

BY_NAME: dict[str, Transform] = {t.name: t for t in TRANSFORMS}


def get(name: str) -> Transform:
    try:
        return BY_NAME[name]
    except KeyError:
        known = ", ".join(BY_NAME)
        raise KeyError(f"unknown transformation {name!r}; known: {known}") from None
