"""A C++ extension from a template: a chain of pointwise statements becomes one fused loop.

The chain ``x = x * torch.sigmoid(x); x = x * s; x = x + b`` turns into a single pass over
memory in C++ (one output allocation, no temporaries), built with
``torch.utils.cpp_extension.load_inline``. The loop body is generated from the Python
expressions; the loop harness (broadcasting, strides, threading) is a fixed template.
Transcendentals vectorise through glibc's libmvec where available.

The original Python statements stay as the fallback branch: the fused kernel only runs for
float32 CPU tensors (or plain numbers) without autograd, so every other input still gets
exactly the reference semantics.
"""

from __future__ import annotations

import ast
import hashlib

from daedalus.tools.builtin.astutil import constant_value, parse, short
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.cpp_template import render_source
from daedalus.tools.builtin.dataflow import live_after, simple_target
from daedalus.tools.builtin.peephole import view_of

_SOFTPLUS = "({0} > 20.0f ? {0} : log1pf(expf({0})))"
# name -> C++ format for one argument
_UNARY: dict[str, str] = {
    "sigmoid": "(1.0f / (1.0f + expf(-{0})))",
    "relu": "({0} < 0.0f ? 0.0f : {0})",
    "tanh": "tanhf({0})",
    "exp": "expf({0})",
    "log": "logf({0})",
    "abs": "fabsf({0})",
    "sqrt": "sqrtf({0})",
    "rsqrt": "(1.0f / sqrtf({0}))",
    "neg": "(-{0})",
    "erf": "erff({0})",
    "silu": "({0} / (1.0f + expf(-{0})))",
    "gelu": "(0.5f * {0} * (1.0f + erff({0} * 0.70710678118654752f)))",
    "gelu_tanh": "(0.5f * {0} * (1.0f + tanhf(0.79788456080286536f * ({0} + 0.044715f * {0} * {0} * {0}))))",
    "softplus": _SOFTPLUS,
    "mish": "({0} * tanhf(" + _SOFTPLUS + "))",
    "hardswish": "({0} * fminf(fmaxf({0} + 3.0f, 0.0f), 6.0f) / 6.0f)",
    "hardsigmoid": "(fminf(fmaxf({0} + 3.0f, 0.0f), 6.0f) / 6.0f)",
    "relu6": "({0} < 0.0f ? 0.0f : ({0} > 6.0f ? 6.0f : {0}))",
    "elu": "({0} > 0.0f ? {0} : expm1f({0}))",
    "reciprocal": "(1.0f / {0})",
    "square": "({0} * {0})",
    "sin": "sinf({0})",
    "cos": "cosf({0})",
    "log1p": "log1pf({0})",
    "expm1": "expm1f({0})",
}
_MODULE_UNARY = {
    "ReLU": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "SiLU": "silu",
    "GELU": "gelu",
}
_BINOPS: dict[type[ast.operator], str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class _Unsupported(Exception):
    pass


class _Translator:
    """Python pointwise expressions -> C++ float expressions over named operands."""

    def __init__(self, ctx: Context, locals_: set[str]) -> None:
        self.ctx = ctx
        self.locals = locals_  # chain variables already computed in C++
        self.operands: list[ast.expr] = []  # external values, in argument order
        self.ops = 0

    def operand(self, node: ast.expr) -> str:
        for i, known in enumerate(self.operands):
            if ast.dump(known) == ast.dump(node):
                return f"v{i}"
        self.operands.append(node)
        return f"v{len(self.operands) - 1}"

    def float_literal(self, value: float) -> str:
        return f"{value!r}f" if "e" in repr(value) or "." in repr(value) else f"{value!r}.0f"

    def visit(self, node: ast.expr) -> str:
        value = constant_value(node, self.ctx.aliases)
        if value is not None:
            return self.float_literal(value)
        if isinstance(node, ast.Name):
            return f"t_{node.id}" if node.id in self.locals else self.operand(node)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "self" and node.attr not in self.ctx.modules:
                return self.operand(node)
            raise _Unsupported(short(node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            self.ops += 1
            return f"(-{self.visit(node.operand)})"
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            self.ops += 1
            return f"({self.visit(node.left)} {_BINOPS[type(node.op)]} {self.visit(node.right)})"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            exponent = constant_value(node.right, self.ctx.aliases)
            if exponent in (2.0, 3.0):
                base = self.visit(node.left)
                self.ops += 1
                return f"({' * '.join([base] * int(exponent))})"
            raise _Unsupported(short(node))
        return self.visit_call(node)

    def visit_call(self, node: ast.expr) -> str:
        view = view_of(node, self.ctx)
        if view is None:
            raise _Unsupported(short(node))
        name = view.name
        keywords = {kw.arg: kw.value for kw in view.keywords}
        if view.spelling == "module":
            name = _MODULE_UNARY.get(view.name, "")
            if not name or name == "gelu" or len(view.args) != 1 or keywords:
                raise _Unsupported(short(node))
        if name == "gelu":
            approx = keywords.pop("approximate", None)
            if isinstance(approx, ast.Constant) and approx.value == "tanh":
                name = "gelu_tanh"
            elif approx is not None and not (
                isinstance(approx, ast.Constant) and approx.value == "none"
            ):
                raise _Unsupported(short(node))
        keywords.pop("inplace", None)
        if name == "pow" and len(view.args) == 2 and not keywords:
            exponent = constant_value(view.args[1], self.ctx.aliases)
            base = self.visit(view.args[0])
            self.ops += 1
            if exponent in (2.0, 3.0):
                return f"({' * '.join([base] * int(exponent))})"
            if exponent in (0.5, -0.5):
                return f"sqrtf({base})" if exponent > 0 else f"(1.0f / sqrtf({base}))"
            raise _Unsupported(short(node))
        if name in _UNARY and len(view.args) == 1 and not keywords:
            self.ops += 1
            return _UNARY[name].format(self.visit(view.args[0]))
        if name in (
            "clamp",
            "hardtanh",
            "leaky_relu",
            "mul",
            "add",
            "sub",
            "div",
            "maximum",
            "minimum",
        ):
            return self.visit_multi(name, view.args, keywords, node)
        raise _Unsupported(short(node))

    def visit_multi(
        self, name: str, args: list[ast.expr], keywords: dict[str | None, ast.expr], node: ast.expr
    ) -> str:
        self.ops += 1
        if (
            name in ("mul", "add", "sub", "div", "maximum", "minimum")
            and len(args) == 2
            and not keywords
        ):
            a, b = self.visit(args[0]), self.visit(args[1])
            if name in ("maximum", "minimum"):  # NaN propagates as in torch
                cmp = ">" if name == "maximum" else "<"
                return f"(({a} != {a} || {a} {cmp} {b}) ? {a} : {b})"
            return f"({a} {dict(mul='*', add='+', sub='-', div='/')[name]} {b})"
        if name == "leaky_relu" and len(args) <= 2:
            slope = (
                args[1] if len(args) == 2 else keywords.get("negative_slope", ast.Constant(0.01))
            )
            value = constant_value(slope, self.ctx.aliases)
            if value is None or (set(keywords) - {"negative_slope"}):
                raise _Unsupported(short(node))
            x = self.visit(args[0])
            return f"({x} < 0.0f ? {x} * {self.float_literal(value)} : {x})"
        if name in ("clamp", "hardtanh"):
            default = (-1.0, 1.0) if name == "hardtanh" else (None, None)
            keys = ("min_val", "max_val") if name == "hardtanh" else ("min", "max")
            bounds = []
            for pos, key, fallback in ((1, keys[0], default[0]), (2, keys[1], default[1])):
                given = args[pos] if len(args) > pos else keywords.get(key)
                bound = constant_value(given, self.ctx.aliases) if given is not None else fallback
                if given is not None and bound is None:
                    raise _Unsupported(short(node))
                bounds.append(bound)
            x = self.visit(args[0])
            low, high = bounds
            expr = x
            if low is not None:
                expr = f"({expr} < {self.float_literal(low)} ? {self.float_literal(low)} : {expr})"
            if high is not None:
                expr = (
                    f"({expr} > {self.float_literal(high)} ? {self.float_literal(high)} : {expr})"
                )
            return expr
        raise _Unsupported(short(node))


def _chains(ctx: Context) -> list[tuple[int, int, list[str], _Translator]]:
    """Maximal runs of fusable statements: (first, last, C++ lines, translator)."""
    body = ctx.forward.body
    found: list[tuple[int, int, list[str], _Translator]] = []
    i = 0
    while i < len(body):
        translator = _Translator(ctx, set())
        lines: list[str] = []
        j = i
        while j < len(body):
            node = body[j]
            target = simple_target(node)
            value = node.value if isinstance(node, ast.Assign | ast.Return) else None
            if value is None or (isinstance(node, ast.Assign) and target is None):
                break
            trial = _Translator(ctx, set(translator.locals))
            trial.operands = list(translator.operands)
            trial.ops = translator.ops
            try:
                cxx = trial.visit(value)
            except _Unsupported:
                break
            translator = trial
            if isinstance(node, ast.Return):
                lines.append(f"return {cxx};")
                j += 1
                break
            assert target is not None
            declare = "" if target in translator.locals else "float "
            lines.append(f"{declare}t_{target} = {cxx};")
            translator.locals.add(target)
            j += 1
        last = j - 1
        if last >= i and translator.ops >= 2 and _dead_inside(body, i, last, translator.locals):
            if not lines[-1].startswith("return"):
                output = simple_target(body[last])
                lines.append(f"return t_{output};")
            found.append((i, last, lines, translator))
            i = j
        else:
            i += 1
    return found


def _dead_inside(body: list[ast.stmt], first: int, last: int, names: set[str]) -> bool:
    """Only the chain's final value may be read after it (the kernel has one output)."""
    output = simple_target(body[last])
    return all(name == output or not live_after(body, last, name) for name in names)


def cpp_fuse(ctx: Context) -> list[Change]:
    """Fuse the first pointwise chain of forward into a generated C++ loop."""
    chains = _chains(ctx)
    if not chains:
        return []
    first, last, lines, translator = chains[0]
    body = ctx.forward.body
    operands = [ast.unparse(o) for o in translator.operands]
    source = render_source(len(operands), lines)
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    kernel = f"_fused_{digest}"
    torch = ctx.torch_name()
    load_inline = next(
        (
            local
            for local, target in ctx.aliases.names.items()
            if target == "torch.utils.cpp_extension.load_inline"
        ),
        None,
    )
    if load_inline is None and "torch.utils.cpp_extension" in ctx.aliases.names.values():
        module = next(k for k, v in ctx.aliases.names.items() if v == "torch.utils.cpp_extension")
        load_inline = f"{module}.load_inline"
    if load_inline is None:
        ctx.tree.body.insert(_after_imports(ctx.tree), parse(_IMPORT).body[0])
        ctx.refresh()
        load_inline = "load_inline"
    if "_FUSED_EXTENSIONS" not in {
        t.id
        for n in ctx.tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }:
        ctx.tree.body.insert(_after_imports(ctx.tree), parse("_FUSED_EXTENSIONS = {}").body[0])
    for node in reversed(parse(_kernel_source(kernel, digest, source, load_inline, torch)).body):
        ctx.add_function(ast.unparse(node))  # each goes first, so add them in reverse
    ctx.add_function(_ok_source(torch))
    args = ", ".join(operands)
    output = simple_target(body[last])
    fused_line = f"return {kernel}({args})" if output is None else f"{output} = {kernel}({args})"
    guard = parse(f"if _fused_ok({args}):\n    {fused_line}\nelse:\n    pass").body[0]
    assert isinstance(guard, ast.If)
    guard.orelse = body[first : last + 1]
    body[first : last + 1] = [guard]
    # build in the constructor, which the evaluator times out generously, not in the first call
    ctx.init_method().body.append(parse(f"_load{kernel}()").body[0])
    return [
        Change(
            "cpp_fuse",
            f"forward, statements {first + 1}-{last + 1}",
            f"{translator.ops} pointwise ops over ({args}) fused into one C++ loop ({kernel})",
        )
    ]


_IMPORT = "from torch.utils.cpp_extension import load_inline"


def _after_imports(tree: ast.Module) -> int:
    position = 0
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Import | ast.ImportFrom):
            position = i + 1
    return position


def _ok_source(torch: str) -> str:
    return f'''
def _fused_ok(*values):
    """The fused kernel applies: float32 CPU tensors or plain numbers, and no autograd."""
    tensors = [v for v in values if isinstance(v, {torch}.Tensor)]
    if not tensors or any(isinstance(v, bool) or not isinstance(v, ({torch}.Tensor, int, float)) for v in values):
        return False
    if {torch}.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    return all(t.dtype == {torch}.float32 and t.device.type == "cpu" for t in tensors)
'''


def _kernel_source(kernel: str, digest: str, source: str, load_inline: str, torch: str) -> str:
    return f'''
def _load{kernel}():
    """Build (once per process; the build is cached by source) the fused C++ loop."""
    if "{digest}" not in _FUSED_EXTENSIONS:
        _FUSED_EXTENSIONS["{digest}"] = {load_inline}(
            name="daedalus_fused_{digest}",
            cpp_sources=[{source!r}],
            functions=["run"],
            extra_cflags=["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno"],
        )
    return _FUSED_EXTENSIONS["{digest}"]


def {kernel}(*values):
    """The fused pointwise chain in one pass (see _load{kernel})."""
    tensors = [v if isinstance(v, {torch}.Tensor) else {torch}.tensor(float(v)) for v in values]
    return _load{kernel}().run(tensors)
'''
