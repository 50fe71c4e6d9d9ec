"""``out=`` scratch buffers for intermediates that never leave ``forward``.

The in-place pass reuses temporaries that a later elementwise op consumes; what it cannot
reach are temporaries read by something that is not elementwise: the square inside
``(h * h).mean(-1)``, the scaled operand of a matmul, a value read several times. Those get
a buffer kept on the module and written with ``out=``, so after the first call they cost no
allocation (on CPU, fresh pages cost a fault each).

A buffered value must never reach the output: only sub-expressions consumed by an op that
returns new storage (a reduction, a matmul, another elementwise op) are buffered, and a
name only when every later read is of that kind and it is not returned. Under autograd the
helper returns None, and ``out=None`` is the ordinary allocating call.
"""

from __future__ import annotations

import ast

from daedalus.tools.builtin.astutil import loads, short
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.dataflow import (
    HELPER_NAMES,
    POINTWISE,
    Scope,
    floating,
    fresh,
    safe_reads,
    simple_target,
)

# torch.X functions with an ``out=`` argument, by short name.
OUT_CAPABLE = frozenset(
    {
        "sigmoid", "tanh", "exp", "log", "abs", "sqrt", "rsqrt", "neg", "erf", "reciprocal",
        "sin", "cos", "log1p", "expm1", "exp2", "add", "sub", "mul", "div", "pow", "clamp",
        "maximum", "minimum", "square", "matmul", "mm", "bmm",
    }
)  # fmt: skip
_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
}

SCRATCH = '''
def _scratch(self, key, *inputs):
    """A reusable buffer for an intermediate that never leaves forward (None under autograd)."""
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if not tensors or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return None
    dtype = torch.result_type(*inputs[:2]) if len(inputs) > 1 else tensors[0].dtype
    buffer = self._scratch_buffers.get(key)
    if buffer is None or buffer.dtype != dtype or buffer.device != tensors[0].device:
        buffer = torch.empty(0, dtype=dtype, device=tensors[0].device)
        self._scratch_buffers[key] = buffer
    return buffer
'''


class _Buffering:
    def __init__(self, ctx: Context, scope: Scope) -> None:
        self.ctx = ctx
        self.scope = scope
        self.torch = ctx.torch_name()
        # keys continue after any buffers an earlier application created
        self.count = sum(
            1
            for n in ast.walk(ctx.cls)
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "_scratch"
        )

    def key(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def out_call(self, node: ast.expr) -> ast.expr | None:
        """``node`` as ``torch.X(..., out=self._scratch(key, ...))``, if it can take ``out=``."""
        args: list[ast.expr]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            name, args = _BINOPS[type(node.op)], [node.left, node.right]
            if not (floating(node.left, self.scope) or floating(node.right, self.scope)):
                return None
        else:
            view = self.scope.view(node)
            if view is None or view.spelling not in ("torch", "method") or view.keywords:
                return None
            if view.name not in OUT_CAPABLE or not view.args:
                return None
            name, args = view.name, list(view.args)
            if not floating(args[0], self.scope):
                return None
        tensors = [a for a in args if not isinstance(a, ast.Constant)]
        if not tensors or not all(
            isinstance(a, ast.Name | ast.Attribute | ast.Constant) for a in args
        ):
            return None  # operands must be plain values: they are evaluated twice
        scratch = ast.Call(
            func=ast.Attribute(value=ast.Name("self", ast.Load()), attr="_scratch", ctx=ast.Load()),
            args=[ast.Constant(self.key()), *tensors[:2]],
            keywords=[],
        )
        return ast.Call(
            func=ast.Attribute(value=ast.Name(self.torch, ast.Load()), attr=name, ctx=ast.Load()),
            args=args,
            keywords=[ast.keyword(arg="out", value=scratch)],
        )

    def visit(self, node: ast.AST) -> list[tuple[ast.expr, ast.expr]]:
        """Sub-expressions read only by ops that allocate their own result, with replacements."""
        found: list[tuple[ast.expr, ast.expr]] = []
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Call) or not fresh(sub, self.scope):
                continue
            if isinstance(sub.func, ast.Name) and sub.func.id in HELPER_NAMES:
                continue  # their first argument is consumed in place, not read
            view = self.scope.view(sub)
            if view is None:
                continue
            if view.spelling != "module" and view.name in POINTWISE:
                continue  # elementwise consumers are the in-place pass's business
            for operand in view.args:
                if isinstance(operand, ast.BinOp | ast.Call) and fresh(operand, self.scope):
                    replacement = self.out_call(operand)
                    if replacement is not None:
                        found.append((operand, replacement))
        return found


def _replace(root: ast.AST, old: ast.expr, new: ast.expr) -> None:
    for parent in ast.walk(root):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new


def _only_read_safely(body: list[ast.stmt], index: int, name: str, scope: Scope) -> bool:
    """Every later read of ``name`` (until rebound) is an operand of a fresh-result op."""
    for later in body[index + 1 :]:
        if isinstance(later, ast.Return) and loads(later, name):
            return False
        safe = safe_reads(later, scope)
        for sub in ast.walk(later):
            if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Load):
                if id(sub) not in safe:
                    return False
                if isinstance(later, ast.Assign) and any(
                    isinstance(c, ast.Call)
                    and isinstance(c.func, ast.Name)
                    and c.func.id in HELPER_NAMES
                    and c.args
                    and c.args[0] is sub
                    for c in ast.walk(later)
                ):
                    return False  # consumed in place: the buffer would become a result
        if not isinstance(later, ast.Assign | ast.Expr | ast.Return):
            return False  # control flow: don't reason about it
        if simple_target(later) == name:
            return True
    return True


def out_buffers(ctx: Context) -> list[Change]:
    """Write intermediates that never leave forward into reusable ``out=`` buffers."""
    scope = ctx.scope()
    buffering = _Buffering(ctx, scope)
    body = ctx.forward.body
    changes: list[Change] = []
    for index, node in enumerate(body):
        if not isinstance(node, ast.Assign | ast.Return | ast.Expr) or node.value is None:
            continue
        for old, new in buffering.visit(node):
            changes.append(
                Change(
                    "out_buffers",
                    f"forward, statement {index + 1}",
                    f"{short(old)} -> {short(new)}",
                )
            )
            _replace(node, old, new)
        target = simple_target(node)
        if (
            target is not None
            and isinstance(node, ast.Assign)
            and target not in scope.params
            and _only_read_safely(body, index, target, scope)
        ):
            replacement = buffering.out_call(node.value)
            if replacement is not None:
                changes.append(
                    Change(
                        "out_buffers",
                        f"forward, statement {index + 1}",
                        f"{target} = {short(node.value)} -> {short(replacement)}",
                    )
                )
                node.value = replacement
    has_helper = any(isinstance(n, ast.FunctionDef) and n.name == "_scratch" for n in ctx.cls.body)
    if changes and not has_helper:
        method = ast.parse(SCRATCH.replace("torch.", f"{buffering.torch}.")).body[0]
        ctx.cls.body.append(method)
        ctx.init_method().body.append(ast.parse("self._scratch_buffers = {}").body[0])
    return changes
