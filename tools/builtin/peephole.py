"""Algebraic and peephole rewrites with exact or near-exact equivalence.

Each rewrite replaces an expression by one that computes the same values (bit-exact, or
within a few ulps where noted) in fewer passes over memory or with a cheaper kernel. They
match only side-effect-free operands (names, attributes, constants), so duplicating or
dropping an operand can never change what the program does.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable

from daedalus.tools.builtin.astutil import (
    Aliases,
    OpView,
    constant_value,
    keyword,
    op_view,
    same,
    short,
)
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.dataflow import floating

Rewrite = Callable[[ast.expr, Context], ast.expr | None]


def pure(node: ast.AST) -> bool:
    """Reading it twice gives the same value and has no side effects."""
    if isinstance(node, ast.Name | ast.Constant):
        return True
    if isinstance(node, ast.Attribute):
        return pure(node.value)
    if isinstance(node, ast.Subscript):
        return (
            pure(node.value)
            and all(
                pure(n)
                for n in ast.walk(node.slice)
                if isinstance(n, ast.expr) and n is not node.slice
            )
            and not any(isinstance(n, ast.Call) for n in ast.walk(node.slice))
        )
    return False


_HELPER_OPS: dict[str, tuple[type[ast.operator], bool]] = {
    "_iadd": (ast.Add, False),
    "_isub": (ast.Sub, False),
    "_irsub": (ast.Sub, True),
    "_imul": (ast.Mult, False),
    "_idiv": (ast.Div, False),
}


def as_binop(node: ast.expr) -> ast.expr:
    """The in-place helper calls of the memory pass read as the arithmetic they compute."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _HELPER_OPS
        and len(node.args) == 2
        and not node.keywords
    ):
        op, swapped = _HELPER_OPS[node.func.id]
        a, b = node.args
        left, right = (b, a) if swapped else (a, b)
        return ast.BinOp(left=left, op=op(), right=right)
    return node


def compute_functions(ctx: Context) -> list[ast.FunctionDef]:
    """Where the model computes: every ModelNew method but ``__init__``."""
    return [n for n in ctx.cls.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"]


def run_rewrites(ctx: Context, name: str, rewrite: Rewrite) -> list[Change]:
    """Apply ``rewrite`` bottom-up to every expression of the compute functions."""
    changes: list[Change] = []

    class Pass(ast.NodeTransformer):
        def __init__(self, where: str) -> None:
            self.where = where

        def generic_visit(self, node: ast.AST) -> ast.AST:
            super().generic_visit(node)
            if isinstance(node, ast.expr):
                replacement = rewrite(as_binop(node), ctx)
                if replacement is not None and not same(replacement, node):
                    changes.append(
                        Change(name, self.where, f"{short(node)} -> {short(replacement)}")
                    )
                    return ast.copy_location(replacement, node)
            return node

    for fn in compute_functions(ctx):
        Pass(fn.name).visit(fn)
    return changes


def view_of(node: ast.AST, ctx: Context) -> OpView | None:
    return op_view(node, ctx.aliases, ctx.modules)


def unary_arg(node: ast.AST, ctx: Context, names: set[str]) -> ast.expr | None:
    """The single tensor argument of ``name(x)`` in any spelling, for names in ``names``."""
    view = view_of(node, ctx)
    if view is None or view.name not in names or len(view.args) != 1 or view.keywords:
        return None
    if view.spelling == "module" and view.name.split("!")[0] not in {"Sigmoid", "Tanh", "ReLU"}:
        return None
    return view.args[0]


def call(func: str, *args: ast.expr, **kwargs: ast.expr) -> ast.Call:
    node = ast.parse(func, mode="eval").body
    return ast.Call(
        func=node,
        args=list(args),
        keywords=[ast.keyword(arg=k, value=v) for k, v in kwargs.items()],
    )


def num(value: float) -> ast.expr:
    if value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
    return ast.Constant(value)


# -- silu --------------------------------------------------------------------------------------
def _sigmoid_of(node: ast.AST, ctx: Context) -> ast.expr | None:
    view = view_of(node, ctx)
    if view is not None and view.spelling == "module" and view.name.startswith("Sigmoid"):
        return view.args[0] if len(view.args) == 1 else None
    return unary_arg(node, ctx, {"sigmoid"})


def silu(node: ast.expr, ctx: Context) -> ast.expr | None:
    """x * sigmoid(x) -> F.silu(x): one pass and one allocation instead of two."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)):
        return None
    for a, b in ((node.left, node.right), (node.right, node.left)):
        inner = _sigmoid_of(b, ctx)
        if inner is not None and pure(a) and same(a, inner):
            return call(f"{ctx.functional_name()}.silu", a)
    return None


# -- gelu --------------------------------------------------------------------------------------
def factors(node: ast.expr, aliases: Aliases) -> tuple[float, list[ast.expr]]:
    """A product as (constant coefficient, non-constant factors); divisions by constants fold."""
    value = constant_value(node, aliases)
    if value is not None:
        return value, []
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        c1, f1 = factors(node.left, aliases)
        c2, f2 = factors(node.right, aliases)
        return c1 * c2, f1 + f2
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        divisor = constant_value(node.right, aliases)
        if divisor:
            c1, f1 = factors(node.left, aliases)
            return c1 / divisor, f1
    return 1.0, [node]


def _one_plus(node: ast.expr, aliases: Aliases) -> ast.expr | None:
    """The ``t`` of ``1 + t`` / ``t + 1``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        if constant_value(node.left, aliases) == 1.0:
            return node.right
        if constant_value(node.right, aliases) == 1.0:
            return node.left
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)


def _is_scaled(node: ast.expr, x: ast.expr, scale: float, aliases: Aliases) -> bool:
    coeff, rest = factors(node, aliases)
    return len(rest) == 1 and same(rest[0], x) and _close(coeff, scale)


def _is_cube(node: ast.expr, x: ast.expr, ctx: Context) -> bool:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return same(node.left, x) and constant_value(node.right, ctx.aliases) == 3.0
    view = view_of(node, ctx)
    if view is not None and view.name == "pow" and len(view.args) == 2:
        return same(view.args[0], x) and constant_value(view.args[1], ctx.aliases) == 3.0
    coeff, rest = factors(node, ctx.aliases)
    return coeff == 1.0 and len(rest) == 3 and all(same(r, x) for r in rest)


def gelu(node: ast.expr, ctx: Context) -> ast.expr | None:
    """0.5*x*(1+erf(x/sqrt 2)) -> F.gelu(x); the tanh form -> F.gelu(x, approximate='tanh')."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div)):
        return None
    coeff, rest = factors(node, ctx.aliases)
    if not _close(coeff, 0.5) or len(rest) != 2:
        return None
    for x, other in ((rest[0], rest[1]), (rest[1], rest[0])):
        inner = _one_plus(other, ctx.aliases)
        if inner is None or not pure(x):
            continue
        erf_arg = unary_arg(inner, ctx, {"erf"})
        if erf_arg is not None and _is_scaled(erf_arg, x, 1 / math.sqrt(2), ctx.aliases):
            return call(f"{ctx.functional_name()}.gelu", x)
        tanh_arg = unary_arg(inner, ctx, {"tanh"})
        if tanh_arg is None:
            continue
        c, parts = factors(tanh_arg, ctx.aliases)
        if not (_close(c, math.sqrt(2 / math.pi)) and len(parts) == 1):
            continue
        poly = parts[0]
        if not (isinstance(poly, ast.BinOp) and isinstance(poly.op, ast.Add)):
            continue
        for lin, cubic in ((poly.left, poly.right), (poly.right, poly.left)):
            k, cube = factors(cubic, ctx.aliases)
            if (
                same(lin, x)
                and _close(k, 0.044715)
                and len(cube) == 1
                and _is_cube(cube[0], x, ctx)
            ):
                return call(f"{ctx.functional_name()}.gelu", x, approximate=ast.Constant("tanh"))
    return None


# -- relu --------------------------------------------------------------------------------------
def relu(node: ast.expr, ctx: Context) -> ast.expr | None:
    """clamp(x, min=0), max(x, 0), where(x > 0, x, 0), x * (x > 0) -> torch.relu(x)."""
    view = view_of(node, ctx)
    x: ast.expr | None = None
    if view is not None and view.spelling in ("torch", "method", "functional"):
        args = view.args
        if view.name == "clamp" and args and not any(kw.arg == "max" for kw in view.keywords):
            low = keyword(view, "min", 1)
            if low is not None and constant_value(low, ctx.aliases) == 0.0 and len(args) <= 2:
                x = args[0]
        elif view.name == "clamp_min" and len(args) == 2:
            x = args[0] if constant_value(args[1], ctx.aliases) == 0.0 else None
        elif view.name in ("maximum", "max") and len(args) == 2 and pure(args[0]):
            zeros = view_of(args[1], ctx)
            if (
                zeros
                and zeros.name == "zeros_like"
                and len(zeros.args) == 1
                and same(zeros.args[0], args[0])
            ):
                x = args[0]
        elif view.name == "where" and len(args) == 3 and pure(args[1]):
            cond = args[0]
            if (
                isinstance(cond, ast.Compare)
                and isinstance(cond.ops[0], ast.Gt)
                and same(cond.left, args[1])
                and constant_value(cond.comparators[0], ctx.aliases) == 0.0
                and constant_value(args[2], ctx.aliases) == 0.0
            ):
                x = args[1]
    if x is None and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        for a, b in ((node.left, node.right), (node.right, node.left)):
            if (
                isinstance(b, ast.Compare)
                and isinstance(b.ops[0], ast.Gt)
                and pure(a)
                and same(b.left, a)
                and constant_value(b.comparators[0], ctx.aliases) == 0.0
                and floating(a, ctx.scope())
            ):
                x = a
    if x is None:
        return None
    return call(f"{ctx.torch_name()}.relu", x)


# -- powers and division -----------------------------------------------------------------------
def _power(node: ast.expr, ctx: Context) -> tuple[ast.expr, float] | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        exponent = constant_value(node.right, ctx.aliases)
        return (node.left, exponent) if exponent is not None else None
    view = view_of(node, ctx)
    if view is not None and view.name == "pow" and len(view.args) == 2 and not view.keywords:
        exponent = constant_value(view.args[1], ctx.aliases)
        return (view.args[0], exponent) if exponent is not None else None
    if view is not None and view.name == "square" and len(view.args) == 1:
        return view.args[0], 2.0
    return None


def powers(node: ast.expr, ctx: Context) -> ast.expr | None:
    """x**2 -> x*x, x**3 -> x*x*x, x**0.5 -> sqrt(x), x**-0.5 -> rsqrt(x), x**1 -> x."""
    found = _power(node, ctx)
    if found is None:
        return None
    x, exponent = found
    if not pure(x) or not isinstance(x, ast.Name | ast.Attribute | ast.Subscript):
        return None
    torch = ctx.torch_name()
    if exponent == 2.0:
        return ast.BinOp(left=x, op=ast.Mult(), right=x)
    if exponent == 3.0:
        return ast.BinOp(left=ast.BinOp(left=x, op=ast.Mult(), right=x), op=ast.Mult(), right=x)
    if exponent == 0.5:
        return call(f"{torch}.sqrt", x)
    if exponent == -0.5:
        return call(f"{torch}.rsqrt", x)
    return None


def const_div(node: ast.expr, ctx: Context) -> ast.expr | None:
    """x / c -> x * (1/c) for a numeric constant c (a multiply is cheaper than a divide)."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)):
        return None
    divisor = constant_value(node.right, ctx.aliases)
    if not divisor or constant_value(node.left, ctx.aliases) is not None:
        return None
    if not floating(node.left, ctx.scope()):
        return None  # integer / c is a true division; keep its exact semantics
    return ast.BinOp(left=node.left, op=ast.Mult(), right=num(1.0 / divisor))


def const_fold(node: ast.expr, ctx: Context) -> ast.expr | None:
    """(x * a) * b -> x * (a*b) and (x + a) + b -> x + (a+b) for scalars: one pass fewer."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Add)):
        return None
    inner = node.left
    if not (isinstance(inner, ast.BinOp) and type(inner.op) is type(node.op)):
        return None

    def scalar(n: ast.expr) -> bool:
        if constant_value(n, ctx.aliases) is not None:
            return True
        return (
            isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
            and n.attr in ctx.scalars
        )

    if not (scalar(inner.right) and scalar(node.right)) or scalar(inner.left):
        return None
    a = constant_value(inner.right, ctx.aliases)
    b = constant_value(node.right, ctx.aliases)
    if a is not None and b is not None:
        merged: ast.expr = num(a * b if isinstance(node.op, ast.Mult) else a + b)
    else:
        merged = ast.BinOp(left=inner.right, op=node.op, right=node.right)
    return ast.BinOp(left=inner.left, op=node.op, right=merged)
