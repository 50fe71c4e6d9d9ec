"""The chat agent's toolbox: the tool specs the model sees, argument checks, dispatch.

The specs (names, descriptions, JSON-schema parameters) live in ``prompts/chat_tools.j2``,
beside the other text the model reads. Arguments are validated against them before a tool
runs, and every failure, ours or the model's, becomes the call's observation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from daedalus import prompts
from daedalus.agent.chat_actions import Actions, Prepared
from daedalus.agent.chat_tools import ArchiveTools, ToolError
from daedalus.agent.security import redact

CONFIRMED = ("propose_variant", "start_run", "resume_run")
PLAIN = ("list_runs", "list_tasks", "show_run", "top_candidates", "show_candidate",
         "diff_candidates", "explain_failure", "pin_idea", "ban_idea", "remove_guidance", "stop_run")


def tool_specs() -> list[dict[str, Any]]:
    """The tools the model may call, from ``prompts/chat_tools.j2`` (JSON)."""
    specs: list[dict[str, Any]] = json.loads(prompts.render("chat_tools"))
    return specs


def render_observation(result: dict[str, Any]) -> str:
    """A tool result as readable text: multi-line strings (code, diffs, logs) as blocks."""
    lines: list[str] = []
    for key, value in result.items():
        if isinstance(value, str) and "\n" in value:
            lines.append(f"{key}: |\n" + "\n".join("  " + line for line in value.splitlines()))
        else:
            lines.append(f"{key}: {json.dumps(value, default=str)}")
    return "\n".join(lines)


class Toolbox:
    """Dispatches the model's tool calls; every error becomes the call's observation."""

    def __init__(self, tools: ArchiveTools, actions: Actions) -> None:
        self.specs = tool_specs()
        self._schemas = {s["name"]: s["parameters"] for s in self.specs}
        self.plain: dict[str, Callable[..., dict[str, Any]]] = {n: getattr(tools, n) for n in PLAIN}
        self.confirmed: dict[str, Callable[..., Prepared]] = {n: getattr(actions, n) for n in CONFIRMED}
        self.actions = actions

    def openai_tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": spec} for spec in self.specs]

    def parse(self, call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        import jsonschema

        function = call.get("function") or {}
        name = str(function.get("name") or "")
        if name not in self._schemas:
            raise ToolError(f"there is no tool {name!r}; the tools are: {', '.join(self._schemas)}")
        raw = function.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise ToolError(f"the arguments are not valid JSON ({exc}); send one JSON object") from exc
        if not isinstance(args, dict):
            raise ToolError("the arguments must be one JSON object")
        try:
            jsonschema.validate(args, self._schemas[name])
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
            raise ToolError(f"invalid {where}: {exc.message}") from exc
        allowed = set(self._schemas[name].get("properties", {}))
        if unknown := sorted(set(args) - allowed):
            raise ToolError(f"unknown argument(s) {unknown}; {name} takes {sorted(allowed)}")
        return name, args

    def run(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.plain[name](**args)
        except Exception as exc:  # any tool failure is an observation for the model, never a crash
            return _error(exc)

    def prepare(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """An action's observation now, or the action that waits for the user's yes."""
        try:
            prepared = self.confirmed[name](**args)
        except Exception as exc:  # as above: the model reads the error and adapts
            return _error(exc), None
        return prepared.observation or {}, prepared.action

    def execute(self, action: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.actions.execute(action)
        except Exception as exc:  # as above
            return _error(exc)


def _error(exc: Exception) -> dict[str, Any]:
    message = redact(str(exc)) or type(exc).__name__
    kind = "" if isinstance(exc, ToolError) else f"{type(exc).__name__}: "
    return {"error": kind + message}
