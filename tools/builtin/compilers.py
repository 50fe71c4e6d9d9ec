"""Handing the forward pass to a compiler: ``torch.compile`` (inductor).

The eager body moves to ``forward_eager`` and ``forward`` calls the compiled version, so the
other transformations keep working on readable eager code. ``torch.jit.script``/``trace``
were measured here and left out: on CPU TorchScript has no fuser enabled, and freezing
(which folds batch norms) is only valid in eval mode, which KernelBench models are not in.
"""

from __future__ import annotations

import ast

from daedalus.tools.builtin.astutil import find_method, parse
from daedalus.tools.builtin.base import Change, Context

EAGER = "forward_eager"


def _call_args(fn: ast.FunctionDef) -> str:
    """The argument list that passes ``fn``'s parameters straight through."""
    args = fn.args
    parts = (
        [a.arg for a in args.posonlyargs[1:] + args.args[1:]]
        if args.posonlyargs
        else [a.arg for a in args.args[1:]]
    )
    if args.vararg:
        parts.append("*" + args.vararg.arg)
    parts += [f"{a.arg}={a.arg}" for a in args.kwonlyargs]
    if args.kwarg:
        parts.append("**" + args.kwarg.arg)
    return ", ".join(parts)


def torch_compile(ctx: Context) -> list[Change]:
    """Compile the forward pass with inductor (fuses pointwise chains and reductions)."""
    if find_method(ctx.cls, EAGER) is not None:
        return []  # already compiled
    torch = ctx.torch_name()
    forward = ctx.entry
    eager = ast.parse(ast.unparse(forward)).body[0]
    assert isinstance(eager, ast.FunctionDef)
    eager.name = EAGER
    eager.decorator_list = []
    forward.body = [
        parse(f"return self._compiled_forward({_call_args(forward)})").body[0],
    ]
    forward.decorator_list = []
    index = ctx.cls.body.index(forward)
    ctx.cls.body.insert(index, eager)
    init = ctx.init_method()
    init.body.append(
        parse(f"self._compiled_forward = {torch}.compile(self.{EAGER}, dynamic=False)").body[0]
    )
    return [
        Change(
            "torch_compile",
            "forward",
            f"forward body moved to {EAGER}; forward calls {torch}.compile(self.{EAGER})",
        )
    ]
