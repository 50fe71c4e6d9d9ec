"""Applying transformations to candidate source: parse, rewrite, validate, unparse."""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from daedalus.tools.builtin.astutil import find_class, find_method, unparse
from daedalus.tools.builtin.base import Change, Context, Transform

Policy = Callable[[str], list[str]]


def _load_policy() -> Policy | None:
    try:
        from daedalus.sandbox.static import check_candidate
    except ImportError:  # the policy ships with the sandbox; the agent vets again anyway
        return None

    def check(code: str) -> list[str]:
        return [str(v) for v in check_candidate(code)]

    return check


@dataclass(frozen=True)
class Applied:
    code: str
    changes: tuple[Change, ...]


@functools.lru_cache(maxsize=4096)
def canonical(code: str) -> str:
    """Source identity that ignores formatting and comments (to avoid proposing a repeat)."""
    try:
        return ast.dump(ast.parse(code))
    except SyntaxError:
        return code


class InvalidCandidate(ValueError):
    """A transformation produced code that is not a valid candidate (a bug in the transform)."""


def validate(code: str, reference: str | None = None, policy: Policy | None = None) -> None:
    """The code parses, defines ModelNew with the reference's signatures, and passes policy."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise InvalidCandidate(
            f"generated code does not parse: {exc.msg} (line {exc.lineno})"
        ) from exc
    cls = find_class(tree)
    if cls is None:
        raise InvalidCandidate("generated code lost `class ModelNew`")
    if reference is not None:
        before = find_class(ast.parse(reference))
        for method in ("__init__", "forward"):
            old = find_method(before, method) if before else None
            new = find_method(cls, method)
            if old is not None and (new is None or ast.dump(old.args) != ast.dump(new.args)):
                raise InvalidCandidate(f"generated code changed the signature of ModelNew.{method}")
    if policy is not None:
        problems = policy(code)
        if problems:
            raise InvalidCandidate(
                "generated code breaks the candidate policy: " + "; ".join(problems)
            )


class Engine:
    """Applies catalogue transformations; never returns unchanged or invalid code.

    Transformations are pure functions of the source, so results are memoised: replaying a
    lineage from the seed (which the proposer does for every candidate step) reuses the
    prefix it shares with earlier replays.
    """

    _MEMO_LIMIT = 4096

    def __init__(self, float_inputs: tuple[bool, ...] = (), *, check_policy: bool = True) -> None:
        self.float_inputs = float_inputs
        self.policy = _load_policy() if check_policy else None
        self._memo: dict[tuple[str, str], Applied | None] = {}

    def apply(self, code: str, transform: Transform) -> Applied | None:
        """``transform`` applied to ``code``, or None where its pattern matches nowhere."""
        key = (code, transform.name)
        if key not in self._memo:
            if len(self._memo) >= self._MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = self._apply(code, transform)
        return self._memo[key]

    def _apply(self, code: str, transform: Transform) -> Applied | None:
        try:
            tree = ast.parse(code)
            ctx = Context(tree, self.float_inputs)
        except (SyntaxError, ValueError):
            return None
        changes = transform.fn(ctx)
        if not changes:
            return None
        new_code = unparse(ctx.tree)
        if canonical(new_code) == canonical(code):
            return None
        validate(new_code, code, self.policy)
        return Applied(new_code, tuple(changes))

    def apply_all(
        self, code: str, transforms: Sequence[Transform]
    ) -> tuple[str, list[Change], list[str]]:
        """Apply each transform in order where it matches: (code, changes, names applied)."""
        changes: list[Change] = []
        applied: list[str] = []
        for transform in transforms:
            result = self.apply(code, transform)
            if result is not None:
                code = result.code
                changes.extend(result.changes)
                applied.append(transform.name)
        return code, changes, applied
