"""Typed LLM errors, split by who caused them, and the mapping from provider exceptions.

litellm raises subclasses of the OpenAI SDK's exceptions for every provider, so the
mapping keys on those base classes and on HTTP status codes, never on provider names.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any, Protocol


class LLMConfig(Protocol):
    """The part of ``daedalus.tools.llm.LLMConfig`` that error messages need."""

    model: str
    api_base: str | None
    api_key_env: str | None
    timeout_s: float


class LLMError(Exception):
    """Base of every gateway error. Carries what the failed call(s) still cost."""

    retryable = False

    def __init__(self, message: str, *, attempts: int = 1, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.retry_after_s = retry_after_s
        # Callers that made several calls (edit retries) add what the earlier ones cost.
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0


class LLMUnavailable(LLMError):
    """Configuration, credentials, network or provider trouble. The message names the fix.

    ``fatal`` errors (a missing or rejected key, an unknown model) will fail the same way
    on every later call; the others (rate limits, 5xx, an unreachable server) may pass.
    """

    def __init__(self, message: str, *, fatal: bool = False, retryable: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.fatal = fatal
        self.retryable = retryable


class LLMTimeout(LLMError):
    """The model did not answer in time."""

    retryable = True


class LLMBadReply(LLMError):
    """The provider answered, but with something unusable (malformed body, no choices)."""

    def __init__(self, message: str, *, retryable: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable


class LLMBudgetExceeded(LLMError):
    """The call could cost more than the caller allows; nothing was sent."""


def missing_key_error(config: LLMConfig, names: list[str]) -> LLMUnavailable:
    wanted = " or ".join(names)
    return LLMUnavailable(
        f"no API key for model {config.model!r}: set {wanted} in the environment"
        + ("" if config.api_base else
           ", or use --api-base with a local OpenAI-compatible server (vLLM, Ollama, "
           "llama.cpp) and --model openai/<served-name>"),
        fatal=True, attempts=0,
    )


def _key_hint(config: LLMConfig) -> str:
    if config.api_key_env:
        return config.api_key_env
    from daedalus.tools.llm import load_litellm

    found = load_litellm().validate_environment(config.model, api_base=config.api_base)
    names = [k for k in found.get("missing_keys", []) if k.endswith("_API_KEY")]
    if names:
        return " or ".join(names)
    provider = config.model.split("/", 1)[0].upper() if "/" in config.model else "OPENAI"
    return f"{provider}_API_KEY"


def _where(config: LLMConfig) -> str:
    return config.api_base or "the provider"


def classify(exc: Exception, config: LLMConfig, attempt: int) -> LLMError | None:
    """Turn a provider exception into a typed error, or None when it is not one."""
    import openai

    if not isinstance(exc, openai.OpenAIError):
        return None
    status = getattr(exc, "status_code", None)
    detail = _short(str(exc))
    common: dict[str, Any] = {"attempts": attempt, "status": status}
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeout(
            f"{config.model} did not answer within {config.timeout_s:g} s ({attempt} attempt(s)): "
            "raise timeout_s, lower max_tokens, or check the server's load", **common)
    if isinstance(exc, openai.APIConnectionError) or _caused_by_connection(exc, detail):
        return LLMUnavailable(
            f"cannot reach {_where(config)} for {config.model}: {detail}. Check the network, "
            "that the server is running, and --api-base", retryable=True, **common)
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMUnavailable(
            f"{_where(config)} rejected the API key for {config.model} (HTTP {status}): "
            f"set {_key_hint(config)} to a valid key with access to this model",
            fatal=True, **common)
    if isinstance(exc, openai.RateLimitError):
        return LLMUnavailable(
            f"{config.model} is rate limited (HTTP 429) after {attempt} attempt(s): lower "
            "--workers, wait, or raise max_retries", retryable=True,
            retry_after_s=_retry_after(exc), **common)
    if _is_malformed(exc, detail):
        return LLMBadReply(f"{config.model} sent a malformed reply: {detail}", retryable=True,
                           **common)
    if isinstance(exc, openai.NotFoundError):
        return LLMUnavailable(
            f"{_where(config)} does not know model {config.model!r} (HTTP 404): check the "
            "model string (litellm format, e.g. 'openai/<served-name>' for local servers)",
            fatal=True, **common)
    if status is not None and (status >= 500 or status in (408, 409)):
        return LLMUnavailable(
            f"{_where(config)} failed with HTTP {status} after {attempt} attempt(s): {detail}. "
            "It is the provider's side; retry later", retryable=True,
            retry_after_s=_retry_after(exc), **common)
    if _is_context_overflow(exc):
        return LLMUnavailable(
            f"the prompt is too long for {config.model}: {detail}. Use fewer inspirations or "
            "a model with a larger context window", **common)
    return LLMUnavailable(
        f"{_where(config)} rejected the request to {config.model} (HTTP {status}): {detail}. "
        "Check the model string and the parameters in the LLM configuration",
        fatal=True, **common)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _caused_by_connection(exc: BaseException, detail: str) -> bool:
    # litellm re-raises some connection failures as a 500; the original stays in the chain.
    import httpx
    import openai

    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, openai.APIConnectionError | httpx.ConnectError | ConnectionError):
            return not isinstance(seen, openai.APITimeoutError)
        seen = seen.__cause__ or seen.__context__
    return "Connection error" in detail


def _is_malformed(exc: Exception, detail: str) -> bool:
    # litellm reports an unparseable 200 body as a 500 whose text quotes the raw response.
    return "Received response" in detail or "Empty or invalid response" in detail


def _is_context_overflow(exc: Exception) -> bool:
    try:
        from litellm.exceptions import ContextWindowExceededError
    except ImportError:
        return False
    return isinstance(exc, ContextWindowExceededError)


def _retry_after(exc: Exception) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    return parse_retry_after(headers)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``."""
    if headers is None:
        return None
    try:
        value = headers.get("retry-after-ms")
        if value:
            return float(value) / 1000.0
        value = headers.get("retry-after")
    except (AttributeError, ValueError):
        return None
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
