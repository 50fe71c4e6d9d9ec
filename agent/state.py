"""The discovery agent's working state, checkpointed by LangGraph after every node.

Only working state lives here (the current plan, the proposal in hand, counters); the
archive is the single source of truth for candidates and results.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class RunInput(TypedDict):
    """The narrow input: a run id (also the checkpoint thread id)."""

    run_id: str


class RunState(TypedDict, total=False):
    run_id: str
    plan: dict[str, Any] | None
    proposal: dict[str, Any] | None
    candidate_id: str | None
    stop_reason: str | None
    since_reflect: int
    recorded: Annotated[int, operator.add]
    proposals: Annotated[int, operator.add]
