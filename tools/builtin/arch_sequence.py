"""Architecture mutations that assume the sequence-mixer interface.

``forward(x: [B, T, D]) -> [B, T, D]`` with ``D`` the first constructor argument: feature
maps of linear attention, an output gate, a short causal convolution, an identity skip and
a normalisation before the output projection. Each returns its changes (empty: no match).
"""

from __future__ import annotations

import ast
import random

from daedalus.tools.builtin.arch_ast import (
    Target,
    _calls,
    _dotted,
    _expr,
    _last,
    _main,
    _method,
    _stmt,
    _width_name,
)
from daedalus.tools.builtin.base import Change

_FEATURE_MAPS = {
    "elu_plus_one": "F.elu({x}) + 1",
    "softplus": "F.softplus({x})",
    "relu": "F.relu({x}) + 1e-4",
    "exp": "torch.exp({x} - {x}.amax(dim=-1, keepdim=True))",
    "taylor": ("torch.cat([torch.ones_like({x}[..., :1]), {x}, "
               "({x}.unsqueeze(-1) * {x}.unsqueeze(-2)).flatten(-2) * 0.7071067811865476], dim=-1)"),
}  # fmt: skip


def feature_map(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """Replace every linear-attention feature map of one kind (elu(x) + 1, softplus, ...)
    with another kind, consistently for queries and keys."""
    found: list[tuple[ast.AST, ast.AST, str, str]] = []  # (parent, node, field, kind)
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            for node in value if isinstance(value, list) else [value]:
                kind = _feature_kind(node)
                if kind is not None:
                    found.append((parent, node, field, kind))
    if not found:
        return []
    kinds = {k for *_, k in found}
    old = rng.choice(sorted(kinds))
    new = rng.choice([k for k in _FEATURE_MAPS if k != old])
    for parent, node, field, kind in found:
        if kind != old:
            continue
        argument = _dotted(_feature_argument(node, kind))
        replacement = _expr(_FEATURE_MAPS[new].format(x=argument))
        value = getattr(parent, field)
        if isinstance(value, list):
            value[value.index(node)] = replacement
        else:
            setattr(parent, field, replacement)
    _ensure_functional(tree)
    return [Change("feature_map", "attention", f"{old} -> {new}")]


def _feature_kind(node: object) -> str | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and isinstance(node.left, ast.Call):
        name = _last(node.left.func)
        if name == "elu" and isinstance(node.right, ast.Constant) and node.right.value == 1:
            return "elu_plus_one"
        if name == "relu" and isinstance(node.right, ast.Constant):
            return "relu"
    if isinstance(node, ast.Call):
        if _last(node.func) == "softplus" and node.args:
            return "softplus"
        if _last(node.func) == "exp" and node.args and isinstance(node.args[0], ast.BinOp) and "amax" in _dotted(node.args[0]):
            return "exp"
        if _last(node.func) == "cat" and "unsqueeze(-1)" in _dotted(node) and "ones_like" in _dotted(node):
            return "taylor"
    return None


def _feature_argument(node: ast.AST, kind: str) -> ast.AST:
    if kind in ("elu_plus_one", "relu"):
        assert isinstance(node, ast.BinOp) and isinstance(node.left, ast.Call)
        return node.left.args[0]
    assert isinstance(node, ast.Call)
    if kind == "exp":
        assert isinstance(node.args[0], ast.BinOp)
        return node.args[0].left
    if kind == "taylor":
        first = node.args[0]
        assert isinstance(first, ast.List) and len(first.elts) > 1
        return first.elts[1]
    return node.args[0]


def _ensure_functional(tree: ast.Module) -> None:
    names = {a.asname or a.name for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names}
    if "F" not in names:
        tree.body.insert(0, _stmt("import torch.nn.functional as F"))
    if "torch" not in names:
        tree.body.insert(0, _stmt("import torch"))


def _returns(fn: ast.FunctionDef) -> list[ast.Return]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]


def gate(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """sequence: add (or remove) a sigmoid output gate computed from the mixer's input."""
    cls = _main(tree)
    width = _width_name(cls) if cls is not None else None
    forward = _method(cls, "forward") if cls is not None else None
    init = _method(cls, "__init__") if cls is not None else None
    if not target.sequence or cls is None or forward is None or init is None or width is None:
        return []
    x = forward.args.args[1].arg if len(forward.args.args) > 1 else None
    returns = _returns(forward)
    if x is None or len(returns) != 1 or returns[0].value is None:
        return []
    value = returns[0].value
    gated = f"torch.sigmoid(self.gate({x}))"
    if isinstance(value, ast.BinOp) and _dotted(value.right) == gated:
        returns[0].value = value.left
        init.body = [s for s in init.body if "self.gate =" not in _dotted(s)]
        return [Change("gate", "forward", "removed the sigmoid output gate")]
    if "self.gate" in _dotted(cls):
        return []
    returns[0].value = _expr(f"({_dotted(value)}) * {gated}")
    init.body.append(_stmt(f"self.gate = nn.Linear({width}, {width})"))
    return [Change("gate", "forward", f"output multiplied by sigmoid(Linear({width}, {width})({x}))")]


def short_conv(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """sequence: add (or resize) a causal depthwise convolution over time on the input."""
    cls = _main(tree)
    width = _width_name(cls) if cls is not None else None
    forward = _method(cls, "forward") if cls is not None else None
    init = _method(cls, "__init__") if cls is not None else None
    if not target.sequence or cls is None or forward is None or init is None or width is None:
        return []
    x = forward.args.args[1].arg if len(forward.args.args) > 1 else None
    if x is None:
        return []
    for stmt in init.body:
        if "self.short_conv = nn.Conv1d" in _dotted(stmt):
            call = _calls(stmt, "Conv1d")[0]
            given = next(k for k in call.keywords if k.arg == "kernel_size")
            assert isinstance(given.value, ast.Constant) and isinstance(given.value.value, int)
            old = given.value.value
            new = old * 2 if old < 4 or rng.random() < 0.5 else max(2, old // 2)
            for k in call.keywords:
                if k.arg in ("kernel_size", "padding"):
                    k.value = ast.Constant(new if k.arg == "kernel_size" else new - 1)
            return [Change("short_conv", "__init__", f"causal conv kernel {old} -> {new}")]
    size = rng.choice([2, 3, 4])
    init.body.append(_stmt(f"self.short_conv = nn.Conv1d({width}, {width}, kernel_size={size}, "
                           f"padding={size - 1}, groups={width})"))
    forward.body.insert(0, _stmt(f"{x} = {x} + self.short_conv({x}.transpose(1, 2))"
                                 f"[..., : {x}.shape[1]].transpose(1, 2)"))
    return [Change("short_conv", "forward", f"causal depthwise conv (kernel {size}) added to the input")]


def skip(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """sequence: add (or remove) an identity skip from the mixer's input to its output."""
    cls = _main(tree)
    forward = _method(cls, "forward") if cls is not None else None
    if not target.sequence or forward is None or len(forward.args.args) < 2:
        return []
    x = forward.args.args[1].arg
    returns = _returns(forward)
    if len(returns) != 1 or returns[0].value is None:
        return []
    value = returns[0].value
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add) and _dotted(value.right) == x:
        returns[0].value = value.left
        return [Change("skip", "forward", "removed the identity skip")]
    if "short_conv" in _dotted(forward) and rng.random() < 0.5:
        return []
    returns[0].value = _expr(f"{_dotted(value)} + {x}")
    return [Change("skip", "forward", f"identity skip: output + {x}")]


def _output_norm(tree: ast.Module) -> list[Change]:
    """sequence: normalise what the mixer feeds its output projection ``self.NAME(y)``."""
    cls = _main(tree)
    width = _width_name(cls) if cls is not None else None
    forward = _method(cls, "forward") if cls is not None else None
    init = _method(cls, "__init__") if cls is not None else None
    if cls is None or forward is None or init is None or width is None:
        return []
    returns = _returns(forward)
    value = returns[0].value if len(returns) == 1 else None
    if not (isinstance(value, ast.Call) and len(value.args) == 1
            and _dotted(value.func).startswith("self.")):
        return []
    projection = _dotted(value.func).removeprefix("self.")
    defined = [c for s in init.body if _dotted(s).startswith(f"self.{projection} =")
               for c in _calls(s, "Linear")]
    if not defined or not defined[0].args or _dotted(defined[0].args[0]) != width:
        return []
    value.args[0] = _expr(f"self.out_norm({_dotted(value.args[0])})")
    init.body.append(_stmt(f"self.out_norm = nn.LayerNorm({width})"))
    return [Change("normalization", "forward", f"LayerNorm({width}) before self.{projection}")]
