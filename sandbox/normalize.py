"""Exact-duplicate detection: a hash of the candidate's AST that ignores presentation.

Two candidates hash the same when they differ only in comments, docstrings, formatting,
type annotations, import aliases, or the names of local variables, arguments and private
module-level helpers. Attribute names (``self.weight``) and the task interface
(``ModelNew``, ``Model``, ``get_inputs``, ``get_init_inputs``) are kept, since they matter.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache

_INTERFACE = frozenset({"ModelNew", "Model", "get_inputs", "get_init_inputs"})


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return body[1:] or [ast.Pass()]
    return body


def _bound_names(node: ast.AST) -> list[str]:
    """Names bound inside one function scope, in order of first binding (nested scopes excluded)."""
    names: list[str] = []
    declared: set[str] = set()

    def add(name: str) -> None:
        if name not in names:
            names.append(name)

    def walk(n: ast.AST, top: bool) -> None:
        if not top and isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            add(n.name)
            return
        if not top and isinstance(n, ast.Lambda):
            return
        if isinstance(n, ast.Global | ast.Nonlocal):
            declared.update(n.names)
        if isinstance(n, ast.arg):
            add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
            add(n.id)
        for child in ast.iter_child_nodes(n):
            walk(child, False)

    walk(node, True)
    return [n for n in names if n not in declared]


class _Canonicalise(ast.NodeTransformer):
    def __init__(self, aliases: dict[str, str], module_names: dict[str, str]) -> None:
        self.scopes: list[dict[str, str]] = [module_names]
        self.aliases = aliases
        self.counter = 0

    def lookup(self, name: str) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return self.aliases.get(name, name)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id=self.lookup(node.id), ctx=node.ctx), node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return ast.arg(arg=self.lookup(node.arg), annotation=None)

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> ast.AST:
        scope: dict[str, str] = {}
        for name in _bound_names(node):
            scope[name] = f"_l{self.counter}"
            self.counter += 1
        self.scopes.append(scope)
        try:
            if not isinstance(node, ast.Lambda):
                node.body = _strip_docstring(node.body)
                node.returns = None
                node.decorator_list = [self.visit(d) for d in node.decorator_list]
            node.args = self.visit(node.args)
            if isinstance(node.body, list):
                node.body = [self.visit(s) for s in node.body]
            else:
                node.body = self.visit(node.body)
        finally:
            self.scopes.pop()
        if not isinstance(node, ast.Lambda):
            node.name = self.lookup(node.name)
        return node

    visit_FunctionDef = _scoped
    visit_AsyncFunctionDef = _scoped
    visit_Lambda = _scoped

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = _strip_docstring(node.body)
        node.name = self.lookup(node.name)
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None
        assign = ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)
        return self.visit(assign)

    def visit_Import(self, node: ast.Import) -> None:
        return None  # usage sites already name the full module path

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return None


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


@lru_cache(maxsize=64)  # vetting and the evaluator hash the same candidate back to back
def normalized_hash(code: str) -> str:
    """sha256 of the canonical AST; for unparsable code, of its non-blank, non-comment lines."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        lines = [ln.strip() for ln in code.splitlines()]
        text = "\n".join(ln for ln in lines if ln and not ln.startswith("#"))
        return hashlib.sha256(text.encode()).hexdigest()
    tree.body = _strip_docstring(tree.body)
    module_names: dict[str, str] = {}
    for node in tree.body:
        name = getattr(node, "name", None)  # set on def, async def and class statements
        if isinstance(name, str) and name not in _INTERFACE:
            module_names.setdefault(name, f"_g{len(module_names)}")
    canonical = _Canonicalise(_module_aliases(tree), module_names).visit(tree)
    dumped = ast.dump(canonical, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dumped.encode()).hexdigest()
