"""Edits the built-in proposer can make to any Python program, inside its EVOLVE-BLOCKs.

Pure functions over source text: find the numeric literals that may change (``slots``),
scale some of them (``mutate``), mix the literals of two programs of the same shape
(``cross_constants``) or swap whole top-level functions between two programs
(``cross_functions``). Each returns new source that parses, or None. Text outside the
evolvable regions is never touched, and formatting and comments are kept.
"""

from __future__ import annotations

import ast
import math
import random
from dataclasses import dataclass

from daedalus.tasks.program import evolvable_spans

SMALL_STEPS = (0.5, 0.8, 0.9, 1.1, 1.25, 2.0)
LARGE_STEPS = (0.25, 0.5, 2.0, 4.0)


@dataclass(frozen=True)
class Slot:
    """One numeric literal: where it is (1-based line, columns) and what it holds."""

    line: int
    col: int
    end_col: int
    value: int | float
    key: str  # stable across programs of the same shape: the literal's ordinal and context


@dataclass(frozen=True)
class Mutation:
    key: str
    before: int | float
    after: int | float
    line: int


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def slots(code: str) -> list[Slot]:
    """The numeric literals inside the evolvable regions, in source order.

    Skipped: booleans, zero (usually an index or a start), literals used as subscripts
    (indices), and literals spanning lines.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    spans = evolvable_spans(code)
    parents = _parents(tree)
    lines = code.split("\n")
    found: list[Slot] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
            continue
        if not isinstance(node.value, int | float) or node.value == 0:
            continue
        if node.end_lineno != node.lineno or node.end_col_offset is None:
            continue
        row = node.lineno - 1
        if not any(first <= row < last for first, last in spans):
            continue
        parent = parents.get(id(node))
        if isinstance(parent, ast.UnaryOp):
            parent = parents.get(id(parent))
        if isinstance(parent, ast.Subscript | ast.Slice):
            continue
        found.append(Slot(node.lineno, node.col_offset, node.end_col_offset, node.value, ""))
    found.sort(key=lambda s: (s.line, s.col))
    keyed = []
    for ordinal, slot in enumerate(found):
        context = lines[slot.line - 1][: slot.col].strip()[-24:]
        keyed.append(Slot(slot.line, slot.col, slot.end_col, slot.value, f"{ordinal}:{context}"))
    return keyed


def _format(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    text = f"{value:.6g}"
    return text if any(c in text for c in ".einf") else text + ".0"


def scaled(value: int | float, factor: float) -> int | float:
    """``value`` times ``factor``; integers stay integers and always move by at least one."""
    if isinstance(value, int):
        moved = round(value * factor)
        if moved == value:
            moved = value + (1 if factor > 1 else -1)
        if moved == 0:  # zero usually breaks a loop or a divisor: stop one short of it
            sign = 1 if value > 0 else -1
            moved = value - sign if abs(value) > 1 else value + sign
        return moved
    return value * factor


def replace(code: str, changes: dict[Slot, int | float]) -> str | None:
    """``code`` with the given literals rewritten; None if the result does not parse."""
    lines = code.split("\n")
    for slot in sorted(changes, key=lambda s: (s.line, s.col), reverse=True):
        text = lines[slot.line - 1]
        new = changes[slot]
        if isinstance(new, float) and not math.isfinite(new):
            return None
        lines[slot.line - 1] = text[: slot.col] + _format(new) + text[slot.end_col :]
    result = "\n".join(lines)
    try:
        ast.parse(result)
    except SyntaxError:
        return None
    return result


def mutate(code: str, rng: random.Random, *, count: int = 1, steps: tuple[float, ...] = SMALL_STEPS,
           prefer: list[tuple[str, float]] | None = None) -> tuple[str, list[Mutation]] | None:
    """Scale ``count`` literals by factors from ``steps``. ``prefer`` holds (slot key,
    factor) moves that helped before; one of them is replayed when it still applies."""
    found = slots(code)
    if not found:
        return None
    chosen: dict[Slot, float] = {}
    by_key = {s.key: s for s in found}
    usable = [(k, f) for k, f in (prefer or []) if k in by_key]
    if usable and rng.random() < 0.5:
        key, factor = rng.choice(usable)
        chosen[by_key[key]] = factor
    for slot in rng.sample(found, k=min(len(found), count)):
        if len(chosen) >= count:
            break
        chosen.setdefault(slot, rng.choice(steps))
    changes = {slot: scaled(slot.value, factor) for slot, factor in chosen.items()}
    result = replace(code, changes)
    if result is None or result == code:
        return None
    return result, [Mutation(s.key, s.value, v, s.line) for s, v in changes.items()]


def shape(code: str) -> str:
    """The evolvable code with its literals blanked: equal shapes can swap literals."""
    found = slots(code)
    if not found:
        return code
    return replace(code, dict.fromkeys(found, 1)) or ""


def cross_constants(a: str, b: str, rng: random.Random) -> tuple[str, list[Mutation]] | None:
    """Uniform crossover of the literals of two programs with the same shape."""
    sa, sb = slots(a), slots(b)
    if not sa or len(sa) != len(sb) or shape(a) != shape(b):
        return None
    differ = [i for i, (x, y) in enumerate(zip(sa, sb, strict=True)) if x.value != y.value]
    if len(differ) < 2:
        return None
    take = [i for i in differ if rng.random() < 0.5] or [rng.choice(differ)]
    if len(take) == len(differ):
        take.pop(rng.randrange(len(take)))
    result = replace(a, {sa[i]: sb[i].value for i in take})
    if result is None:
        return None
    return result, [Mutation(sa[i].key, sa[i].value, sb[i].value, sa[i].line) for i in take]


def _functions(code: str) -> dict[str, tuple[int, int]]:
    """Top-level functions and classes inside evolvable regions: name -> [first, last) rows."""
    tree = ast.parse(code)
    spans = evolvable_spans(code)
    out: dict[str, tuple[int, int]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        last = node.end_lineno or node.lineno
        if any(lo <= first and last <= hi for lo, hi in spans):
            out[node.name] = (first, last)
    return out


def cross_functions(a: str, b: str, rng: random.Random) -> tuple[str, list[str]] | None:
    """Program ``a`` with some of its evolvable top-level functions taken from ``b``."""
    try:
        fa, fb = _functions(a), _functions(b)
    except SyntaxError:
        return None
    la, lb = a.split("\n"), b.split("\n")
    common = [n for n in fa if n in fb and la[slice(*fa[n])] != lb[slice(*fb[n])]]
    if not common:
        return None
    take = [n for n in common if rng.random() < 0.5] or [rng.choice(common)]
    if len(take) == len(common) > 1:  # all of b's versions would make a copy of b
        take.pop(rng.randrange(len(take)))
    lines = list(la)
    for name in sorted(take, key=lambda n: fa[n][0], reverse=True):
        lo, hi = fa[name]
        lines[lo:hi] = lb[slice(*fb[name])]
    result = "\n".join(lines)
    try:
        ast.parse(result)
    except SyntaxError:
        return None
    return (result, take) if result not in (a, b) else None
