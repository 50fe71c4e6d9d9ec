"""Static analysis of a task file: parse it, find its constants, rewrite size overrides.

Nothing here executes task code. The agent process only ever *reads* a task file; the
sandbox worker executes it (see ``runtime.materialise``).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

OverrideValue = int | float | str | bool

REQUIRED_NAMES = ("Model", "get_inputs", "get_init_inputs")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SourceProblem(Exception):
    """A problem found in a task file's text; the loader turns it into a ``TaskError``."""


@dataclass(frozen=True)
class Constant:
    """A module-level ``NAME = <expression without calls>`` assignment a user may override."""

    name: str
    text: str  # the right-hand side as written, e.g. "16384" or "dim * 2"
    value: OverrideValue | tuple[object, ...] | list[object] | None  # literal value, if it is one
    is_literal: bool


@dataclass(frozen=True)
class SourceInfo:
    """What the loader needs to know about a task file, found without executing it."""

    constants: dict[str, Constant]
    model_doc: str  # first line of the ``Model`` class docstring, "" if none


def parse_source(source: str, filename: str) -> ast.Module:
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "unknown line"
        raise SourceProblem(
            f"syntax error at {where}: {exc.msg}; fix the task file so it imports as Python"
        ) from exc
    except ValueError as exc:  # e.g. NUL bytes in the file
        raise SourceProblem(f"cannot be parsed as Python ({exc}); fix the task file") from exc


def _bound_names(tree: ast.Module) -> set[str]:
    """Names bound at module level by a def, class, assignment or import."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _is_constant_expression(node: ast.expr) -> bool:
    # Calls and lambdas make a value that is not a "size constant" (torch.device(...), ...).
    return not any(isinstance(n, ast.Call | ast.Lambda) for n in ast.walk(node))


def _assignments(node: ast.stmt) -> list[tuple[str, ast.expr]]:
    """``(name, value)`` pairs a module-level statement binds to a plain expression.

    ``NAME = value``, ``NAME: T = value`` and KernelBench's ``height, width = 32, 32``.
    """
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return [(node.target.id, node.value)]
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
        return []
    target, value = node.targets[0], node.value
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if (
        isinstance(target, ast.Tuple | ast.List)
        and isinstance(value, ast.Tuple | ast.List)
        and len(target.elts) == len(value.elts)
        and all(isinstance(t, ast.Name) for t in target.elts)
        and not any(isinstance(v, ast.Starred) for v in value.elts)
    ):
        return [
            (t.id, v)
            for t, v in zip(target.elts, value.elts, strict=True)
            if isinstance(t, ast.Name)
        ]
    return []


def analyse(source: str, filename: str) -> SourceInfo:
    """Parse a task file and check it has what a KernelBench-format task needs."""
    tree = parse_source(source, filename)
    missing = [name for name in REQUIRED_NAMES if name not in _bound_names(tree)]
    if missing:
        listed = ", ".join(f"`{m}`" for m in missing)
        raise SourceProblem(
            f"no {listed} defined at module level; a KernelBench-format task defines "
            "`class Model(nn.Module)`, `def get_inputs()` and `def get_init_inputs()`"
        )
    constants: dict[str, Constant] = {}
    model_doc = ""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Model":
            doc = ast.get_docstring(node) or ""
            model_doc = doc.strip().splitlines()[0].strip() if doc.strip() else ""
        for name, value in _assignments(node):
            if name.startswith("__") or not _is_constant_expression(value):
                continue
            text = ast.get_source_segment(source, value) or ast.unparse(value)
            try:
                literal = ast.literal_eval(value)
                constants[name] = Constant(name, text, literal, True)
            except ValueError:
                constants[name] = Constant(name, text, None, False)
    return SourceInfo(constants=constants, model_doc=model_doc)


def parse_value(text: str) -> OverrideValue:
    """Type a ``--set`` value: bool, int, float, else string (quotes optional)."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(stripped)
        except ValueError:
            pass
    if len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\"":
        return stripped[1:-1]
    return stripped


def is_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.match(name))


def coerce_override(constant: Constant, value: OverrideValue) -> OverrideValue:
    """Match an override's type to the constant it replaces, refusing lossy changes."""
    original = constant.value if constant.is_literal else None
    if isinstance(original, bool):
        if not isinstance(value, bool):
            raise SourceProblem(
                f"{constant.name} is a bool ({constant.text}); set it to true or false"
            )
        return value
    if isinstance(original, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SourceProblem(
                f"{constant.name} is an integer ({constant.text}); got {value!r}, give a whole number"
            )
        return value
    if isinstance(original, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SourceProblem(
                f"{constant.name} is a number ({constant.text}); got {value!r}, give a number"
            )
        return float(value)
    if isinstance(original, str):
        return str(value)
    return value


def _literal_text(value: OverrideValue) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)


def apply_overrides(source: str, overrides: dict[str, OverrideValue], filename: str) -> str:
    """Rewrite every module-level assignment of an overridden constant to the new value.

    Rewriting the text (rather than setting globals after import) also updates constants
    derived from it (``hidden = dim * 4``) and class-level defaults. Line numbers are kept,
    so tracebacks still point at the user's file.
    """
    if not overrides:
        return source
    tree = parse_source(source, filename)
    lines = source.splitlines(keepends=True)
    spans: list[tuple[int, int, int, int, str]] = []
    for node in tree.body:
        for name, value in _assignments(node):
            if name not in overrides:
                continue
            assert value.end_lineno is not None and value.end_col_offset is not None
            text = _literal_text(overrides[name])
            if value.end_lineno != value.lineno:
                # Keep the line count: a parenthesised literal may span blank lines.
                text = "(" + text + "\n" * (value.end_lineno - value.lineno) + ")"
            spans.append(
                (value.lineno, value.col_offset, value.end_lineno, value.end_col_offset, text)
            )
    # Replace from the end so earlier offsets stay valid. ast offsets are UTF-8 byte offsets.
    for lineno, col, end_lineno, end_col, text in sorted(spans, reverse=True):
        first = lines[lineno - 1].encode()
        last = lines[end_lineno - 1].encode()
        merged = first[:col].decode() + text + last[end_col:].decode()
        lines[lineno - 1 : end_lineno] = [merged]
    return "".join(lines)
