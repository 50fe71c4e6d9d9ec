"""Architecture mutations for the built-in proposer: generic rewrites of nn.Module code.

Unlike the kernel catalogue these change what the model computes; the evaluation (checks,
training, held-out objectives) judges them. Each mutation matches a generic pattern in any
``nn.Module`` of the candidate and returns the changes it made (empty: no match). None knows
a task's answer: they tune hyperparameters, swap activations, normalisations and feature
maps, grow or shrink layer stacks, resize kernels, and add or remove gates, short
convolutions and skips. The sequence ones (``arch_sequence.py``) assume the sequence-mixer interface
(``forward(x: [B, T, D]) -> [B, T, D]`` with ``D`` the first constructor argument).
"""

from __future__ import annotations

import ast
import copy
import random

from daedalus.tools.builtin.arch_ast import (
    Mutation,
    Target,
    _classes,
    _dotted,
    _expr,
    _last,
    _method,
)
from daedalus.tools.builtin.arch_sequence import _output_norm, feature_map, gate, short_conv, skip
from daedalus.tools.builtin.base import Change

_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu", "mish")
_ACT_MODULES = {"ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "Tanh": "tanh", "ELU": "elu",
                "Mish": "mish"}  # fmt: skip
_MODULE_OF = {v: k for k, v in _ACT_MODULES.items()}


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
    new = old + 2 if old <= 2 or rng.random() < 0.5 else old - 2  # never below 1
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
