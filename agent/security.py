"""Security: vet candidates before evaluation and keep secrets out of logs and the archive.

The static candidate policy itself lives in ``daedalus.sandbox.static`` (pure functions over
source, shared with the passive evaluation worker); this module applies it on the agent side,
adds a size limit, and redacts credentials from any text that is stored or shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

Check = Callable[[str], list[Any]]  # a static policy: code -> violations (sandbox.static)

# Each key shape with the literals (lower case) it cannot match without: a substring test
# is far cheaper than a regex scan, and prompts and logs are redacted several times an iteration.
_SECRET_PATTERNS = (
    (("sk-",), re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")),
    (("ghp_", "gho_", "github_pat_"), re.compile(r"\b(?:ghp|gho|github_pat)_[A-Za-z0-9_]{20,}")),
    (("akia",), re.compile(r"\bAKIA[0-9A-Z]{16}\b")),
    (("bearer",), re.compile(r"(?i)(authorization:\s*bearer\s+)[A-Za-z0-9._\-]{12,}")),
)
_SECRET_ENV = re.compile(r"(?i)(api[_-]?key|secret|token|password)")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    rule: str = ""
    reason: str = ""


def vet(code: str, *, max_code_bytes: int, check: Check | Literal["kernel"] | None = "kernel") -> Verdict:
    """Apply the size limit and the static candidate policy; the first violation decides.

    ``check`` is the task's policy: the kernel policy by default, a program task's own
    (``sandbox.program_policy.policy_for``), or None when the task turned the policy off.
    """
    from daedalus.sandbox.static import check_candidate

    if not code.strip():
        return Verdict(False, "empty", "the proposal contains no code")
    size = len(code.encode())
    if size > max_code_bytes:
        return Verdict(False, "size", f"candidate is {size} bytes; the limit is {max_code_bytes}")
    policy = check_candidate if isinstance(check, str) else check
    violations = policy(code) if policy is not None else []
    if violations:
        first = violations[0]
        reasons = "; ".join(f"line {v.line}: [{v.rule}] {v.message}" for v in violations[:5])
        return Verdict(False, first.rule, reasons)
    return Verdict(True)


@lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return _SECRET_ENV.search(name) is not None


def _secret_values() -> list[str]:
    # The environment is read afresh every time (it may change); the names' verdicts are
    # cached, as the loop redacts several texts an iteration.
    return [value for name, value in os.environ.items() if len(value) >= 8 and _secret_name(name)]


def redact(text: str) -> str:
    """Remove credentials (known key shapes and secret-looking environment values)."""
    for value in _secret_values():
        text = text.replace(value, "[redacted]")
    folded = text.lower()
    for needles, pattern in _SECRET_PATTERNS:
        if any(needle in folded for needle in needles):
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text
