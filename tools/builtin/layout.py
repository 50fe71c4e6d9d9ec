"""Parameter-side rewrites: folding scales into weights, and channels-last convolutions.

- fold_scale: ``self.layer(x) * c`` for a Linear/Conv layer and a plain number ``c`` becomes
  one layer call with weight and bias pre-multiplied by ``c``. The scaled parameters are
  cached, keyed on the parameters' version counters and storage, so they are recomputed
  after any in-place update (an optimiser step, ``load_state_dict``). Equivalence is
  near-exact (one rounding moves from the output to the weights).
- channels_last: dense ``nn.Conv2d`` layers run in NHWC, oneDNN's native layout on CPU
  (measured 1.3-2x here for dense 3x3 convolutions; depthwise convolutions got slower, so
  grouped layers are skipped). Values are unchanged; only the memory layout differs.
"""

from __future__ import annotations

import ast

from daedalus.tools.builtin.astutil import constant_value, parse, short
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.peephole import compute_functions, pure, view_of

_FOLDABLE = {"Linear": "linear", "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv"}


def _fold_method(ctx: Context, attr: str, kind: str) -> str:
    torch = ctx.torch_name()
    layer_call = (
        f"{ctx.functional_name()}.linear(x, weight, bias)"
        if kind == "linear"
        else "layer._conv_forward(x, weight, bias)"
    )
    return f'''
def _{attr}_scaled(self, x, scale):
    """self.{attr}(x) * scale, with scale folded into the layer's weight and bias."""
    layer = self.{attr}
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or {torch}.is_grad_enabled():
        return layer(x) * scale
    key = (scale, layer.weight._version, layer.weight.data_ptr(),
           None if layer.bias is None else (layer.bias._version, layer.bias.data_ptr()))
    if self._{attr}_fold_key != key:
        self._{attr}_fold = (layer.weight * scale, None if layer.bias is None else layer.bias * scale)
        self._{attr}_fold_key = key
    weight, bias = self._{attr}_fold
    return {layer_call}
'''


def _scaled_layer(node: ast.expr, ctx: Context) -> tuple[str, ast.expr, ast.expr] | None:
    """(layer attribute, input, scale) of ``self.layer(x) * c`` / ``c * ...`` / ``... / c``."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Div)):
        return None
    pairs = [(node.left, node.right)]
    if isinstance(node.op, ast.Mult):
        pairs.append((node.right, node.left))
    for layer_call, scale in pairs:
        view = view_of(layer_call, ctx)
        if view is None or view.spelling != "module" or view.name not in _FOLDABLE:
            continue
        if len(view.args) != 1 or view.keywords or not pure(scale):
            continue
        if isinstance(scale, ast.Attribute) and scale.attr in ctx.modules:
            continue
        if not (constant_value(scale, ctx.aliases) is not None or isinstance(scale, ast.Attribute)):
            continue  # a local name could be a large tensor; numbers and attributes only
        assert isinstance(layer_call, ast.Call) and isinstance(layer_call.func, ast.Attribute)
        if isinstance(node.op, ast.Div):
            scale = ast.BinOp(left=ast.Constant(1.0), op=ast.Div(), right=scale)
        return layer_call.func.attr, view.args[0], scale
    return None


def _merge_statements(fn: ast.FunctionDef) -> None:
    """``y = self.layer(x)`` then ``y = y * c`` -> ``y = self.layer(x) * c`` (y read once)."""
    body = fn.body
    i = 0
    while i < len(body) - 1:
        first, second = body[i], body[i + 1]
        if (
            isinstance(first, ast.Assign)
            and isinstance(second, ast.Assign)
            and len(first.targets) == len(second.targets) == 1
            and isinstance(first.targets[0], ast.Name)
            and isinstance(second.targets[0], ast.Name)
            and first.targets[0].id == second.targets[0].id
            and isinstance(second.value, ast.BinOp)
            and isinstance(first.value, ast.Call)
        ):
            name = first.targets[0].id
            value = second.value
            left_hit = isinstance(value.left, ast.Name) and value.left.id == name
            right_hit = isinstance(value.right, ast.Name) and value.right.id == name
            reads = sum(1 for n in ast.walk(value) if isinstance(n, ast.Name) and n.id == name)
            if reads == 1 and (left_hit or right_hit):
                if left_hit:
                    value.left = first.value
                else:
                    value.right = first.value
                del body[i]
                continue
        i += 1


class _FoldRewrite(ast.NodeTransformer):
    def __init__(self, ctx: Context, where: str, folded: set[str], changes: list[Change]) -> None:
        self.ctx = ctx
        self.where = where
        self.folded = folded
        self.changes = changes

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        found = _scaled_layer(node, self.ctx)
        if found is None:
            return node
        attr, x, scale = found
        self.folded.add(attr)
        call = ast.Call(
            func=ast.Attribute(
                value=ast.Name("self", ast.Load()), attr=f"_{attr}_scaled", ctx=ast.Load()
            ),
            args=[x, scale],
            keywords=[],
        )
        self.changes.append(Change("fold_scale", self.where, f"{short(node)} -> {short(call)}"))
        return call


def fold_scale(ctx: Context) -> list[Change]:
    changes: list[Change] = []
    folded: set[str] = set()
    for fn in compute_functions(ctx):
        if fn.name.startswith("_") and fn.name.endswith("_scaled"):
            continue
        original = ast.unparse(fn)
        before = len(changes)
        _merge_statements(fn)

        _FoldRewrite(ctx, fn.name, folded, changes).visit(fn)
        if len(changes) == before:  # undo the statement merge where nothing folded
            fn.body = parse(original).body[0].body  # type: ignore[attr-defined]
    for attr in sorted(folded):
        kind = _FOLDABLE[ctx.modules[attr]]
        method = parse(_fold_method(ctx, attr, kind)).body[0]
        if not any(isinstance(n, ast.FunctionDef) and n.name == method.name for n in ctx.cls.body):  # type: ignore[attr-defined]
            ctx.cls.body.append(method)
            init = ctx.init_method()
            init.body.append(parse(f"self._{attr}_fold_key = None").body[0])
            init.body.append(parse(f"self._{attr}_fold = None").body[0])
    return changes


def channels_last(ctx: Context) -> list[Change]:
    """Run dense Conv2d layers in channels-last (NHWC) memory format."""
    init = ctx.init_method()
    dense: list[str] = []
    for node in ast.walk(init):
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.value, ast.Call)
        ):
            continue
        target = node.targets[0]
        if not (isinstance(target, ast.Attribute) and ctx.modules.get(target.attr) == "Conv2d"):
            continue
        if any(kw.arg == "groups" for kw in node.value.keywords) or len(node.value.args) > 7:
            continue  # depthwise/grouped convolutions measured slower in NHWC
        dense.append(target.attr)
    if not dense:
        return []
    torch = ctx.torch_name()
    fmt = f"{torch}.channels_last"
    changes: list[Change] = []
    converted: set[str] = set()
    for fn in compute_functions(ctx):
        for node in ast.walk(fn):
            view = view_of(node, ctx)
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and view is not None
                and view.spelling == "module"
                and node.func.attr in dense
                and len(node.args) == 1
            ):
                continue
            arg = node.args[0]
            arg_view = view_of(arg, ctx)
            if arg_view is not None and arg_view.name == "contiguous" and arg_view.keywords:
                continue  # already converted
            node.args[0] = parse(f"_x.contiguous(memory_format={fmt})").body[0].value  # type: ignore[attr-defined]
            node.args[0].func.value = arg  # type: ignore[attr-defined]
            converted.add(node.func.attr)
            changes.append(
                Change(
                    "channels_last", fn.name, f"self.{node.func.attr}({short(arg)}) input in NHWC"
                )
            )
    for attr in sorted(converted):
        init.body.append(parse(f"self.{attr}.to(memory_format={fmt})").body[0])
        changes.append(Change("channels_last", "__init__", f"self.{attr} weights stored in NHWC"))
    return changes
