"""The proposer contract: a brief goes in, a proposal comes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Mode = Literal["improve", "fix", "crossover", "explore"]


@dataclass(frozen=True)
class ArchiveEntry:
    """An archive member as a proposer sees it (already fenced for prompts by the agent)."""

    candidate_id: str
    code: str
    status: str
    score: float
    speedup: float | None = None
    feedback: str = ""
    origin: str = ""
    description: str = ""  # what the proposer said it did (e.g. the transformations applied)


@dataclass(frozen=True)
class Brief:
    """Everything a proposer may use for one proposal."""

    task_name: str
    task_source: str
    category: str
    mode: Mode
    parent: ArchiveEntry
    inspirations: tuple[ArchiveEntry, ...] = ()
    failures: tuple[ArchiveEntry, ...] = ()
    lessons: tuple[str, ...] = ()
    guidance: tuple[str, ...] = ()
    seed: int = 0
    prompt: str = ""  # the rendered prompt (LLM proposers); built by agent.profile
    # Structured chat messages (agent.profile.build_messages); LLM proposers prefer them.
    messages: tuple[dict[str, str], ...] = ()
    max_cost_usd: float | None = None  # what this one proposal may spend; None: no limit
    kind: str = "kernel"  # the task kind (tasks.model.TaskKind): proposers dispatch on it
    instructions: str = ""  # the task author's own words for the model (program tasks)


@dataclass
class Proposal:
    code: str
    raw: str = ""
    model: str = "builtin"
    proposer: str = "builtin"
    description: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    edit_format: str = "full"
    error: str | None = None  # set when no usable code came back; the run records it
    meta: dict[str, str] = field(default_factory=dict)


class Proposer(Protocol):
    name: str

    def propose(self, brief: Brief) -> Proposal: ...

    def observe(self, proposal: Proposal, *, parent_score: float, score: float) -> None:
        """Feedback after evaluation (score 0.0 for any failure); proposers may learn from it."""
