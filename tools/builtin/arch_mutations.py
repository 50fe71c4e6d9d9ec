"""Architecture mutations for the built-in proposer: generic rewrites of nn.Module code.

Unlike the kernel catalogue these change what the model computes; the evaluation (checks,
training, held-out objectives) judges them. Each mutation matches a generic pattern in any
``nn.Module`` of the candidate and returns the changes it made (empty: no match). None knows
a task's answer: they tune hyperparameters, swap activations, normalisations and feature
maps, grow or shrink layer stacks, resize kernels, and add or remove gates, short
convolutions and skips. Mutations marked ``sequence`` assume the sequence-mixer interface
(``forward(x: [B, T, D]) -> [B, T, D]`` with ``D`` the first constructor argument).
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable
from dataclasses import dataclass

from daedalus.tools.builtin.base import Change

_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu", "mish")
_ACT_MODULES = {"ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "Tanh": "tanh", "ELU": "elu",
                "Mish": "mish"}  # fmt: skip
_MODULE_OF = {v: k for k, v in _ACT_MODULES.items()}
_FEATURE_MAPS = {
    "elu_plus_one": "F.elu({x}) + 1",
    "softplus": "F.softplus({x})",
    "relu": "F.relu({x}) + 1e-4",
    "exp": "torch.exp({x} - {x}.amax(dim=-1, keepdim=True))",
    "taylor": ("torch.cat([torch.ones_like({x}[..., :1]), {x}, "
               "({x}.unsqueeze(-1) * {x}.unsqueeze(-2)).flatten(-2) * 0.7071067811865476], dim=-1)"),
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """What a mutation may assume about the candidate's interface."""

    sequence: bool  # forward(x: [B, T, D]) -> [B, T, D], D = first constructor argument


Mutation = Callable[[ast.Module, random.Random, Target], list[Change]]


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # unparse of a malformed node: no match
        return ""


def _last(node: ast.AST) -> str:
    return _dotted(node).rsplit(".", 1)[-1]


def _classes(tree: ast.Module) -> list[ast.ClassDef]:
    return [n for n in tree.body if isinstance(n, ast.ClassDef)]


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _main(tree: ast.Module) -> ast.ClassDef | None:
    return next((c for c in _classes(tree) if c.name == "ModelNew"), None)


def _width_name(cls: ast.ClassDef) -> str | None:
    """The first constructor argument (the model width of a sequence mixer)."""
    init = _method(cls, "__init__")
    return init.args.args[1].arg if init is not None and len(init.args.args) > 1 else None


def _calls(node: ast.AST, last: str) -> list[ast.Call]:
    return [c for c in ast.walk(node) if isinstance(c, ast.Call) and _last(c.func) == last]


def _expr(source: str) -> ast.expr:
    return ast.parse(source, mode="eval").body


def _stmt(source: str) -> ast.stmt:
    return ast.parse(source).body[0]


# ------------------------------------------------------------------ hyperparameters


def hyperparameter(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """Double or halve an integer constructor default (heads, hidden width, kernel, ...)."""
    options: list[tuple[ast.ClassDef, ast.arg, ast.Constant]] = []
    for cls in _classes(tree):
        init = _method(cls, "__init__")
        if init is None:
            continue
        args = init.args.args[1:]
        for arg, default in zip(args[len(args) - len(init.args.defaults):], init.args.defaults,
                                strict=True):  # fmt: skip
            if isinstance(default, ast.Constant) and type(default.value) is int and default.value >= 1:
                options.append((cls, arg, default))
    if not options:
        return []
    cls, arg, default = rng.choice(options)
    old = default.value
    assert isinstance(old, int)
    new = old * 2 if old == 1 or rng.random() < 0.5 else max(1, old // 2)
    default.value = new
    return [Change("hyperparameter", f"{cls.name}.__init__", f"{arg.arg}: {old} -> {new}")]


def activation(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """Swap one activation (functional or module form) for another."""
    sites: list[ast.Call] = []
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = _last(call.func)
        if name in _ACT_MODULES or (name in _ACTIVATIONS and _dotted(call.func) != name):
            sites.append(call)
    # ``F.elu(x) + 1`` is a feature map (the feature_map mutation's business), not an activation.
    mapped = {id(n.left) for n in ast.walk(tree) if isinstance(n, ast.BinOp)
              and isinstance(n.left, ast.Call) and _last(n.left.func) == "elu"}
    sites = [c for c in sites if id(c) not in mapped]
    if not sites:
        return []
    call = rng.choice(sites)
    old = _last(call.func)
    if old in _ACT_MODULES:
        new = rng.choice([m for m in _ACT_MODULES if m != old])
        prefix = _dotted(call.func)[: -len(old)]
        call.func = _expr(prefix + new)
        return [Change("activation", "module", f"nn.{old}() -> nn.{new}()")]
    new = rng.choice([a for a in _ACTIVATIONS if a != old])
    call.func = _expr("torch.tanh" if new == "tanh" else f"F.{new}")
    return [Change("activation", "function", f"{old} -> {new}")]


def normalization(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """LayerNorm <-> RMSNorm, or add / remove a normalisation after a layer in a stack."""
    norms = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and _last(c.func) in ("LayerNorm", "RMSNorm")]
    stacks = _stacks(tree)
    choices: list[str] = (["swap"] if norms else []) + (["stack"] if stacks else [])
    if target.sequence and "self.out_norm" not in _dotted(tree):
        choices.append("output")
    if not choices:
        return []
    choice = rng.choice(choices)
    if choice == "output":
        return _output_norm(tree)
    if choice == "swap":
        call = rng.choice(norms)
        old = _last(call.func)
        new = "RMSNorm" if old == "LayerNorm" else "LayerNorm"
        call.func = _expr(_dotted(call.func)[: -len(old)] + new)
        return [Change("normalization", "module", f"{old} -> {new}")]
    stack = rng.choice(stacks)
    for i, item in enumerate(stack.args):
        if isinstance(item, ast.Call) and _last(item.func) in ("LayerNorm", "BatchNorm2d", "GroupNorm"):
            del stack.args[i]
            return [Change("normalization", "Sequential", f"removed {_dotted(item)}")]
    layers = [(i, a) for i, a in enumerate(stack.args[:-1]) if isinstance(a, ast.Call)
              and _last(a.func) in ("Linear", "Conv2d") and len(a.args) >= 2
              and isinstance(stack.args[i + 1], ast.Call)
              and _last(stack.args[i + 1].func) in _ACT_MODULES]  # type: ignore[attr-defined]
    if not layers:
        return []
    i, layer = rng.choice(layers)
    width = _dotted(layer.args[1])
    norm = f"nn.LayerNorm({width})" if _last(layer.func) == "Linear" else f"nn.GroupNorm(1, {width})"
    stack.args.insert(i + 1, _expr(norm))
    return [Change("normalization", "Sequential", f"added {norm} after {_dotted(layer)}")]


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


def _stacks(tree: ast.Module) -> list[ast.Call]:
    return [c for c in ast.walk(tree) if isinstance(c, ast.Call) and _last(c.func) == "Sequential"
            and c.args and not c.keywords]


def depth(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """In an nn.Sequential stack: repeat a width-preserving layer and its activation, or
    remove one such repeat (Linear(b, b) / Conv2d(b, b, ...) with 'same' padding)."""
    stacks = _stacks(tree)
    if not stacks:
        return []
    stack = rng.choice(stacks)
    items = stack.args

    def preserving(node: ast.expr) -> bool:
        return (isinstance(node, ast.Call) and _last(node.func) in ("Linear", "Conv2d", "Conv1d")
                and len(node.args) >= 2 and _dotted(node.args[0]) == _dotted(node.args[1])
                and not any(k.arg == "stride" for k in node.keywords))

    def activation_at(i: int) -> bool:
        item = items[i] if i < len(items) else None
        return isinstance(item, ast.Call) and _last(item.func) in _ACT_MODULES

    removable = [i for i, n in enumerate(items) if preserving(n) and activation_at(i + 1)]
    if removable and rng.random() < 0.35:
        i = rng.choice(removable)
        gone = [_dotted(n) for n in items[i : i + 2]]
        del items[i : i + 2]
        return [Change("depth", "Sequential", f"removed {', '.join(gone)}")]
    def layer_at(i: int) -> bool:
        item = items[i]
        return (isinstance(item, ast.Call) and _last(item.func) in ("Linear", "Conv2d", "Conv1d")
                and len(item.args) >= 2)

    pairs = [i for i in range(len(items) - 1) if layer_at(i) and activation_at(i + 1)]
    if not pairs:
        return []
    i = rng.choice(pairs)
    layer = copy.deepcopy(items[i])
    assert isinstance(layer, ast.Call)
    layer.args[0] = copy.deepcopy(layer.args[1])
    if _last(layer.func) != "Linear":
        size = next((k.value for k in layer.keywords if k.arg == "kernel_size"), None)
        size = size if size is not None else (layer.args[2] if len(layer.args) > 2 else None)
        if not (isinstance(size, ast.Constant) and isinstance(size.value, int) and size.value % 2):
            return []
        layer.keywords = [k for k in layer.keywords if k.arg != "padding"] + [
            ast.keyword("padding", ast.Constant(size.value // 2))]
    items[i + 2 : i + 2] = [layer, copy.deepcopy(items[i + 1])]
    return [Change("depth", "Sequential", f"added {_dotted(layer)} after {_dotted(items[i])}")]


def kernel_size(tree: ast.Module, rng: random.Random, target: Target) -> list[Change]:
    """Grow or shrink a literal convolution kernel, keeping 'same' padding where it was."""
    convs = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and _last(c.func) in ("Conv1d", "Conv2d")]
    sites = [(c, k) for c in convs for k in c.keywords if k.arg == "kernel_size"
             and isinstance(k.value, ast.Constant) and isinstance(k.value.value, int)]
    if not sites:
        return []
    call, keyword = rng.choice(sites)
    assert isinstance(keyword.value, ast.Constant)
    old = keyword.value.value
    assert isinstance(old, int)
    new = old + 2 if old <= 1 or rng.random() < 0.5 else old - 2
    keyword.value = ast.Constant(new)
    # A Conv1d padded by k - 1 (then cut to the input length) is a causal convolution: it
    # must stay padded by k - 1, or it looks ahead. Otherwise keep 'same' padding k // 2.
    causal = _last(call.func) == "Conv1d"
    for k in call.keywords:
        if k.arg == "padding" and isinstance(k.value, ast.Constant):
            if causal and k.value.value == old - 1:
                k.value = ast.Constant(new - 1)
            elif not causal and k.value.value == old // 2:
                k.value = ast.Constant(new // 2)
    return [Change("kernel_size", _last(call.func), f"kernel_size {old} -> {new}")]


# ------------------------------------------------------------------ sequence mixers


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


MUTATIONS: dict[str, Mutation] = {
    "hyperparameter": hyperparameter,
    "activation": activation,
    "normalization": normalization,
    "depth": depth,
    "kernel_size": kernel_size,
    "feature_map": feature_map,
    "gate": gate,
    "short_conv": short_conv,
    "skip": skip,
}
