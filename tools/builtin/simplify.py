"""Dropping work that does nothing, and replacing op sequences by their fused library kernel.

- identity: ``x*1``, ``x+0``, ``x/1``, zero-probability or eval-mode dropout, ``.contiguous()``
  on a freshly computed matmul result;
- clone: ``y = x.clone()`` of a temporary when neither name is ever modified afterwards;
- linear: ``x @ W.t() + b`` and friends -> ``F.linear(x, W, b)`` (one GEMM with the bias
  folded into its epilogue instead of a GEMM and a separate pass);
- softmax: ``exp(x) / exp(x).sum(d, keepdim=True)`` (also the max-subtracted form) ->
  ``torch.softmax(x, d)``, and ``x - logsumexp(x, d, keepdim=True)`` -> ``log_softmax``.
"""

from __future__ import annotations

import ast
import copy

from daedalus.tools.builtin.astutil import constant_value, keyword, loads, same, short
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.dataflow import bound_names, floating, fresh
from daedalus.tools.builtin.peephole import call, compute_functions, pure, view_of

_MATMULS = frozenset({"linear", "matmul", "mm", "bmm", "addmm", "baddbmm"})


def identity(node: ast.expr, ctx: Context) -> ast.expr | None:
    """Operations that return their input's values unchanged."""
    if isinstance(node, ast.BinOp):
        right = constant_value(node.right, ctx.aliases)
        left = constant_value(node.left, ctx.aliases)
        constant = node.right if right is not None else node.left
        keep_dtype = floating(node.left if right is not None else node.right, ctx.scope())
        is_int = isinstance(constant, ast.Constant) and isinstance(constant.value, int)
        if not (keep_dtype or is_int):
            return None  # int_tensor * 1.0 is a float tensor: not an identity
        if right == 1.0 and isinstance(node.op, ast.Mult | ast.Div | ast.Pow):
            return node.left
        if right == 0.0 and isinstance(node.op, ast.Add | ast.Sub):
            return node.left
        if left == 1.0 and isinstance(node.op, ast.Mult):
            return node.right
        if left == 0.0 and isinstance(node.op, ast.Add):
            return node.right
        return None
    view = view_of(node, ctx)
    if view is None or not view.args:
        return None
    if view.spelling == "module" and view.name in ("Identity",) and len(view.args) == 1:
        return view.args[0]
    if view.spelling == "functional" and view.name in (
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
    ):
        p = keyword(view, "p", 1)
        training = keyword(view, "training", 2)
        inplace = keyword(view, "inplace", 3)
        if inplace is not None and constant_value(inplace, ctx.aliases) != 0.0:
            return None
        p_zero = p is not None and constant_value(p, ctx.aliases) == 0.0
        eval_mode = isinstance(training, ast.Constant) and training.value is False
        if p_zero or eval_mode:
            return view.args[0]
    if view.spelling == "method" and view.name == "contiguous" and len(view.args) == 1:
        inner = view_of(view.args[0], ctx)
        if not view.keywords and inner is not None and inner.name in _MATMULS:
            return view.args[0]
        if not view.keywords and inner is not None and inner.name == "Linear":
            return view.args[0]
    return None


def drop_self_assignments(ctx: Context) -> list[Change]:
    """``y = y`` left behind once an identity op is gone."""
    changes: list[Change] = []
    for fn in compute_functions(ctx):
        kept = [
            node
            for node in fn.body
            if not (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Name)
                and node.targets[0].id == node.value.id
            )
        ]
        if len(kept) != len(fn.body):
            changes.append(Change("identity", fn.name, f"dropped {len(fn.body) - len(kept)} x = x"))
            fn.body = kept or [ast.Pass()]
    return changes


def _dropout_modules(ctx: Context) -> set[str]:
    """``self.attr = nn.Dropout(0.0)`` style modules, identities in every mode."""
    found: set[str] = set()
    init = next(
        (n for n in ctx.cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )
    if init is None:
        return found
    for node in ast.walk(init):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.value, ast.Call)
        ):
            target = node.targets[0]
            kind = ctx.modules.get(target.attr, "") if isinstance(target, ast.Attribute) else ""
            if not kind.startswith("Dropout") and kind != "AlphaDropout":
                continue
            p = (
                node.value.args[0]
                if node.value.args
                else next((kw.value for kw in node.value.keywords if kw.arg == "p"), None)
            )
            if (
                p is not None
                and constant_value(p, ctx.aliases) == 0.0
                and isinstance(target, ast.Attribute)
            ):
                found.add(target.attr)
    return found


def zero_dropout(node: ast.expr, ctx: Context) -> ast.expr | None:
    view = view_of(node, ctx)
    if (
        view is not None
        and view.spelling == "module"
        and isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _dropout_modules(ctx)
        and len(view.args) == 1
    ):
        return view.args[0]
    return None


def _mutated(fn: ast.FunctionDef, names: set[str]) -> bool:
    """Any in-place write to one of ``names`` anywhere in the function."""
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.AugAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id in names
        ):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr.endswith("_")
                and isinstance(func.value, ast.Name)
                and func.value.id in names
            ):
                return True
            for kw in node.keywords:
                in_place = isinstance(kw.value, ast.Constant) and kw.value.value is True
                writes = kw.arg == "out" or (kw.arg == "inplace" and in_place)
                if writes and any(
                    isinstance(n, ast.Name) and n.id in names for n in ast.walk(node)
                ):
                    return True
            if isinstance(func, ast.Name) and func.id.startswith("_i"):
                return True  # our in-place helpers: be conservative
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in names
        ):
            return True
    return False


def _fresh_before(body: list[ast.stmt], name: str, ctx: Context) -> bool:
    """The last top-level binding of ``name`` before here stored a freshly computed tensor."""
    scope = ctx.scope()
    for node in reversed(body):
        if name in bound_names(node):
            return (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and fresh(node.value, scope)
            )
    return False


def clone(ctx: Context) -> list[Change]:
    """``y = x.clone()`` (optionally ``.detach()``-ed) -> ``y = x`` when both are read-only."""
    changes: list[Change] = []
    for fn in compute_functions(ctx):
        for index, node in enumerate(fn.body):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
                continue
            target = node.targets[0]
            value = node.value
            detach = False
            view = view_of(value, ctx)
            if (
                view is not None
                and view.name == "detach"
                and len(view.args) == 1
                and view.spelling == "method"
            ):
                detach = True
                value = view.args[0]
                view = view_of(value, ctx)
            if view is None or view.name != "clone" or len(view.args) != 1 or view.keywords:
                continue
            source = view.args[0]
            if not (isinstance(target, ast.Name) and isinstance(source, ast.Name)):
                continue
            if not _fresh_before(fn.body[:index], source.id, ctx):
                continue  # it may still be an input or a parameter: keep the copy
            if _mutated(fn, {target.id, source.id}):
                continue
            if any(loads(later, target.id) and isinstance(later, ast.Return) for later in fn.body):
                continue  # keep outputs distinct objects from the values they were built from
            if any(
                target.id in bound_names(s)
                for s in fn.body[index + 1 :]
                if not isinstance(s, ast.Assign)
            ):
                continue
            before = short(node.value)
            new: ast.expr = ast.Name(id=source.id, ctx=ast.Load())
            if detach:
                new = ast.Call(
                    func=ast.Attribute(value=new, attr="detach", ctx=ast.Load()),
                    args=[],
                    keywords=[],
                )
            node.value = new
            changes.append(Change("clone", fn.name, f"{before} -> {short(new)}"))
    return changes


def _transposed(node: ast.expr, ctx: Context) -> ast.expr | None:
    """The W of ``W.t()``, ``W.T``, ``W.transpose(0, 1)``, ``torch.t(W)``."""
    if isinstance(node, ast.Attribute) and node.attr == "T" and pure(node.value):
        return node.value
    view = view_of(node, ctx)
    if view is None or not view.args or not pure(view.args[0]):
        return None
    if view.name == "t" and len(view.args) == 1:
        return view.args[0]
    if view.name == "transpose" and len(view.args) == 3:
        dims = {constant_value(a, ctx.aliases) for a in view.args[1:]}
        if dims == {0.0, 1.0}:
            return view.args[0]
    return None


def linear(node: ast.expr, ctx: Context) -> ast.expr | None:
    """``x @ W.t() + b`` / ``matmul(x, W.t()) + b`` / ``F.linear(x, W) + b`` -> ``F.linear(x, W, b)``."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)):
        return None
    for product, bias in ((node.left, node.right), (node.right, node.left)):
        if not (pure(bias) and isinstance(bias, ast.Attribute | ast.Name)):
            continue
        x: ast.expr | None = None
        weight: ast.expr | None = None
        if isinstance(product, ast.BinOp) and isinstance(product.op, ast.MatMult):
            x, weight = product.left, _transposed(product.right, ctx)
        else:
            view = view_of(product, ctx)
            if view is None:
                continue
            if view.name in ("matmul", "mm") and len(view.args) == 2 and not view.keywords:
                x, weight = view.args[0], _transposed(view.args[1], ctx)
            elif view.name == "linear" and view.spelling == "functional" and len(view.args) == 2:
                has_bias = any(kw.arg == "bias" for kw in view.keywords)
                x, weight = (None, None) if has_bias else (view.args[0], view.args[1])
        if x is not None and weight is not None:
            return call(f"{ctx.functional_name()}.linear", x, weight, bias)
    return None


def _dim_sum(node: ast.expr, ctx: Context) -> tuple[ast.expr, ast.expr] | None:
    """(e, dim) of ``e.sum(dim, keepdim=True)`` / ``torch.sum(e, dim=dim, keepdim=True)``."""
    view = view_of(node, ctx)
    if view is None or view.name != "sum" or len(view.args) < 1:
        return None
    dim = keyword(view, "dim", 1)
    keep = keyword(view, "keepdim", 2)
    if dim is None or not (isinstance(keep, ast.Constant) and keep.value is True):
        return None
    return view.args[0], dim


def softmax(node: ast.expr, ctx: Context) -> ast.expr | None:
    """exp(x) / exp(x).sum(d, keepdim=True) -> softmax(x, d); x - logsumexp(x, d, True) -> log_softmax."""
    torch = ctx.torch_name
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        summed = _dim_sum(node.right, ctx)
        if summed is None or not same(summed[0], node.left):
            return None
        view = view_of(node.left, ctx)
        if view is None or view.name != "exp" or len(view.args) != 1 or view.keywords:
            return None
        x = view.args[0]
        # exp(x - max(x, d, keepdim)) is the stabilised spelling of the same softmax
        if isinstance(x, ast.BinOp) and isinstance(x.op, ast.Sub) and pure(x.left):
            shift = x.right
            if isinstance(shift, ast.Subscript | ast.Attribute):  # max(...)[0] / max(...).values
                shift = shift.value
            sv = view_of(shift, ctx)
            if (
                sv is not None
                and sv.name in ("max", "amax")
                and sv.args
                and same(sv.args[0], x.left)
            ):
                shift_dim = keyword(sv, "dim", 1)
                shift_keep = keyword(sv, "keepdim", 2)
                kept = isinstance(shift_keep, ast.Constant) and shift_keep.value is True
                # only a shift that is constant along the normalised dim cancels out
                if (shift_dim is None and len(sv.args) == 1) or (
                    shift_dim is not None and kept and same(shift_dim, summed[1])
                ):
                    x = x.left
        if not pure(x) and not isinstance(x, ast.Call):
            return None
        return call(f"{torch()}.softmax", x, dim=summed[1])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub) and pure(node.left):
        view = view_of(node.right, ctx)
        if (
            view is None
            or view.name != "logsumexp"
            or not view.args
            or not same(view.args[0], node.left)
        ):
            return None
        dim = keyword(view, "dim", 1)
        keep = keyword(view, "keepdim", 2)
        if dim is None or not (isinstance(keep, ast.Constant) and keep.value is True):
            return None
        return call(f"{torch()}.log_softmax", node.left, dim=dim)
    return None


class _Substitute(ast.NodeTransformer):
    def __init__(self, name: str, value: ast.expr) -> None:
        self.name = name
        self.value = value

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return copy.deepcopy(self.value) if node.id == self.name else node


def _substitute(node: ast.expr, name: str, value: ast.expr) -> ast.expr:
    """A copy of ``node`` with every read of ``name`` replaced by ``value``."""
    result = _Substitute(name, value).visit(copy.deepcopy(node))
    assert isinstance(result, ast.expr)
    return result


def softmax_statements(ctx: Context) -> list[Change]:
    """``e = exp(...)`` then ``y = e / e.sum(d, keepdim=True)`` -> one softmax, e dropped."""
    changes: list[Change] = []
    for fn in compute_functions(ctx):
        body = fn.body
        dropped: set[int] = set()
        for i in range(len(body) - 1):
            first, second = body[i], body[i + 1]
            if not (isinstance(first, ast.Assign) and len(first.targets) == 1):
                continue
            name = first.targets[0]
            if not isinstance(name, ast.Name) or not isinstance(second, ast.Assign | ast.Return):
                continue
            value = second.value
            if value is None or loads(second, name.id) != 2:
                continue
            if any(loads(s, name.id) for s in body[i + 2 :]) and not (
                isinstance(second, ast.Assign) and bound_names(second) == {name.id}
            ):
                continue
            replaced = softmax(_substitute(value, name.id, first.value), ctx)
            if replaced is None:
                continue
            changes.append(
                Change("softmax", fn.name, f"{short(first)}; {short(second)} -> {short(replaced)}")
            )
            second.value = replaced
            dropped.add(id(first))
        fn.body = [s for s in body if id(s) not in dropped]
    return changes
