"""Isolated evaluation of candidates: sandboxes, the in-sandbox harness, hardware backends.

The public API imports no torch, so the agent's process stays light::

    from daedalus.sandbox import Evaluator, evaluate, get_sandbox
"""

from daedalus.sandbox.evaluator import Evaluator, evaluate
from daedalus.sandbox.protocol import Sandbox, SandboxRun, get_sandbox, register_sandbox
from daedalus.sandbox.result import EvaluationResult, Limits, Status

__all__ = [
    "EvaluationResult",
    "Evaluator",
    "Limits",
    "Sandbox",
    "SandboxRun",
    "Status",
    "evaluate",
    "get_sandbox",
    "register_sandbox",
]
