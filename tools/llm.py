"""The LLM gateway: one way to call any chat model, through litellm.

litellm turns a model string into a provider call (``gpt-4o``, ``anthropic/claude-...``,
``openai/<name>`` + ``api_base`` for vLLM, Ollama or llama.cpp), so the rest of Daedalus
never sees a provider SDK. This module adds what a long unattended run needs on top:
timeouts, retries with exponential backoff and jitter (429, 5xx, timeouts, dropped
connections; ``Retry-After`` respected), per-call token and USD accounting, a budget
guard, and errors split by who caused them:

- ``LLMUnavailable``: configuration, credentials, network or provider trouble; the
  message names the fix. ``fatal`` says whether trying again later can help.
- ``LLMTimeout``: the model did not answer within ``timeout_s``, on every attempt.
- ``LLMBadReply``: the provider answered with something unusable.
- ``LLMBudgetExceeded``: the call could cost more than the caller allows.

litellm is imported lazily (it takes seconds) and configured so that it contacts
nothing but the provider: no telemetry, no callbacks, the bundled cost map and
tokenizers instead of downloads.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from daedalus.tools.llm_errors import (
    LLMBadReply,
    LLMBudgetExceeded,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    classify,
    missing_key_error,
)

__all__ = [
    "Completion",
    "LLMBadReply",
    "LLMBudgetExceeded",
    "LLMConfig",
    "LLMError",
    "LLMGateway",
    "LLMTimeout",
    "LLMUnavailable",
    "Message",
    "load_litellm",
    "warm_litellm",
]

Message = dict[str, Any]

# Environment switches that keep litellm from fetching its maps and lists at import.
_OFFLINE_ENV = (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_BLOG_POSTS",
    "LITELLM_LOCAL_POLICY_TEMPLATES",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS",
)
# Local servers ignore the key, but the OpenAI client refuses to send a request without one.
_PLACEHOLDER_KEY = "sk-no-key-required"
# The prompt estimate uses a GPT tokenizer; other tokenizers differ, so leave headroom.
_PROMPT_MARGIN = 1.25
_MIN_REPLY_TOKENS = 64


class LLMConfig(BaseModel):
    """How to reach one model. Keys are never stored here, only the name of their variable."""

    model: str = Field(min_length=1, description="litellm model string, e.g. 'gpt-4o'")
    api_base: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    temperature: float | None = 0.7
    max_tokens: int | None = Field(default=4096, gt=0)
    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    extra: dict[str, Any] = Field(default_factory=dict)  # passed to litellm as is

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """Overrides (CLI flags, config file) first, then ``DAEDALUS_MODEL`` and friends."""
        env = {
            "model": "DAEDALUS_MODEL",
            "api_base": "DAEDALUS_API_BASE",
            "api_key_env": "DAEDALUS_API_KEY_ENV",
        }
        values = {k: v for k, v in overrides.items() if v is not None}
        for key, var in env.items():
            if key not in values and os.environ.get(var):
                values[key] = os.environ[var]
        if not values.get("model"):
            raise LLMUnavailable(
                "no LLM is configured: pass --model (e.g. --model gpt-4o with OPENAI_API_KEY "
                "set), set DAEDALUS_MODEL, or point --api-base at a local OpenAI-compatible "
                "server with --model openai/<served-name>",
                fatal=True,
            )
        return cls(**values)


@dataclass
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 1
    cost_known: bool = True
    finish_reason: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


_litellm: Any = None


def load_litellm() -> Any:
    """Import litellm offline and quiet. Import it only through this, before anything else does."""
    global _litellm
    if _litellm is None:
        for var in _OFFLINE_ENV:
            os.environ[var] = "True"  # forced: no download, whatever the environment says
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True  # it prints "Give Feedback" banners to stdout
        litellm.drop_params = True  # e.g. temperature on models that reject it
        litellm.num_retries = None  # retries are ours, with backoff and accounting
        for name in ("callbacks", "success_callback", "failure_callback",
                     "_async_success_callback", "_async_failure_callback"):
            if isinstance(getattr(litellm, name, None), list):
                setattr(litellm, name, [])
        _litellm = litellm
    return _litellm


def warm_litellm() -> None:
    """Load litellm and what its first completion would import (openai's client resources
    and litellm's proxy types: about 0.4 s of CPU here), so a background thread pays for it
    instead of the first request. Builds a client object; sends nothing."""
    import importlib

    load_litellm()
    import openai

    client = openai.OpenAI(api_key=_PLACEHOLDER_KEY, base_url="http://127.0.0.1:9/v1")
    try:
        client.chat.completions  # noqa: B018  (the attribute imports the resource modules)
    finally:
        client.close()
    for name in ("litellm.proxy._types", "litellm._service_logger"):
        # Another litellm version may not have them: its first call imports what it needs.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


class LLMGateway:
    """Calls one configured model. Thread-safe: it holds no per-call state (only whether
    litellm can price the model, learnt once)."""

    def __init__(self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._unpriced = False  # litellm has no price for this model (learnt once)

    @property
    def model(self) -> str:
        return self.config.model

    # -- public ------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ``LLMUnavailable`` naming the fix when the configuration cannot work."""
        self._api_key()

    def complete(
        self,
        messages: Sequence[Message],
        *,
        max_cost_usd: float | None = None,
        tools: list[dict[str, Any]] | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Completion:
        """One chat completion with retries. ``on_delta`` streams text as it arrives."""
        litellm = load_litellm()
        if not messages:
            raise ValueError("complete() needs at least one message")
        api_key = self._api_key()
        max_tokens = self._affordable_max_tokens(list(messages), max_cost_usd)
        kwargs: dict[str, Any] = {
            **self.config.extra,
            "model": self.config.model,
            "messages": list(messages),
            "timeout": self.config.timeout_s,
            "num_retries": 0,
            "max_retries": 0,  # the OpenAI SDK retries on its own otherwise
        }
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if api_key is not None:
            kwargs["api_key"] = api_key
        if self.config.temperature is not None:
            kwargs["temperature"] = self.config.temperature
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if tools:
            kwargs["tools"] = tools
            # litellm routes tool calls through its MCP proxy layer unless told not to,
            # which needs the optional `mcp` package and is of no use for plain tools.
            kwargs["_skip_mcp_handler"] = True
        if on_delta is not None:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}

        delivered: list[str] = []

        def sink(text: str) -> None:
            delivered.append(text)
            if on_delta is not None:
                on_delta(text)

        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = litellm.completion(**kwargs)
                if on_delta is not None:
                    response = _collect_stream(litellm, response, sink, kwargs["messages"])
                return self._completion(litellm, response, attempt, time.monotonic() - started)
            except LLMError as error:
                error.attempts = attempt
                raise
            except Exception as exc:
                typed = classify(exc, self.config, attempt)
                if typed is None:
                    raise  # not a provider error: a bug here or in litellm, keep the trace
                # Once text reached the caller, a retry would show it twice: stop here.
                if not typed.retryable or attempt > self.config.max_retries or delivered:
                    raise typed from exc
                self._sleep(self._backoff(attempt, typed.retry_after_s))

    # -- helpers -----------------------------------------------------------------------

    def _api_key(self) -> str | None:
        """The key to send, or None to let litellm read the provider's usual variable."""
        cfg = self.config
        if cfg.api_key_env:
            value = os.environ.get(cfg.api_key_env)
            if not value:
                raise missing_key_error(cfg, [cfg.api_key_env])
            return value
        missing = load_litellm().validate_environment(cfg.model, api_base=cfg.api_base)
        missing_keys = [k for k in missing.get("missing_keys", []) if k.endswith("_API_KEY")]
        if missing_keys and not missing.get("keys_in_environment"):
            if cfg.api_base:
                return _PLACEHOLDER_KEY
            raise missing_key_error(cfg, missing_keys)
        return None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        cap = self.config.backoff_max_s
        if retry_after is not None:
            return min(max(retry_after, 0.0), cap)
        # Jitter keeps many workers from retrying in lockstep against the same provider.
        ceiling = min(cap, self.config.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def prices(self) -> tuple[float, float] | None:
        """(input, output) USD per token: configured overrides, else litellm's map."""
        cfg = self.config
        if cfg.input_cost_per_token is not None or cfg.output_cost_per_token is not None:
            return (cfg.input_cost_per_token or 0.0, cfg.output_cost_per_token or 0.0)
        litellm = load_litellm()
        try:
            info = litellm.get_model_info(cfg.model)
        except Exception:  # litellm raises several unrelated types for unmapped models
            return None
        cost_in, cost_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        if cost_in is None or cost_out is None:
            return None
        return (float(cost_in), float(cost_out))

    def _affordable_max_tokens(self, messages: list[Message], budget: float | None) -> int | None:
        """Cap the reply length so that the worst case stays within ``budget``."""
        limit = self.config.max_tokens
        if budget is None:
            return limit
        prices = self.prices()
        if prices is None:
            return limit  # unknown cost: nothing to enforce; the completion says cost_known=False
        cost_in, cost_out = prices
        prompt_cost = _estimate_prompt_tokens(messages) * _PROMPT_MARGIN * cost_in
        if cost_out <= 0:
            if prompt_cost > budget:
                raise _budget_error(prompt_cost, budget)
            return limit
        affordable = int((budget - prompt_cost) / cost_out)
        if affordable < _MIN_REPLY_TOKENS:
            raise _budget_error(prompt_cost + _MIN_REPLY_TOKENS * cost_out, budget)
        return affordable if limit is None else min(limit, affordable)

    def _completion(self, litellm: Any, response: Any, attempts: int, latency: float) -> Completion:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise LLMBadReply(f"{self.config.model} returned a reply without choices",
                              attempts=attempts)
        message = choices[0].message
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cost, known = self._cost(litellm, response, prompt_tokens, completion_tokens)
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in (getattr(message, "tool_calls", None) or [])
        ]
        return Completion(
            text=message.content or "", model=self.config.model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, cost_usd=cost, latency_s=latency,
            attempts=attempts, cost_known=known, finish_reason=choices[0].finish_reason or "",
            tool_calls=calls,
        )

    def _cost(self, litellm: Any, response: Any, prompt: int, completion: int) -> tuple[float, bool]:
        cfg = self.config
        if cfg.input_cost_per_token is not None or cfg.output_cost_per_token is not None:
            cost = prompt * (cfg.input_cost_per_token or 0.0)
            return cost + completion * (cfg.output_cost_per_token or 0.0), True
        # litellm prices every reply while logging it; reuse that instead of pricing it again.
        priced = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        if isinstance(priced, int | float) and not isinstance(priced, bool):
            return float(priced), True
        if self._unpriced:
            return 0.0, False
        try:
            return float(litellm.completion_cost(completion_response=response,
                                                 model=cfg.model)), True
        except Exception:  # unmapped model: several exception types; the cost is unknown
            self._unpriced = True  # the model stays unmapped: do not look it up every call
            return 0.0, False


def _budget_error(needed: float, budget: float) -> LLMBudgetExceeded:
    return LLMBudgetExceeded(
        f"this LLM call could cost about ${needed:.4f} but only ${budget:.4f} of the budget "
        "is left: raise --budget-usd, shorten the prompt, or stop the run",
        attempts=0,
    )


def _estimate_prompt_tokens(messages: list[Message]) -> int:
    """An offline token estimate (litellm's bundled cl100k tokenizer; 3 chars a token else)."""
    text = "\n".join(str(m.get("content") or "") for m in messages)
    try:
        from litellm.litellm_core_utils.default_encoding import encoding

        count = len(encoding.encode(text, disallowed_special=()))
    except (ImportError, AttributeError):
        count = len(text) // 3 + 1
    return count + 4 * len(messages)


def _collect_stream(litellm: Any, stream: Any, on_delta: Callable[[str], None],
                    messages: list[Message]) -> Any:
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        for choice in getattr(chunk, "choices", None) or []:
            text = getattr(choice.delta, "content", None)
            if text:
                on_delta(text)
    if not chunks:
        raise LLMBadReply("the model's stream ended before any data arrived")
    return litellm.stream_chunk_builder(chunks, messages=messages)
