"""The static candidate policy: pure functions over candidate source, no execution.

This is the first line of defence; the process sandbox is the second. The evaluator checks
every candidate in the parent before forking and again inside the sandbox, and
``agent/security.py`` reuses ``check_candidate`` when vetting proposals. Each rule has a
short id (``Violation.rule``) so rejections can be counted and explained.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from daedalus.sandbox import policy_rules as R
from daedalus.sandbox.normalize import normalized_hash
from daedalus.sandbox.policy_rules import ALLOWED_IMPORTS

__all__ = [
    "ALLOWED_IMPORTS",
    "Violation",
    "check_candidate",
    "needs_build",
    "normalized_hash",
    "uses_module",
]


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    line: int

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


def _denied_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        rule = R.DENIED_MODULES.get(".".join(parts[:i]))
        if rule is not None:
            return rule
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted module/object path
        self.uses_load_inline = False

    def flag(self, node: ast.AST, rule: str, message: str) -> None:
        self.violations.append(Violation(rule, message, getattr(node, "lineno", 0)))

    # -- name resolution -------------------------------------------------------------
    def resolve(self, node: ast.AST) -> str | None:
        """The dotted path of ``torch.nn.functional.relu``-like chains rooted at an import."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(attrs)])
        return None

    def check_dotted(self, node: ast.AST, dotted: str) -> None:
        rule = _denied_module(dotted)
        if rule is not None:
            self.flag(node, rule, f"uses '{dotted}', which the candidate policy forbids ({rule}); "
                      "compute with torch/numpy/triton operations only.")
            return
        rule = R.DENIED_NAMES.get(dotted)
        if rule is not None:
            self.flag(node, rule, f"calls '{dotted}', which the candidate policy forbids ({rule}); "
                      "remove it (candidates may not touch files, threads or tensor types).")
        if dotted.endswith("load_inline"):
            self.uses_load_inline = True

    # -- imports -----------------------------------------------------------------------
    def check_import(self, node: ast.AST, module: str) -> bool:
        rule = _denied_module(module)
        if rule is not None:
            self.flag(node, rule, f"imports '{module}', which the candidate policy forbids "
                      f"({rule}); remove the import and compute with torch operations.")
            return False
        if module.split(".")[0] not in ALLOWED_IMPORTS:
            allowed = ", ".join(sorted(ALLOWED_IMPORTS - {"__future__"}))
            self.flag(node, "import", f"imports '{module}', which is not on the allow-list "
                      f"({allowed}); use only these modules.")
            return False
        return True

    def visit_Import(self, node: ast.Import) -> None:
        # Aliases are recorded even for refused imports so later misuse is reported too.
        for alias in node.names:
            self.check_import(node, alias.name)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                root = alias.name.split(".")[0]
                self.aliases[root] = root

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.flag(node, "import", "uses a relative import; candidates are single files, "
                      "import only allow-listed modules by absolute name.")
            return
        module = node.module or ""
        allowed = self.check_import(node, module)
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, "import", f"uses 'from {module} import *'; import names "
                          "explicitly so the policy can check them.")
                continue
            dotted = f"{module}.{alias.name}"
            if allowed:
                self.check_dotted(node, dotted)
            self.aliases[alias.asname or alias.name] = dotted

    # -- names, attributes, calls ------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in R.ESCAPE_NAMES:
            self.flag(node, "dunder-escape", f"uses '{node.id}', an interpreter internal; "
                      "candidates may not reach the import machinery or builtins.")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in R.ESCAPE_ATTRS:
            self.flag(node, "dunder-escape", f"accesses '.{node.attr}', which reaches "
                      "interpreter internals; remove it.")
        elif node.attr in R.TENSOR_HOOKS:
            self.flag(node, "tensor-subclass", f"uses '{node.attr}'; candidates may not "
                      "intercept torch dispatch.")
        elif node.attr in R.FILE_ATTRS:
            self.flag(node, "file-access", f"calls '.{node.attr}()', which writes a file; "
                      "candidates may not touch the file system.")
        dotted = self.resolve(node)
        if dotted is not None:
            self.check_dotted(node, dotted)
            return  # the chain is checked as a whole; don't re-check its prefixes
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id not in self.aliases:
            rule = R.BUILTIN_CALLS.get(func.id)
            if rule is not None:
                self.flag(node, rule, f"calls '{func.id}()', which the candidate policy "
                          f"forbids ({rule}); remove it.")
            elif func.id in {"setattr", "delattr", "getattr"}:
                self.check_attr_builtin(node, func.id)
            elif func.id == "type" and len(node.args) == 3:
                self.flag(node, "dynamic-code", "creates a class with type(name, bases, dict); "
                          "define classes with a class statement.")
        dotted = self.resolve(func)
        if dotted is not None and dotted.endswith("load_inline"):
            for kw in node.keywords:
                if kw.arg == "build_directory":
                    self.flag(node, "file-access", "passes build_directory to load_inline; "
                              "the sandbox chooses the (cached) build directory, drop the argument.")
        self.generic_visit(node)

    def check_attr_builtin(self, node: ast.Call, name: str) -> None:
        target = node.args[0] if node.args else None
        attr = node.args[1] if len(node.args) > 1 else None
        literal = attr.value if isinstance(attr, ast.Constant) else None
        if isinstance(literal, str) and (literal.startswith("__") or literal in R.ESCAPE_ATTRS):
            self.flag(node, "dunder-escape", f"{name}() with '{literal}' reaches "
                      "interpreter internals; remove it.")
        if target is not None and self.resolve(target) is not None:
            if name == "getattr" and isinstance(literal, str):
                self.check_dotted(node, f"{self.resolve(target)}.{literal}")
            else:
                self.flag(node, "monkeypatch", f"{name}() on module '{self.resolve(target)}' "
                          "can change torch or the harness; call functions directly instead.")

    # -- assignments (monkeypatching) and definitions ----------------------------------
    def check_target(self, target: ast.AST) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self.check_target(elt)
            return
        if isinstance(target, ast.Starred):
            self.check_target(target.value)
            return
        base = target
        while isinstance(base, ast.Attribute | ast.Subscript):
            base = base.value
        if base is not target and isinstance(base, ast.Name):
            dotted = self.aliases.get(base.id)
            if dotted is not None:
                self.flag(target, "monkeypatch", f"assigns into '{dotted}' (an imported module "
                          "or its object); candidates may not modify torch, numpy or the harness.")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self.check_target(target)
        dotted = self.resolve(node.value)
        if dotted is not None:  # `F = torch.nn.functional` makes F an alias too
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.aliases[target.id] = dotted
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.check_target(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.check_target(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self.check_target(target)
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            if self.resolve(base) in R.TENSOR_TYPES:
                self.flag(node, "tensor-subclass", f"class '{node.name}' subclasses "
                          f"{self.resolve(base)}; outputs must be plain torch.Tensor objects.")
        for kw in node.keywords:
            if kw.arg == "metaclass":
                self.flag(node, "dynamic-code", f"class '{node.name}' sets a metaclass; "
                          "define plain classes.")
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if node.name in R.TENSOR_HOOKS:
            self.flag(node, "tensor-subclass", f"defines '{node.name}'; candidates may not "
                      "intercept torch dispatch.")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if name in self.aliases:
                self.flag(node, "monkeypatch", f"rebinds the imported name '{name}' globally; "
                          "use a different local name.")


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    return [
        (getattr(node, "lineno", 0), node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def check_candidate(code: str) -> list[Violation]:
    """Every policy violation in ``code`` (empty when it may run). Never executes the code."""
    return list(_check(code))


@lru_cache(maxsize=64)  # vetting and the evaluator check the same candidate back to back
def _check(code: str) -> tuple[Violation, ...]:
    try:
        tree = ast.parse(code, filename="candidate.py")
    except SyntaxError as exc:
        return (Violation("syntax", f"does not parse: {exc.msg}; fix the syntax error.",
                          exc.lineno or 0),)
    checker = _Checker()
    checker.visit(tree)
    if checker.uses_load_inline:
        for line, text in _string_constants(tree):
            match = R.CPP_DENIED.search(text)
            if match is not None:
                checker.flag(ast.Constant(value=text, lineno=line), "cpp-unsafe",
                             f"C++ source uses '{match.group(0).strip()}', which can reach "
                             "files, processes, threads or the interpreter; write pure "
                             "compute code (ATen and OpenMP are fine).")
    return tuple(sorted(checker.violations, key=lambda v: (v.line, v.rule)))


_BUILD_MARKERS = re.compile(r"load_inline|cpp_extension|torch\.compile|\btriton\b")


def needs_build(code: str) -> bool:
    """Whether the candidate builds code (C++ extension, torch.compile, Triton), which earns
    it ``Limits.compile_timeout_s`` on top of ``Limits.timeout_s``."""
    return _BUILD_MARKERS.search(code) is not None


def uses_module(code: str, root: str) -> bool:
    """Whether ``code`` imports ``root`` or a submodule of it (False if it does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            a.name == root or a.name.startswith(root + ".") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and (
            node.module == root or node.module.startswith(root + ".")
        ):
            return True
    return False
