"""The LLM proposer: a brief's messages go to a model, a program comes back.

Two answer formats: ``full`` (the whole program in a code block) and ``diff``
(SEARCH/REPLACE edits on the parent's code). Either way the proposer accepts whichever
of the two the model actually sent. A reply without code, or with edits that do not
apply, is sent back to the model with the reason (up to ``max_edit_retries`` times);
it is never silently dropped.

Faults the run can live with (timeouts, rate limits and 5xx after the gateway's own
retries, malformed replies, no usable code) come back as a ``Proposal`` with ``error``
set and every token and cent accounted, so the run records them and goes on. Faults that
will repeat on every call (a missing or rejected key, an unknown model: ``LLMUnavailable``
with ``fatal``) and a budget too small for even one call (``LLMBudgetExceeded``) are
raised when this proposal has spent nothing yet, so the caller can stop the run; once
something was spent they come back as an error proposal with ``meta["fatal"] == "true"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from daedalus import prompts
from daedalus.tools.extract import (
    EditError,
    apply_edits,
    extract_code,
    has_edit_markers,
    parse_edits,
    strip_reasoning,
)
from daedalus.tools.llm import (
    Completion,
    LLMBadReply,
    LLMBudgetExceeded,
    LLMError,
    LLMGateway,
    LLMTimeout,
    LLMUnavailable,
)
from daedalus.tools.proposer import Brief, Proposal

MessageBuilder = Callable[..., list[dict[str, str]]]  # (brief, *, edit_format) -> messages

_DESCRIPTION_CHARS = 400


@dataclass
class _Spent:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0
    cost_known: bool = True

    def add(self, item: Completion | LLMError) -> None:
        self.prompt_tokens += item.prompt_tokens
        self.completion_tokens += item.completion_tokens
        self.cost_usd += item.cost_usd
        if isinstance(item, Completion):
            self.calls += 1
            self.cost_known = self.cost_known and item.cost_known


@dataclass
class _Outcome:
    code: str | None
    edit_format: str
    problem: str = ""
    kind: str = ""
    follow_up: str = ""


class LLMProposer:
    """Implements ``daedalus.tools.proposer.Proposer`` through an ``LLMGateway``."""

    name = "llm"

    def __init__(
        self,
        gateway: LLMGateway,
        *,
        edit_format: str = "full",
        max_edit_retries: int = 2,
        build_messages: MessageBuilder | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        if edit_format not in ("full", "diff"):
            raise ValueError(f"unknown edit format {edit_format!r}: use 'full' or 'diff'")
        if max_edit_retries < 0:
            raise ValueError("max_edit_retries must be 0 or more")
        self.gateway = gateway
        self.edit_format = edit_format
        self.max_edit_retries = max_edit_retries
        self.build_messages = build_messages
        self.max_cost_usd = max_cost_usd

    # -- Proposer protocol -------------------------------------------------------------

    def propose(self, brief: Brief) -> Proposal:
        messages = self._messages(brief)
        first_prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        budget = _tightest(self.max_cost_usd, brief.max_cost_usd)
        spent = _Spent()
        replies: list[str] = []
        problem, kind = "", "no_code"
        for _ in range(self.max_edit_retries + 1):
            remaining = None if budget is None else max(budget - spent.cost_usd, 0.0)
            try:
                completion = self.gateway.complete(messages, max_cost_usd=remaining)
            except LLMError as error:
                spent.add(error)
                fatal = isinstance(error, LLMBudgetExceeded) or (
                    isinstance(error, LLMUnavailable) and error.fatal)
                if fatal and spent.calls == 0:
                    error.prompt_tokens = spent.prompt_tokens
                    error.completion_tokens = spent.completion_tokens
                    error.cost_usd = spent.cost_usd
                    raise
                return self._failed(str(error), _kind(error), spent, replies, first_prompt,
                                    fatal=fatal)
            spent.add(completion)
            replies.append(completion.text)
            outcome = self._read(completion.text, brief.parent.code, program=brief.kind == "program")
            if outcome.code is not None:
                return self._proposal(outcome, completion, spent, replies, first_prompt)
            problem, kind = outcome.problem, outcome.kind
            messages = [*messages, {"role": "assistant", "content": completion.text},
                        {"role": "user", "content": outcome.follow_up}]
        return self._failed(f"{problem} (after {len(replies)} replies)", kind, spent, replies,
                            first_prompt)

    def observe(self, proposal: Proposal, *, parent_score: float, score: float) -> None:
        """Nothing to learn here: the planner's bandit weighs models by reward per cost."""

    # -- helpers -----------------------------------------------------------------------

    def _messages(self, brief: Brief) -> list[dict[str, str]]:
        if self.build_messages is not None:
            messages = list(self.build_messages(brief, edit_format=self.edit_format))
        elif brief.messages:
            messages = [dict(m) for m in brief.messages]
        elif brief.prompt.strip():
            messages = [{"role": "user", "content": brief.prompt}]
        else:
            raise ValueError(
                "the brief has no prompt: pass build_messages=daedalus.agent.profile."
                "build_messages to LLMProposer, or fill Brief.messages or Brief.prompt")
        if not messages:
            raise ValueError("the message builder returned no messages")
        return messages

    def _read(self, reply: str, parent_code: str, *, program: bool = False) -> _Outcome:
        """The program in a reply, or why there is none and what to tell the model."""
        if has_edit_markers(reply) and parent_code.strip():
            edits = parse_edits(reply)
            if not edits:
                return self._edit_problem(
                    "the SEARCH/REPLACE blocks are malformed: each needs a '<<<<<<< SEARCH' "
                    "line, a '=======' line and a '>>>>>>> REPLACE' line", program)
            try:
                return _Outcome(apply_edits(parent_code, edits), "diff")
            except EditError as error:
                # A full program next to broken edits is still a usable answer.
                fallback = extract_code(reply)
                if fallback is not None:
                    return _Outcome(fallback, "full")
                return self._edit_problem(str(error), program)
        code = extract_code(reply)
        if code is not None:
            return _Outcome(code, "full")
        return _Outcome(None, self.edit_format, "the reply contains no program", "no_code",
                        prompts.render("retry_no_code", edit_format=self.edit_format,
                                       program=program))

    def _edit_problem(self, reason: str, program: bool = False) -> _Outcome:
        return _Outcome(None, "diff", f"the edits did not apply: {reason}", "edit_failed",
                        prompts.render("retry_edit", error=reason, program=program))

    def _proposal(self, outcome: _Outcome, completion: Completion, spent: _Spent,
                  replies: list[str], prompt: str) -> Proposal:
        assert outcome.code is not None
        return Proposal(
            code=outcome.code,
            raw=_join(replies),
            model=self.gateway.model,
            proposer=self.name,
            description=_description(completion.text),
            prompt_tokens=spent.prompt_tokens,
            completion_tokens=spent.completion_tokens,
            cost_usd=spent.cost_usd,
            edit_format=outcome.edit_format,
            meta=_meta(spent, replies, prompt, finish_reason=completion.finish_reason),
        )

    def _failed(self, error: str, kind: str, spent: _Spent, replies: list[str], prompt: str,
                *, fatal: bool = False) -> Proposal:
        meta = _meta(spent, replies, prompt, error_kind=kind)
        if fatal:
            meta["fatal"] = "true"
        return Proposal(
            code="", raw=_join(replies), model=self.gateway.model, proposer=self.name,
            prompt_tokens=spent.prompt_tokens, completion_tokens=spent.completion_tokens,
            cost_usd=spent.cost_usd, edit_format=self.edit_format, error=error, meta=meta,
        )


def _tightest(*limits: float | None) -> float | None:
    present = [x for x in limits if x is not None]
    return min(present) if present else None


def _kind(error: LLMError) -> str:
    if isinstance(error, LLMTimeout):
        return "timeout"
    if isinstance(error, LLMBadReply):
        return "bad_reply"
    if isinstance(error, LLMBudgetExceeded):
        return "budget"
    if error.status == 429:
        return "rate_limited"
    if error.status is not None and error.status >= 500:
        return "server_error"
    return "unavailable"


def _join(replies: list[str]) -> str:
    if len(replies) == 1:
        return replies[0]
    return "\n\n".join(f"----- reply {i} -----\n{text}" for i, text in enumerate(replies, 1))


def _meta(spent: _Spent, replies: list[str], prompt: str, **extra: str) -> dict[str, str]:
    meta = {
        "calls": str(spent.calls),
        "replies": str(len(replies)),
        "cost_known": json.dumps(spent.cost_known),
        "prompt": prompt,
    }
    meta.update({k: v for k, v in extra.items() if v})
    return meta


def _description(reply: str) -> str:
    """The model's own summary: the prose before its first code block or edit."""
    text = strip_reasoning(reply)
    cut = len(text)
    for marker in ("```", "~~~", "<<<<<<<"):
        at = text.find(marker)
        if at != -1:
            cut = min(cut, at)
    return " ".join(text[:cut].split())[:_DESCRIPTION_CHARS]
