"""Shared AST helpers and the interface hint of the architecture mutations."""

from __future__ import annotations

import ast
import random
from collections.abc import Callable
from dataclasses import dataclass

from daedalus.tools.builtin.base import Change


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
