"""AST helpers shared by the transformations: name resolution, op views, small builders.

Everything here is pure: it reads and builds ``ast`` nodes and never executes candidate code.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field

TORCH = "torch"
NN = "torch.nn"
FUNCTIONAL = "torch.nn.functional"

# Pointwise ops by short name, reachable as torch.X, torch.nn.functional.X or tensor.X().
POINTWISE = frozenset(
    {
        "sigmoid", "relu", "tanh", "exp", "log", "abs", "sqrt", "rsqrt", "neg", "erf", "silu",
        "gelu", "mish", "softplus", "elu", "leaky_relu", "hardtanh", "hardswish", "hardsigmoid",
        "relu6", "selu", "celu", "clamp", "clamp_min", "clamp_max", "square", "reciprocal",
        "sin", "cos", "log1p", "expm1", "exp2", "sign", "floor", "ceil", "round", "trunc",
        "logsigmoid", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where",
    }
)  # fmt: skip

# Calls whose result may share storage with an argument or the receiver.
ALIASING = frozenset(
    {
        "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "transpose", "t",
        "permute", "expand", "expand_as", "narrow", "select", "split", "chunk", "unbind",
        "movedim", "moveaxis", "swapaxes", "swapdims", "as_strided", "view_as", "reshape_as",
        "detach", "contiguous", "to", "type", "type_as", "float", "double", "half", "bfloat16",
        "cpu", "cuda", "real", "imag", "diagonal", "unfold", "tensor_split", "alias",
        "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout",
        "identity", "broadcast_to", "broadcast_tensors", "atleast_1d", "atleast_2d",
        "atleast_3d", "align_as", "hsplit", "vsplit", "dsplit", "requires_grad_", "data",
        "numpy", "tolist", "item", "masked_fill_", "index_put_", "set_", "resize_",
    }
)  # fmt: skip

# Module types whose call returns a new tensor (when not built with inplace=True).
FRESH_MODULES = frozenset(
    {
        "Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
        "ConvTranspose3d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "GroupNorm",
        "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm", "LocalResponseNorm",
        "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
        "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
        "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "LPPool1d", "LPPool2d", "ReLU", "ReLU6", "GELU",
        "SiLU", "Sigmoid", "Tanh", "Hardtanh", "LeakyReLU", "Softplus", "Mish", "Hardswish",
        "Hardsigmoid", "ELU", "SELU", "CELU", "Softmax", "LogSoftmax", "Softsign", "Tanhshrink",
        "Embedding", "Upsample", "PixelShuffle", "PixelUnshuffle", "LogSigmoid", "Softmin",
    }
)  # fmt: skip


def parse(code: str) -> ast.Module:
    return ast.parse(code)


class _Unparser(ast._Unparser):  # type: ignore[name-defined]
    """``ast.unparse`` that writes multi-line strings (C++ sources) as triple-quoted blocks."""

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if (
            isinstance(value, str)
            and "\n" in value
            and '"""' not in value
            and "\\" not in value
            and not value.endswith('"')
            and not self._avoid_backslashes
            and value.isprintable() is False
            and all(ch.isprintable() or ch == "\n" for ch in value)
        ):
            self.write('"""' + value + '"""')
            return
        super().visit_Constant(node)


def unparse(tree: ast.AST) -> str:
    return _Unparser().visit(ast.fix_missing_locations(tree)) + "\n"


def same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a) == ast.dump(b)


def find_class(tree: ast.Module, name: str = "ModelNew") -> ast.ClassDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    return None


def find_method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def defined_names(tree: ast.Module) -> set[str]:
    """Every name bound anywhere in the module (to pick fresh helper names)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def short(node: ast.AST, limit: int = 70) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Aliases:
    """Local names bound to modules by the candidate's imports (``F`` -> torch.nn.functional)."""

    names: dict[str, str]
    # Local names bound exactly once to a numeric constant expression (``c = math.sqrt(2)``).
    constants: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, tree: ast.Module) -> Aliases:
        names: dict[str, str] = {}
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        names[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        return cls(names)

    def resolve(self, node: ast.AST) -> str | None:
        """``F.relu`` -> ``torch.nn.functional.relu`` when F is an imported alias."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.names:
            return ".".join([self.names[node.id], *reversed(attrs)])
        return None

    def local(self, dotted: str) -> str | None:
        """The shortest local spelling of a module path, if it is imported."""
        best: str | None = None
        for name, target in self.names.items():
            if dotted == target:
                return name
            if dotted.startswith(target + "."):
                spelled = name + dotted[len(target) :]
                if best is None or len(spelled) < len(best):
                    best = spelled
        return best


def ensure_import(tree: ast.Module, module: str, asname: str | None = None) -> str:
    """Return a local spelling of ``module``, adding ``import module [as asname]`` if needed."""
    aliases = Aliases.of(tree)
    spelled = aliases.local(module)
    taken = defined_names(tree)
    if spelled is not None and (spelled == asname or "." not in spelled or asname in taken):
        return spelled  # an exact import exists, or the short alias is not free
    if spelled is not None and asname is None:
        return spelled
    use_as = asname if asname is not None and asname not in taken else None
    node = ast.Import(names=[ast.alias(name=module, asname=use_as)])
    position = 0
    for i, item in enumerate(tree.body):
        if isinstance(item, ast.Import | ast.ImportFrom):
            position = i + 1
        elif isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant) and i == 0:
            position = 1  # keep a module docstring first
    tree.body.insert(position, node)
    return use_as if use_as is not None else module


@dataclass(frozen=True)
class OpView:
    """A call seen as ``name(args)`` whatever its spelling (torch.X, F.X, x.X())."""

    name: str
    args: list[ast.expr]
    keywords: list[ast.keyword]
    spelling: str  # "torch", "functional", "method" or "module"


def op_view(
    node: ast.AST, aliases: Aliases, modules: dict[str, str] | None = None
) -> OpView | None:
    if not isinstance(node, ast.Call):
        return None
    dotted = aliases.resolve(node.func)
    if dotted is not None:
        for prefix, spelling in ((FUNCTIONAL + ".", "functional"), (TORCH + ".", "torch")):
            if dotted.startswith(prefix) and "." not in dotted[len(prefix) :]:
                return OpView(dotted[len(prefix) :], list(node.args), node.keywords, spelling)
        return None
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = func.value
        if (
            modules is not None
            and isinstance(owner, ast.Name)
            and owner.id == "self"
            and func.attr in modules
        ):
            return OpView(modules[func.attr], list(node.args), node.keywords, "module")
        return OpView(func.attr, [owner, *node.args], node.keywords, "method")
    return None


def keyword(view: OpView, name: str, position: int | None = None) -> ast.expr | None:
    """A call argument by keyword or (for the non-method arguments) by position."""
    for kw in view.keywords:
        if kw.arg == name:
            return kw.value
    if position is not None and position < len(view.args):
        return view.args[position]
    return None


def constant_value(node: ast.AST, aliases: Aliases) -> float | None:
    """Evaluate numeric constant expressions (2.0, -1, 1/3, math.sqrt(2), math.pi) safely."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return None if isinstance(node.value, bool) else float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = constant_value(node.operand, aliases)
        if inner is None:
            return None
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        left = constant_value(node.left, aliases)
        right = constant_value(node.right, aliases)
        if left is None or right is None:
            return None
        try:
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.Pow):
                return float(left**right)
        except (ZeroDivisionError, OverflowError):
            return None
        return None
    if isinstance(node, ast.Name) and node.id in aliases.constants:
        return aliases.constants[node.id]
    dotted = aliases.resolve(node) if isinstance(node, ast.Attribute) else None
    if dotted in {"math.pi", "math.e"}:
        return math.pi if dotted == "math.pi" else math.e
    if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
        name = aliases.resolve(node.func)
        arg = constant_value(node.args[0], aliases)
        if arg is not None and name in {"math.sqrt", "math.exp", "math.log"} and arg > 0:
            fn = {"math.sqrt": math.sqrt, "math.exp": math.exp, "math.log": math.log}[name]
            return fn(arg)
    return None


_NOT_MODULES = frozenset(
    {
        "Parameter",
        "Buffer",
        "ParameterList",
        "ParameterDict",
        "UninitializedParameter",
        "UninitializedBuffer",
    }
)


def submodules(cls: ast.ClassDef, aliases: Aliases) -> dict[str, str]:
    """``self.attr = nn.Type(...)`` in ``__init__`` -> {attr: Type} for torch.nn types."""
    init = find_method(cls, "__init__")
    found: dict[str, str] = {}
    if init is None:
        return found
    for node in ast.walk(init):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == "self"
            and isinstance(node.value, ast.Call)
        ):
            continue
        dotted = aliases.resolve(node.value.func)
        if dotted is not None and dotted.startswith(NN + ".") and dotted.count(".") == 2:
            kind = dotted.rsplit(".", 1)[1]
            if kind in _NOT_MODULES:
                continue
            inplace = any(
                kw.arg == "inplace"
                and not (isinstance(kw.value, ast.Constant) and not kw.value.value)
                for kw in node.value.keywords
            )
            found[target.attr] = kind + ("!inplace" if inplace else "")
    return found


def scalar_attrs(cls: ast.ClassDef, aliases: Aliases) -> set[str]:
    """``self.attr`` assigned in ``__init__`` from something that is never a tensor.

    Only numeric literals and constant expressions count: a constructor argument could be a
    tensor, so ``self.scale = scale`` is not trusted here.
    """
    init = find_method(cls, "__init__")
    found: set[str] = set()
    if init is None:
        return found
    for node in ast.walk(init):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and constant_value(node.value, aliases) is not None
            ):
                found.add(target.attr)
    return found


def local_constants(functions: list[ast.FunctionDef], aliases: Aliases) -> dict[str, float]:
    """Names assigned once, to a numeric constant, across ``functions`` (never parameters)."""
    stores: dict[str, int] = {}
    values: dict[str, float] = {}
    for fn in functions:
        for arg in fn.args.args + fn.args.kwonlyargs:
            stores[arg.arg] = stores.get(arg.arg, 0) + 2
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                stores[node.id] = stores.get(node.id, 0) + 1
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                value = constant_value(node.value, aliases)
                if value is not None:
                    values[node.targets[0].id] = value
    return {name: v for name, v in values.items() if stores.get(name) == 1}


def forward_params(fn: ast.FunctionDef) -> list[str]:
    return [a.arg for a in fn.args.args[1:]]


def loads(node: ast.AST, name: str) -> int:
    return sum(
        1
        for sub in ast.walk(node)
        if isinstance(sub, ast.Name) and sub.id == name and isinstance(sub.ctx, ast.Load)
    )
