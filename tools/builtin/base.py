"""The transformation framework: a context over one candidate, changes, and the registry type."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field

from daedalus.tools.builtin.astutil import (
    Aliases,
    ensure_import,
    find_class,
    find_method,
    forward_params,
    local_constants,
    parse,
    scalar_attrs,
    submodules,
)
from daedalus.tools.builtin.dataflow import Scope, floating

_FLOAT_FACTORIES = frozenset(
    {"randn", "rand", "randn_like", "rand_like", "empty", "ones", "zeros", "linspace", "normal"}
)


@dataclass(frozen=True)
class Change:
    """One applied rewrite, recorded in the proposal's description and meta."""

    transform: str
    where: str
    detail: str

    def render(self) -> str:
        return f"{self.transform} ({self.where}): {self.detail}"


class Context:
    """A candidate being transformed: its syntax tree and what is known about it."""

    def __init__(self, tree: ast.Module, float_inputs: tuple[bool, ...] = ()):
        self.tree = tree
        cls = find_class(tree)
        if cls is None:
            raise ValueError("the candidate defines no `class ModelNew`")
        entry = find_method(cls, "forward")
        if entry is None:
            raise ValueError("`ModelNew` has no `forward` method")
        self.cls = cls
        self.refresh()
        self.entry = entry  # the real forward
        # where the computation lives: forward, or its eager body once a compiler wraps it
        self.forward = find_method(cls, "forward_eager") or entry
        self.scalars = scalar_attrs(cls, self.aliases)
        params = forward_params(self.forward)
        self.float_params = {
            p for p, is_float in zip(params, float_inputs, strict=False) if is_float
        }

    def refresh(self) -> None:
        """Re-read imports after a transformation added one."""
        self.aliases = Aliases.of(self.tree)
        self.modules = submodules(self.cls, self.aliases)
        functions = [
            n for n in self.cls.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"
        ]
        self.aliases.constants = local_constants(functions, self.aliases)

    def scope(self) -> Scope:
        return Scope(
            aliases=self.aliases,
            modules=self.modules,
            params=forward_params(self.forward),
            float_names=self.float_names(),
        )

    def float_names(self) -> set[str]:
        """Names that hold a float tensor wherever they are bound (flow-insensitive, so safe).

        A local counts only if every assignment to it is known to produce a float, given the
        float inputs; iterates because floats flow through assignments.
        """
        bindings: dict[str, list[ast.expr | None]] = {p: [] for p in self.float_params}
        for fn in self.cls.body:
            if not isinstance(fn, ast.FunctionDef) or fn.name == "__init__":
                continue
            if fn is self.entry and fn is not self.forward:
                continue  # a compiled forward only passes its arguments to the eager body
            for arg in fn.args.args[1:]:
                if fn is not self.forward or arg.arg not in self.float_params:
                    bindings.setdefault(arg.arg, []).append(None)
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Assign)
                    and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                ):
                    bindings.setdefault(node.targets[0].id, []).append(node.value)
                elif (
                    isinstance(node, ast.Name)
                    and isinstance(node.ctx, ast.Store | ast.Del)
                    and not any(
                        isinstance(a, ast.Assign) and node in a.targets for a in ast.walk(fn)
                    )
                ):
                    bindings.setdefault(node.id, []).append(None)
        # Greatest fixpoint: assume every bound name is float, then drop names with a binding
        # that is not (a self-update like `h = h * s` stays float if h's other bindings are).
        known = {name for name, values in bindings.items() if all(v is not None for v in values)}
        probe = Scope(self.aliases, self.modules, [], known)
        while True:
            dropped = {
                name
                for name in known
                if not all(v is not None and floating(v, probe) for v in bindings[name])
            }
            if not dropped:
                return known
            known -= dropped

    def torch_name(self) -> str:
        return self._module_name("torch", None)

    def functional_name(self) -> str:
        return self._module_name("torch.nn.functional", "F")

    def _module_name(self, module: str, asname: str | None) -> str:
        """A local spelling of ``module``, importing it first if the candidate does not."""
        for local, target in self.aliases.names.items():
            if target == module and (asname is None or local == asname):
                return local
        name = ensure_import(self.tree, module, asname)
        self.refresh()
        return name

    def has_function(self, name: str) -> bool:
        return any(isinstance(n, ast.FunctionDef) and n.name == name for n in self.tree.body)

    def add_function(self, source: str) -> None:
        """Insert a module-level helper (once) just before the first class or function."""
        node = parse(source).body[0]
        assert isinstance(node, ast.FunctionDef | ast.ClassDef)
        if any(
            isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == node.name
            for n in self.tree.body
        ):
            return
        position = len(self.tree.body)
        for i, item in enumerate(self.tree.body):
            if isinstance(item, ast.FunctionDef | ast.ClassDef):
                position = i
                break
        self.tree.body.insert(position, node)

    def init_method(self) -> ast.FunctionDef:
        init = find_method(self.cls, "__init__")
        if init is None:
            node = parse("def __init__(self):\n    super().__init__()\n").body[0]
            assert isinstance(node, ast.FunctionDef)
            self.cls.body.insert(0, node)
            init = node
        return init

    def forward_names(self) -> set[str]:
        return {n.id for n in ast.walk(self.forward) if isinstance(n, ast.Name)}


TransformFn = Callable[[Context], list[Change]]


@dataclass(frozen=True)
class Transform:
    """A semantics-preserving rewrite that applies wherever its pattern matches."""

    name: str
    family: str
    summary: str
    fn: TransformFn
    cost: float = 1.0  # relative evaluation cost: 1 is an eager candidate; compiles cost more
    conflicts: frozenset[str] = field(default_factory=frozenset)
    # Replay order when a lineage is rebuilt from the seed: rewrites of the math first, then
    # fusion into C++, then the memory pass over what is left, then wrapping in a compiler.
    stage: int = 0


def float_inputs(task_source: str) -> tuple[bool, ...]:
    """Which ``get_inputs()`` entries are float tensors, read statically from the task source.

    Only ``torch.randn(...)``-like factories without a ``dtype=`` (optionally scaled by a
    number) count; anything else is "unknown", which only makes the rewrites more careful.
    """
    try:
        tree = ast.parse(task_source)
    except SyntaxError:
        return ()
    fn = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_inputs"), None
    )
    if fn is None:
        return ()
    aliases = Aliases.of(tree)
    assigned: dict[str, ast.expr] = {}
    result: list[ast.expr] = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                assigned[target.id] = node.value
        if isinstance(node, ast.Return) and isinstance(node.value, ast.List | ast.Tuple):
            result = list(node.value.elts)

    def is_float(node: ast.expr, depth: int = 0) -> bool:
        if depth > 4:
            return False
        if isinstance(node, ast.Name) and node.id in assigned:
            return is_float(assigned[node.id], depth + 1)
        if isinstance(node, ast.BinOp):
            return is_float(node.left, depth + 1) or is_float(node.right, depth + 1)
        if isinstance(node, ast.Call):
            dotted = aliases.resolve(node.func) or ""
            if dotted.startswith("torch.") and dotted.split(".")[-1] in _FLOAT_FACTORIES:
                return not any(kw.arg == "dtype" for kw in node.keywords)
        return False

    return tuple(is_float(e) for e in result)
