"""Memory transformations: in-place updates of temporaries and ``out=`` scratch buffers.

On a CPU, a large fresh tensor costs page faults on first touch, often more than the
arithmetic itself, so writing into storage that is already dead is the cheapest fusion there
is. Correctness rests on ``dataflow``: only provably private, dead temporaries are reused,
and every binary update goes through a guard that falls back to the out-of-place op when the
shapes or dtypes would make the in-place version differ (broadcasting into a larger shape,
integer tensors meeting floats).
"""

from __future__ import annotations

import ast

from daedalus.tools.builtin.astutil import loads, short
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.dataflow import (
    FLOAT_OPS,
    HELPER_NAMES,
    Scope,
    bound_names,
    disown_escaping,
    floating,
    fresh,
    live_after,
    simple_target,
    writes_output,
)

FITS = '''
def _fits(out, other):
    """True when writing `out <op> other` into out's storage gives the out-of-place result."""
    if not isinstance(out, torch.Tensor):
        return False
    if isinstance(other, torch.Tensor):
        if other.dim() > out.dim() or torch.broadcast_shapes(out.shape, other.shape) != out.shape:
            return False
    elif not isinstance(other, (bool, int, float)):
        return False
    return torch.result_type(out, other) == out.dtype
'''

HELPERS: dict[str, tuple[str, str]] = {
    # name: (what it computes, the in-place body)
    "_iadd": ("a + b", "a.add_(b)"),
    "_isub": ("a - b", "a.sub_(b)"),
    "_irsub": ("b - a", "a.neg_().add_(b)"),  # b - a == (-a) + b exactly in IEEE arithmetic
    "_imul": ("a * b", "a.mul_(b)"),
    "_idiv": ("a / b", "a.div_(b)"),
}
assert frozenset(HELPERS) == HELPER_NAMES

_BINOP_HELPER: dict[type[ast.operator], str] = {
    ast.Add: "_iadd",
    ast.Sub: "_isub",
    ast.Mult: "_imul",
    ast.Div: "_idiv",
}
_COMMUTED_HELPER: dict[type[ast.operator], str] = {
    ast.Add: "_iadd",
    ast.Mult: "_imul",
    ast.Sub: "_irsub",
}

# Unary ops with a method in-place twin (x.sigmoid() -> x.sigmoid_()).
_METHOD_INPLACE = frozenset(
    {
        "sigmoid", "tanh", "relu", "exp", "log", "abs", "sqrt", "rsqrt", "neg", "erf",
        "reciprocal", "sin", "cos", "log1p", "expm1", "exp2", "floor", "ceil", "round", "trunc",
        "sign", "square", "clamp", "clamp_min", "clamp_max",
    }
)  # fmt: skip
# torch.nn.functional ops that take inplace=True.
_FUNCTIONAL_INPLACE = frozenset(
    {"silu", "mish", "hardswish", "hardsigmoid", "elu", "celu", "selu", "leaky_relu", "hardtanh",
     "relu6", "relu", "threshold"}
)  # fmt: skip
_MODULE_INPLACE = {"ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}


def helper_source(name: str) -> str:
    computes, body = HELPERS[name]
    return (
        f"def {name}(a, b):\n"
        f'    """{computes}, written into a (a temporary nothing else refers to) when it fits."""\n'
        f"    return {body} if _fits(a, b) else {computes}\n"
    )


def _tensorish(node: ast.AST, ctx: Context) -> bool:
    if isinstance(node, ast.Constant):
        return False
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    ):
        return node.attr not in ctx.scalars
    if isinstance(node, ast.BinOp):
        return _tensorish(node.left, ctx) or _tensorish(node.right, ctx)
    if isinstance(node, ast.UnaryOp):
        return _tensorish(node.operand, ctx)
    return isinstance(node, ast.Name | ast.Call | ast.Subscript)


class _Rewriter:
    """Rewrites one statement's expression, consuming dead owned names and fresh temporaries."""

    def __init__(self, ctx: Context, scope: Scope, consumable: set[str]) -> None:
        self.ctx = ctx
        self.scope = scope
        self.consumable = consumable
        self.consumed: set[str] = set()
        self.helpers: set[str] = set()
        self.made: set[int] = set()  # ids of nodes whose value is storage only they refer to

    def private(self, node: ast.expr) -> bool:
        """The rewritten expression's value is storage no other live name refers to."""
        if id(node) in self.made:
            return True
        if isinstance(node, ast.BinOp):
            return _tensorish(node, self.ctx)
        return fresh(node, self.scope)

    def takes(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            if node.id in self.consumable and node.id not in self.consumed:
                self.consumed.add(node.id)
                return True
            return False
        return self.private(node)

    def visit(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.BinOp):
            return self.visit_binop(node)
        if isinstance(node, ast.Call):
            return self.visit_call(node)
        return node

    def visit_binop(self, node: ast.BinOp) -> ast.expr:
        left = self.visit(node.left)
        right = self.visit(node.right)
        op = type(node.op)
        if op in _BINOP_HELPER and _tensorish(node, self.ctx):
            if self.takes(left):
                return self.helper(_BINOP_HELPER[op], left, right)
            if op in _COMMUTED_HELPER and self.takes(right):
                return self.helper(_COMMUTED_HELPER[op], right, left)
        return ast.BinOp(left=left, op=node.op, right=right)

    def helper(self, name: str, a: ast.expr, b: ast.expr) -> ast.expr:
        self.helpers.add(name)
        call = ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=[a, b], keywords=[])
        self.made.add(id(call))
        return call

    def visit_call(self, node: ast.Call) -> ast.expr:
        view = self.scope.view(node)
        node.args = [self.visit(a) for a in node.args]
        for kw in node.keywords:
            kw.value = self.visit(kw.value)
        if isinstance(node.func, ast.Attribute) and view is not None and view.spelling == "method":
            node.func.value = self.visit(node.func.value)
            view = self.scope.view(node)
        if view is None or not view.args:
            return node
        target = view.args[0]
        if writes_output(view) and not any(kw.arg == "out" for kw in node.keywords):
            if self.takes(target):  # already in place on a private temporary: still private
                self.made.add(id(node))
            return node
        name = view.name
        if view.spelling == "module":
            name = _MODULE_INPLACE.get(view.name, "")
            if not name or len(node.args) != 1 or node.keywords:
                return node
        needs_float = name in FLOAT_OPS
        if needs_float and not floating(target, self.scope):
            return node
        if view.spelling == "functional" and name in _FUNCTIONAL_INPLACE:
            if any(kw.arg == "inplace" for kw in node.keywords) or not self.takes(target):
                return node
            node.keywords.append(ast.keyword(arg="inplace", value=ast.Constant(True)))
            self.made.add(id(node))
            return node
        if name == "gelu" and view.spelling == "functional" and len(node.args) == 1:
            # F.gelu has no inplace flag; ATen's gelu_ is the same kernel writing in place
            extra = [kw for kw in node.keywords if kw.arg != "approximate"]
            if extra or not self.takes(target):
                return node
            torch = self.ctx.torch_name()
            call = ast.Call(
                func=ast.parse(f"{torch}.ops.aten.gelu_", mode="eval").body,
                args=[target],
                keywords=list(node.keywords),
            )
            self.made.add(id(call))
            return call
        if name in _METHOD_INPLACE and view.spelling in ("torch", "method", "module"):
            if not self.takes(target):
                return node
            rest = view.args[1:]
            method = ast.Attribute(value=target, attr=name + "_", ctx=ast.Load())
            call = ast.Call(func=method, args=rest, keywords=list(view.keywords))
            self.made.add(id(call))
            return call
        return node


def _consumable(body: list[ast.stmt], index: int, scope: Scope) -> set[str]:
    """Owned names read once here and never again (rebinding here also ends the old value)."""
    node = body[index]
    target = simple_target(node)
    return {
        name
        for name in scope.owned
        if loads(node, name) == 1 and (name == target or not live_after(body, index, name))
    }


def inplace_temporaries(ctx: Context) -> list[Change]:
    """Compute elementwise ops into dead temporaries instead of allocating new tensors."""
    scope = ctx.scope()
    body = ctx.forward.body
    changes: list[Change] = []
    helpers: set[str] = set()
    for index, node in enumerate(body):
        target = simple_target(node)
        value = node.value if isinstance(node, ast.Assign | ast.Return) else None
        if (
            value is None
            or not isinstance(node, ast.Assign | ast.Return)
            or (isinstance(node, ast.Assign) and target is None)
        ):
            disown_escaping(node, scope)
            for name in bound_names(node):
                scope.owned.discard(name)
                scope.float_names.discard(name)
            continue
        before = short(value)
        rewriter = _Rewriter(ctx, scope, _consumable(body, index, scope))
        new_value = rewriter.visit(value)
        if isinstance(new_value, ast.Name) and rewriter.takes(new_value):
            rewriter.made.add(id(new_value))  # `y = x` with x dead: y inherits the storage
        node.value = new_value
        after = short(new_value)
        if after != before:
            changes.append(
                Change("inplace", f"forward, statement {index + 1}", f"{before} -> {after}")
            )
            helpers |= rewriter.helpers
        scope.owned -= rewriter.consumed
        disown_escaping(new_value, scope)
        if target is not None:
            is_float = floating(new_value, scope)
            scope.owned.discard(target)
            scope.float_names.discard(target)
            if rewriter.private(new_value):
                scope.owned.add(target)
            if is_float:
                scope.float_names.add(target)
    if changes:
        torch = ctx.torch_name()
        ctx.add_function(FITS.replace("torch.", f"{torch}."))
        for name in sorted(helpers):
            ctx.add_function(helper_source(name))
        _order_helpers(ctx)
    return changes


def _order_helpers(ctx: Context) -> None:
    """Keep ``_fits`` before the helpers that call it (purely for readability)."""
    body = ctx.tree.body
    fits = next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == "_fits"), None)
    if fits is None:
        return
    body.remove(fits)
    first = next(i for i, n in enumerate(body) if isinstance(n, ast.FunctionDef | ast.ClassDef))
    body.insert(first, fits)
