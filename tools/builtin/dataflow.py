"""Data flow over a forward body: which values are fresh temporaries, and when names die.

The memory transformations may only write into a tensor that (1) was created inside this
forward call by an op known to return new storage, (2) is not an input, a parameter or a
buffer, (3) has no other live name or view pointing at it, and (4) is not read again. This
module answers those questions conservatively: anything it does not understand (unknown
calls, containers, control flow) makes a name non-owned, so the rewrite is skipped.

Only the top-level statements of ``forward`` are rewritten; names used inside compound
statements (if/for/with) are treated as read there, which keeps the liveness check sound.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from daedalus.tools.builtin.astutil import (
    ALIASING,
    FRESH_MODULES,
    POINTWISE,
    Aliases,
    OpView,
    loads,
    op_view,
)

# torch.X / F.X functions known to return new storage (a whitelist: unknown means "maybe alias").
FRESH_FUNCTIONS = POINTWISE | frozenset(
    {
        "sum", "mean", "prod", "std", "var", "norm", "matmul", "mm", "bmm", "addmm", "baddbmm",
        "addmv", "mv", "dot", "outer", "linear", "bilinear", "conv1d", "conv2d", "conv3d",
        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "softmax", "log_softmax",
        "softmin", "layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm",
        "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
        "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "cat", "concat",
        "stack", "clone", "cumsum", "cumprod", "logsumexp", "amax", "amin", "flip", "roll",
        "repeat_interleave", "lerp", "addcmul", "addcdiv", "masked_fill", "gather",
        "index_select", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy",
        "nll_loss", "kl_div", "binary_cross_entropy", "binary_cross_entropy_with_logits",
        "cosine_similarity", "pairwise_distance", "normalize", "pad", "interpolate", "tril",
        "triu", "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
        "softsign", "tanhshrink", "glu", "hardshrink", "softshrink", "logit", "xlogy",
        "nan_to_num", "fmod", "remainder", "true_divide", "multiply", "subtract", "divide",
        "square", "threshold", "prelu", "rrelu", "cdist", "cumulative_trapezoid", "diff",
    }
)  # fmt: skip

# Tensor methods known to return new storage (whitelisted for the same reason).
FRESH_METHODS = FRESH_FUNCTIONS - {"cat", "concat", "stack"} | frozenset({"repeat"})

# Our in-place helpers (memory.py): they return their first argument's storage or a new tensor.
HELPER_NAMES = frozenset({"_iadd", "_isub", "_irsub", "_imul", "_idiv"})

# Ops whose result is a floating tensor whenever they return a tensor.
FLOAT_OPS = frozenset(
    {
        "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "erf", "silu", "gelu", "mish",
        "softplus", "elu", "hardswish", "hardsigmoid", "selu", "celu", "reciprocal", "sin", "cos",
        "log1p", "expm1", "exp2", "logsigmoid", "softmax", "log_softmax", "layer_norm",
        "group_norm", "batch_norm", "rms_norm", "linear", "conv1d", "conv2d", "conv3d", "mean",
        "normalize", "true_divide", "div", "divide",
    }
)  # fmt: skip

FLOAT_MODULES = FRESH_MODULES - {
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d", "ReLU", "ReLU6", "Hardtanh", "LeakyReLU", "Embedding", "PixelShuffle",
    "PixelUnshuffle", "Upsample",
}  # fmt: skip


@dataclass
class Scope:
    """What the analysis knows about the forward being rewritten."""

    aliases: Aliases
    modules: dict[str, str]  # self.attr -> nn module type ("ReLU!inplace" when in place)
    params: list[str]
    float_names: set[str] = field(default_factory=set)
    owned: set[str] = field(default_factory=set)

    def view(self, node: ast.AST) -> OpView | None:
        return op_view(node, self.aliases, self.modules)


def writes_output(view: OpView) -> bool:
    """The call writes into an argument (``out=``, ``inplace=True``) instead of fresh storage."""
    for kw in view.keywords:
        if kw.arg == "out":
            return True
        if kw.arg == "inplace" and not (isinstance(kw.value, ast.Constant) and not kw.value.value):
            return True
    return view.name.endswith("_") and not view.name.startswith("_")


def fresh(node: ast.AST, scope: Scope) -> bool:
    """The expression evaluates to a tensor in new storage that nothing else refers to."""
    if isinstance(node, ast.BinOp):
        return True  # tensor arithmetic always allocates; non-tensor results are guarded later
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in HELPER_NAMES  # only ever handed private temporaries
    view = scope.view(node)
    if view is None or writes_output(view):
        return False
    if view.spelling == "module":
        return view.name in FRESH_MODULES
    if view.name in ALIASING:
        return False
    if view.spelling == "method":
        return view.name in FRESH_METHODS
    return view.name in FRESH_FUNCTIONS


def floating(node: ast.AST, scope: Scope) -> bool:
    """The expression is known to be a floating-point tensor (so ``op_`` keeps its dtype)."""
    if isinstance(node, ast.Name):
        return node.id in scope.float_names
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Div):
            return True
        return (
            floating(node.left, scope)
            or floating(node.right, scope)
            or (isinstance(node.left, ast.Constant) and isinstance(node.left.value, float))
            or (isinstance(node.right, ast.Constant) and isinstance(node.right.value, float))
        )
    if isinstance(node, ast.UnaryOp):
        return floating(node.operand, scope)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in HELPER_NAMES and floating(node.args[0], scope)
    view = scope.view(node)
    if view is None:
        return False
    if view.spelling == "module":
        return view.name.split("!")[0] in FLOAT_MODULES
    if view.name in FLOAT_OPS:
        return True
    # dtype-preserving pointwise ops keep a float argument float
    if view.name in POINTWISE and view.args:
        return floating(view.args[0], scope)
    if view.name.endswith("_") and view.args:  # in-place ops keep the receiver's dtype
        return floating(view.args[0], scope)
    return False


def safe_reads(node: ast.AST, scope: Scope) -> set[int]:
    """ids of Name nodes in positions that only read the tensor (no alias can escape)."""
    safe: set[int] = set()
    for sub in ast.walk(node):
        operands: list[ast.expr] = []
        if isinstance(sub, ast.BinOp):
            operands = [sub.left, sub.right]
        elif isinstance(sub, ast.UnaryOp):
            operands = [sub.operand]
        elif isinstance(sub, ast.Compare):
            operands = [sub.left, *sub.comparators]
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
            if sub.func.id in HELPER_NAMES:
                operands = list(sub.args[1:])  # the first argument is consumed, not read
        elif isinstance(sub, ast.Call) and fresh(sub, scope):
            view = scope.view(sub)
            operands = list(view.args) if view is not None else []
            operands += [kw.value for kw in sub.keywords]
        safe.update(id(o) for o in operands if isinstance(o, ast.Name))
    return safe


def disown_escaping(node: ast.AST, scope: Scope) -> None:
    """Names read anywhere but a safe position may now have another reference: disown them."""
    safe = safe_reads(node, scope)
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and id(sub) not in safe:
            scope.owned.discard(sub.id)


def live_after(body: list[ast.stmt], index: int, name: str) -> bool:
    """``name``'s current value may be read by a statement after ``body[index]``."""
    for later in body[index + 1 :]:
        if loads(later, name):
            return True
        if (
            isinstance(later, ast.Assign)
            and len(later.targets) == 1
            and isinstance(later.targets[0], ast.Name)
            and later.targets[0].id == name
        ):
            return False
    return False


def bound_names(node: ast.stmt) -> set[str]:
    return {
        sub.id
        for sub in ast.walk(node)
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del)
    }


def simple_target(node: ast.stmt) -> str | None:
    """The single plain name an ``x = ...`` statement binds, else None."""
    if (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ):
        return node.targets[0].id
    return None
