"""The seed candidate: the task's reference program, renamed so it is a candidate."""

from __future__ import annotations

import ast

from daedalus.tools.builtin.astutil import unparse

_HARNESS_FUNCTIONS = ("get_inputs", "get_init_inputs")


class SeedError(ValueError):
    """The task source cannot be turned into a seed candidate (the message says why)."""


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old = old
        self.new = new

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.old:
            return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
        if node.name == self.old:
            node.name = self.new
        self.generic_visit(node)
        return node


def _free_names(node: ast.AST, bound: frozenset[str] = frozenset()) -> set[str]:
    """Names read in ``node`` that can refer to module globals (scope-aware)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        args = node.args
        params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        body = node.body if isinstance(node.body, list) else [node.body]
        local = {
            sub.id
            for stmt in body
            for sub in ast.walk(stmt)
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)
        }
        inner = bound | params | local
        found: set[str] = set()
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            found |= _free_names(default, bound)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                found |= _free_names(decorator, bound)
        for stmt in body:
            found |= _free_names(stmt, frozenset(inner))
        return found
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) and node.id not in bound else set()
    found = set()
    for child in ast.iter_child_nodes(node):
        found |= _free_names(child, bound)
    return found


def _names_loaded(nodes: list[ast.stmt]) -> set[str]:
    return {name for node in nodes for name in _free_names(node)}


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Assign):
        return {
            sub.id
            for target in node.targets
            for sub in ast.walk(target)
            if isinstance(sub, ast.Name)
        }
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def reference_as_candidate(task_source: str) -> str:
    """The reference with ``Model`` renamed to ``ModelNew``, ready to be evaluated as a candidate.

    ``get_inputs``/``get_init_inputs`` are dropped when nothing the model needs refers to them,
    and so are the module-level size constants that only they used (the sandbox applies size
    overrides to the task module, so a stale copy here could only mislead). Everything the
    class refers to is kept.
    """
    try:
        tree = ast.parse(task_source)
    except SyntaxError as exc:
        raise SeedError(
            f"the task source does not parse (line {exc.lineno}: {exc.msg}); fix the task file"
        ) from exc
    if not any(isinstance(n, ast.ClassDef) and n.name == "Model" for n in tree.body):
        raise SeedError("the task source defines no `class Model`; it is not a KernelBench task")
    if any(isinstance(n, ast.ClassDef) and n.name == "ModelNew" for n in tree.body):
        raise SeedError(
            "the task source already defines `ModelNew`; rename it so the seed can take that name"
        )
    tree = _Rename("Model", "ModelNew").visit(tree)
    body = [
        node
        for node in tree.body
        if not (isinstance(node, ast.FunctionDef) and node.name in _HARNESS_FUNCTIONS)
    ]
    if _names_loaded(body) & set(_HARNESS_FUNCTIONS):
        body = list(tree.body)  # something else calls them: keep the file whole
    # Drop module constants nothing kept refers to (fixed point: constants may use constants).
    while True:
        needed = _names_loaded(body)
        kept = [
            node
            for node in body
            if not (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and _bound_names(node)
                and not (_bound_names(node) & needed)
            )
        ]
        if len(kept) == len(body):
            break
        body = kept
    tree.body = body
    return unparse(tree)
