"""The static policy for program-task candidates: the kernel policy with a wider allow-list.

Program candidates are general Python, so besides the kernel allow-list they may import
the standard library's computational modules and numpy/scipy, plus every module the
task's own initial program imports (the task author chose those), plus the task's
``allowed_imports``. Everything the kernel policy forbids for a reason (files, processes,
network, threads, ctypes, monkeypatching, interpreter internals) stays forbidden unless
the initial program itself uses that module. Pure functions over source; nothing runs.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from functools import lru_cache

from daedalus.sandbox.static import ALLOWED_IMPORTS, Violation, _Checker, _denied_module

PROGRAM_IMPORTS = ALLOWED_IMPORTS | frozenset(
    {
        "random", "statistics", "fractions", "decimal", "heapq", "bisect", "array", "string",
        "re", "time", "datetime", "json", "textwrap", "unicodedata", "scipy", "sympy",
        "networkx", "sklearn", "pandas", "numba", "jax", "contextlib", "warnings", "graphlib",
    }
)  # fmt: skip

Check = Callable[[str], list[Violation]]


class _ProgramChecker(_Checker):
    def __init__(self, allowed: frozenset[str], exempt: frozenset[str]) -> None:
        super().__init__()
        self.allowed = allowed
        self.exempt = exempt  # denied by default, but the initial program uses them

    def check_import(self, node: ast.AST, module: str) -> bool:
        root = module.split(".")[0]
        if root in self.exempt:
            return True
        rule = _denied_module(module)
        if rule is not None:
            self.flag(node, rule, f"imports '{module}', which the candidate policy forbids "
                      f"({rule}); the sandbox has no use for it: compute the result instead.")
            return False
        if root not in self.allowed:
            allowed = ", ".join(sorted(self.allowed - {"__future__"}))
            self.flag(node, "import", f"imports '{module}', which is not on this task's "
                      f"allow-list ({allowed}); use only these modules, or add it to "
                      "allowed_imports in the task's daedalus.toml.")
            return False
        return True

    def check_dotted(self, node: ast.AST, dotted: str) -> None:
        if dotted.split(".")[0] in self.exempt:
            return
        super().check_dotted(node, dotted)


@lru_cache(maxsize=32)  # every check asks for the initial program's imports
def imported_roots(source: str) -> frozenset[str]:
    """Top-level modules that ``source`` imports (absolute imports only)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return frozenset()
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return frozenset(roots)


def check_program(code: str, *, initial: str = "", extra: Iterable[str] = ()) -> list[Violation]:
    """Every policy violation of a program candidate (empty when it may run)."""
    return list(_check(code, initial, tuple(extra)))


@lru_cache(maxsize=256)  # vetting and the evaluator check the same candidate back to back
def _check(code: str, initial: str, extra: tuple[str, ...]) -> tuple[Violation, ...]:
    try:
        tree = ast.parse(code, filename="candidate.py")
    except SyntaxError as exc:
        return (Violation("syntax", f"does not parse: {exc.msg}; fix the syntax error.",
                          exc.lineno or 0),)
    own = imported_roots(initial)
    exempt = frozenset(r for r in own if _denied_module(r) is not None)
    checker = _ProgramChecker(PROGRAM_IMPORTS | own | frozenset(extra), exempt)
    checker.visit(tree)
    return tuple(sorted(checker.violations, key=lambda v: (v.line, v.rule)))


@lru_cache(maxsize=32)
def _checker(initial: str, extra: tuple[str, ...]) -> Check:
    def check(code: str) -> list[Violation]:
        return check_program(code, initial=initial, extra=extra)

    return check


def policy_for(source: str, settings: dict[str, object]) -> Check | None:
    """The check a program task's candidates get (None: the task turned the policy off)."""
    if settings.get("policy", "on") == "off":
        return None
    extra = settings.get("allowed_imports") or []
    assert isinstance(extra, list)
    return _checker(source, tuple(sorted(str(x) for x in extra)))
