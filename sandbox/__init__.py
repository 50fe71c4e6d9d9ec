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

# The Docker sandbox registers lazily: the docker SDK loads only when one is created.
register_sandbox("docker", "daedalus.sandbox.docker:DockerSandbox")
register_sandbox("auto", "daedalus.sandbox.docker:auto_sandbox")
