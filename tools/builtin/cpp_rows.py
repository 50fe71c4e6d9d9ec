"""A C++ extension from a template: a chain with reductions over the last dimension, per row.

Normalisations and their neighbours (``h = x + r; v = (h*h).mean(-1, keepdim=True);
y = w * h * rsqrt(v + eps)``, ``gelu(layer_norm(x))``, ``softmax(gelu(x), -1)``,
``sigmoid(x).sum(-1)``) make several passes over memory in PyTorch. Here each row is
processed by one generated function: one loop per reduction (mean, sum, max), recomputing
the cheap elementwise values it needs, then one loop writing the output. Recognised
reductions: ``sum``/``mean`` over the last dimension, ``nn.LayerNorm`` over the last
dimension, and ``softmax`` over the last dimension. Pointwise ops are those of ``cpp``.

As in ``cpp``, the original statements stay as the fallback branch; the kernel also
declines (returns None) when the inputs' rank is not the one a positive ``dim=`` assumed.
"""

from __future__ import annotations

import ast
import hashlib
import re

from daedalus.tools.builtin.astutil import constant_value, parse, short
from daedalus.tools.builtin.base import Change, Context
from daedalus.tools.builtin.cpp import (
    _IMPORT,
    _after_imports,
    _kernel_source,
    _ok_source,
    _Translator,
    _Unsupported,
)
from daedalus.tools.builtin.cpp_template import render_row_source
from daedalus.tools.builtin.dataflow import live_after, simple_target
from daedalus.tools.builtin.peephole import view_of

_EXPENSIVE = re.compile(r"\b(expf|erff|tanhf|logf|log1pf|expm1f|sinf|cosf|sqrtf)\(| / ")


class _RowTranslator(_Translator):
    """Pointwise translation plus last-dimension reductions that become per-row scalars."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx, set())
        self.names: dict[str, str] = {}  # chain variable -> its current C++ value (SSA)
        self.defs: list[str] = []  # element definitions, in order
        self.loops: list[tuple[str, str, str, int]] = []  # (row scalar, kind, value, #defs)
        self.guards: list[str] = []  # Python conditions the fused path needs
        self.rank = 0  # > 0 when a positive dim= fixed the inputs' rank
        self.reductions = 0
        self.last_keepdim = True

    def fork(self) -> _RowTranslator:
        """A copy to try one more statement on (kept only if the statement translates)."""
        other = _RowTranslator(self.ctx)
        other.operands, other.ops = list(self.operands), self.ops
        other.names, other.defs, other.loops = dict(self.names), list(self.defs), list(self.loops)
        other.guards, other.rank, other.reductions = list(self.guards), self.rank, self.reductions
        other.last_keepdim = self.last_keepdim
        return other

    def operand(self, node: ast.expr) -> str:
        name = super().operand(node)  # "v<k>": the k-th input, read at this row's column c
        return f"p{name[1:]}[c]"

    def visit(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name) and node.id in self.names:
            return self.names[node.id]
        return super().visit(node)

    def last_dim(self, dim: ast.expr | None) -> bool:
        value = constant_value(dim, self.ctx.aliases) if dim is not None else None
        if value is None or value != int(value):
            return False
        if value == -1:
            return True
        if value < 0 or (self.rank and self.rank != int(value) + 1):
            return False
        self.rank = int(value) + 1
        return True

    def reduce(self, kind: str, element: str) -> str:
        """A loop over the row accumulating ``element``; returns the row scalar's name."""
        var = f"r{self.reductions}"
        self.reductions += 1
        self.loops.append((var, kind, element, len(self.defs)))
        return var

    def render(self, final: str, row_output: bool) -> tuple[list[str], int]:
        """The per-row body: one loop per reduction, then the output; and the stash size.

        Elementwise values are recomputed in each loop that needs them when cheap; values
        with a transcendental or a division that several loops need are computed once and
        kept in a row-long stash line instead.
        """
        loops = [*self.loops, ("", "output", final, len(self.defs))]
        uses = [sum(1 for *_, k in loops if k > i) for i in range(len(self.defs))]
        slots = {
            i: n
            for n, i in enumerate(
                i for i, d in enumerate(self.defs) if uses[i] > 1 and _EXPENSIVE.search(d)
            )
        }
        lines = [f"float* __restrict s{n} = stash.get() + {n} * n;" for n in slots.values()]
        computed: set[int] = set()
        for var, kind, element, k in loops:
            body: list[str] = []
            for i, definition in enumerate(self.defs[:k]):
                name = definition.split()[2]
                if i in slots and i in computed:
                    body.append(f"const float {name} = s{slots[i]}[c];")
                    continue
                body.append(definition)
                if i in slots:
                    body.append(f"s{slots[i]}[c] = {name};")
            computed |= {i for i in slots if i < k}
            inner = "\n".join(f"    {b}" for b in body)
            if kind == "output" and row_output:
                lines.append(f"result[r] = {element};")
            elif kind == "output":
                lines.append(
                    "{\n  float* __restrict dst = result + r * n;\n#pragma omp simd\n"
                    f"  for (int64_t c = 0; c < n; ++c) {{\n{inner}\n    dst[c] = {element};\n  }}\n}}"
                )
            else:
                init = "-std::numeric_limits<float>::infinity()" if kind == "max" else "0.0f"
                op = "max" if kind == "max" else "+"
                update = "acc = acc > v ? acc : v;" if kind == "max" else "acc += v;"
                finish = "acc * inv_n" if kind == "mean" else "acc"
                lines.append(
                    f"float {var};\n{{\n  float acc = {init};\n#pragma omp simd reduction({op}:acc)\n"
                    f"  for (int64_t c = 0; c < n; ++c) {{\n{inner}\n    const float v = {element};\n"
                    f"    {update}\n  }}\n  {var} = {finish};\n}}"
                )
        return lines, len(slots)

    def visit_call(self, node: ast.expr) -> str:
        view = view_of(node, self.ctx)
        if view is None:
            raise _Unsupported(short(node))
        keywords = {kw.arg: kw.value for kw in view.keywords}
        if view.name in ("sum", "mean") and view.spelling in ("torch", "method") and view.args:
            dim = keywords.pop("dim", view.args[1] if len(view.args) > 1 else None)
            keep = keywords.pop("keepdim", view.args[2] if len(view.args) > 2 else None)
            if keywords or len(view.args) > 3 or not self.last_dim(dim):
                raise _Unsupported(short(node))
            self.last_keepdim = isinstance(keep, ast.Constant) and keep.value is True
            self.ops += 1
            return self.reduce(view.name, self.element(view.args[0]))
        if view.name in ("softmax", "log_softmax") and view.spelling in (
            "torch",
            "functional",
            "method",
        ):
            dim = keywords.pop("dim", view.args[1] if len(view.args) > 1 else None)
            if keywords or not view.args or not self.last_dim(dim):
                raise _Unsupported(short(node))
            x = self.element(view.args[0])
            top = self.reduce("max", x)
            total = self.reduce("sum", f"expf({x} - {top})")
            self.ops += 3
            if view.name == "log_softmax":
                return f"({x} - {top} - logf({total}))"
            return f"(expf({x} - {top}) / {total})"
        if view.spelling == "module" and view.name == "LayerNorm" and len(view.args) == 1:
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            layer = f"self.{node.func.attr}"
            self.guards.append(f"len({layer}.normalized_shape) == 1")
            x = self.element(view.args[0])
            mean = self.reduce("mean", x)
            var = self.reduce("mean", f"(({x} - {mean}) * ({x} - {mean}))")
            eps = self.operand(parse(f"{layer}.eps").body[0].value)  # type: ignore[attr-defined]
            weight = self.operand(parse(f"{layer}.weight").body[0].value)  # type: ignore[attr-defined]
            bias = self.operand(parse(f"{layer}.bias").body[0].value)  # type: ignore[attr-defined]
            self.ops += 4
            return f"(({x} - {mean}) * (1.0f / sqrtf({var} + {eps})) * {weight} + {bias})"
        return super().visit_call(node)

    def element(self, node: ast.expr) -> str:
        """An element value, named so reduction loops and the output loop can recompute it."""
        cxx = self.visit(node)
        name = f"e{len(self.defs)}"
        self.defs.append(f"const float {name} = {cxx};")
        return name

    def assign(self, target: str, value: ast.expr) -> None:
        cxx = self.visit(value)
        if cxx.startswith("r") and cxx[1:].isdigit():
            self.names[target] = cxx  # a row scalar: computed once per row
            return
        name = f"t_{target}_{len(self.defs)}"
        self.defs.append(f"const float {name} = {cxx};")
        self.names[target] = name


def _row_chain(ctx: Context) -> tuple[int, int, _RowTranslator, str] | None:
    """The first run of statements with at least one reduction that fuses row-wise."""
    body = ctx.forward.body
    for first in range(len(body)):
        translator = _RowTranslator(ctx)
        last = -1
        final = ""
        for j in range(first, len(body)):
            node = body[j]
            target = simple_target(node)
            if not isinstance(node, ast.Assign | ast.Return) or node.value is None:
                break
            if isinstance(node, ast.Assign) and target is None:
                break
            trial = translator.fork()
            try:
                if target is not None:
                    trial.assign(target, node.value)
                    value = trial.names[target]
                else:
                    value = trial.visit(node.value)
            except _Unsupported:
                break
            translator, last, final = trial, j, value
            if isinstance(node, ast.Return):
                break
        if last < 0 or translator.reductions == 0 or translator.ops < 2:
            continue
        output = simple_target(body[last])
        names = set(translator.names)
        if all(n == output or not live_after(body, last, n) for n in names):
            return first, last, translator, final
    return None


def cpp_rowfuse(ctx: Context) -> list[Change]:
    """Fuse a chain with last-dimension reductions into one per-row C++ function."""
    found = _row_chain(ctx)
    if found is None:
        return []
    first, last, translator, final = found
    row_output = final.startswith("r") and final[1:].isdigit()
    lines, stashes = translator.render(final, row_output)
    operands = [ast.unparse(o) for o in translator.operands]
    source = render_row_source(
        len(operands),
        "\n".join(lines).splitlines(),
        rank=translator.rank,
        row_output=row_output,
        keepdim=translator.last_keepdim,
        stashes=stashes,
    )
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    kernel = f"_rowfused_{digest}"
    torch = ctx.torch_name()
    if "torch.utils.cpp_extension.load_inline" not in ctx.aliases.names.values():
        ctx.tree.body.insert(_after_imports(ctx.tree), parse(_IMPORT).body[0])
        ctx.refresh()
    load_inline = next(
        k for k, v in ctx.aliases.names.items() if v.endswith("cpp_extension.load_inline")
    )
    if "_FUSED_EXTENSIONS" not in ast.unparse(ctx.tree):
        ctx.tree.body.insert(_after_imports(ctx.tree), parse("_FUSED_EXTENSIONS = {}").body[0])
    for node in reversed(parse(_kernel_source(kernel, digest, source, load_inline, torch)).body):
        ctx.add_function(ast.unparse(node))
    ctx.add_function(_ok_source(torch))
    body = ctx.forward.body
    args = ", ".join(operands)
    checks = " and ".join([f"_fused_ok({args})", *translator.guards])
    output = simple_target(body[last])
    fused = f"_fused_rows = {kernel}({args}) if {checks} else None"
    use = "return _fused_rows" if output is None else f"{output} = _fused_rows"
    guard = parse(f"{fused}\nif _fused_rows is not None:\n    {use}\nelse:\n    pass").body
    assert isinstance(guard[1], ast.If)
    guard[1].orelse = body[first : last + 1]
    body[first : last + 1] = guard
    ctx.init_method().body.append(parse(f"_load{kernel}()").body[0])
    return [
        Change(
            "cpp_rowfuse",
            f"forward, statements {first + 1}-{last + 1}",
            f"{translator.ops} ops with {translator.reductions} row reductions over ({args}) "
            f"fused into one C++ function per row ({kernel})",
        )
    ]
