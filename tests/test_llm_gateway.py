"""The LLM gateway through the real litellm client against the scripted stub server."""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

import pytest

from daedalus.tools.llm import (
    LLMBadReply,
    LLMBudgetExceeded,
    LLMConfig,
    LLMGateway,
    LLMTimeout,
    LLMUnavailable,
    load_litellm,
    warm_litellm,
)
from daedalus.tools.llm_errors import parse_retry_after
from tests.stub_llm import STUB_API_KEY, STUB_KEY_ENV, Reply, StubLLM, ToolCall

HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


class Sleeps:
    """Records backoff delays instead of sleeping, so retry tests are fast and exact."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_completion_accounts_tokens_and_configured_cost(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply("hi there", prompt_tokens=100, completion_tokens=50)])
    config = stub_llm.llm_config(input_cost_per_token=1e-6, output_cost_per_token=2e-6,
                                 temperature=0.3, max_tokens=777)
    done = LLMGateway(config).complete(HELLO)
    assert done.text == "hi there"
    assert (done.prompt_tokens, done.completion_tokens) == (100, 50)
    assert done.cost_usd == pytest.approx(100 * 1e-6 + 50 * 2e-6)
    assert done.cost_known and done.attempts == 1 and done.latency_s > 0
    assert done.model == "openai/stub" and done.finish_reason == "stop"
    request = stub_llm.requests[0]
    assert request["model"] == "stub"
    assert request["messages"] == HELLO
    assert request["temperature"] == 0.3 and request["max_tokens"] == 777
    assert stub_llm.headers[0]["authorization"] == f"Bearer {STUB_API_KEY}"


def test_unknown_model_cost_is_zero_and_flagged(stub_llm: StubLLM) -> None:
    stub_llm.script(["ok"])
    done = LLMGateway(stub_llm.llm_config()).complete(HELLO)
    assert done.cost_usd == 0.0 and not done.cost_known
    assert done.prompt_tokens > 0 and done.completion_tokens > 0


def test_an_unmapped_model_is_looked_up_once_and_stays_unknown(
    stub_llm: StubLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    litellm = load_litellm()
    lookups: list[str] = []
    real = litellm.completion_cost

    def counted(*args: Any, **kwargs: Any) -> Any:
        lookups.append(str(kwargs.get("model")))
        return real(*args, **kwargs)

    monkeypatch.setattr(litellm, "completion_cost", counted)
    stub_llm.script(["one", "two", "three"])
    gateway = LLMGateway(stub_llm.llm_config())
    done = [gateway.complete(HELLO) for _ in range(3)]
    assert [d.text for d in done] == ["one", "two", "three"]
    assert all(d.cost_usd == 0.0 and not d.cost_known for d in done)
    assert lookups == ["openai/stub"]  # the first reply taught the gateway: no price


def test_warm_up_imports_the_first_call_s_modules_and_sends_nothing(stub_llm: StubLLM) -> None:
    warm_litellm()
    assert "openai.resources.chat" in sys.modules
    assert stub_llm.requests == []
    stub_llm.script(["warm"])
    assert LLMGateway(stub_llm.llm_config()).complete(HELLO).text == "warm"


def test_litellm_price_map_is_used_for_known_models(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply("ok", prompt_tokens=1000, completion_tokens=100)])
    gateway = LLMGateway(stub_llm.llm_config(model="openai/gpt-4o"))
    prices = gateway.prices()
    assert prices is not None and prices[0] > 0 and prices[1] > 0
    done = gateway.complete(HELLO)
    assert done.cost_known
    assert done.cost_usd == pytest.approx(1000 * prices[0] + 100 * prices[1])


def test_retries_429_and_500_then_succeeds_respecting_retry_after(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.rate_limited(retry_after=0.25), Reply.server_error(503), "finally"])
    sleeps = Sleeps()
    config = stub_llm.llm_config(max_retries=3, backoff_base_s=0.4, backoff_max_s=5)
    done = LLMGateway(config, sleep=sleeps).complete(HELLO)
    assert done.text == "finally" and done.attempts == 3
    assert len(stub_llm.requests) == 3
    assert sleeps.delays[0] == pytest.approx(0.25)  # Retry-After wins over the backoff
    assert 0.4 <= sleeps.delays[1] <= 0.8  # second attempt: jitter in [base, 2 * base] / ...


def test_backoff_grows_exponentially_with_jitter_and_is_capped(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.server_error()] * 5 + ["ok"])
    sleeps = Sleeps()
    config = stub_llm.llm_config(max_retries=5, backoff_base_s=1.0, backoff_max_s=6.0)
    assert LLMGateway(config, sleep=sleeps).complete(HELLO).attempts == 6
    for attempt, delay in enumerate(sleeps.delays, start=1):
        ceiling = min(6.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_server_errors_exhaust_retries(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.server_error()] * 3)
    with pytest.raises(LLMUnavailable) as info:
        LLMGateway(stub_llm.llm_config(max_retries=2), sleep=Sleeps()).complete(HELLO)
    error = info.value
    assert error.status == 500 and error.attempts == 3 and not error.fatal
    assert "HTTP 500" in str(error)
    assert len(stub_llm.requests) == 3 and stub_llm.overruns == 0


def test_rate_limit_exhausts_retries_with_a_fix_in_the_message(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.rate_limited(retry_after=None)] * 2)
    with pytest.raises(LLMUnavailable, match=r"rate limited.*--workers") as info:
        LLMGateway(stub_llm.llm_config(max_retries=1), sleep=Sleeps()).complete(HELLO)
    assert info.value.status == 429


def test_timeout_is_retried_then_raised_within_bounded_time(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.slow(5.0)] * 3)
    config = stub_llm.llm_config(timeout_s=0.3, max_retries=2, backoff_base_s=0.05,
                                 backoff_max_s=0.05)
    started = time.monotonic()
    with pytest.raises(LLMTimeout) as info:
        LLMGateway(config).complete(HELLO)
    elapsed = time.monotonic() - started
    assert info.value.attempts == 3
    assert len(stub_llm.requests) == 3
    assert 0.9 <= elapsed < 3.5, elapsed  # three 0.3 s attempts plus small backoffs


def test_malformed_reply_is_retried_then_typed(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.malformed(), "recovered"])
    done = LLMGateway(stub_llm.llm_config(), sleep=Sleeps()).complete(HELLO)
    assert done.text == "recovered" and done.attempts == 2
    stub_llm.script([Reply.malformed()] * 3)
    with pytest.raises(LLMBadReply, match="malformed"):
        LLMGateway(stub_llm.llm_config(max_retries=2), sleep=Sleeps()).complete(HELLO)


def test_rejected_key_is_fatal_not_retried_and_names_the_variable(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply.auth_error(), "never sent"])
    with pytest.raises(LLMUnavailable) as info:
        LLMGateway(stub_llm.llm_config(max_retries=3), sleep=Sleeps()).complete(HELLO)
    assert info.value.fatal and info.value.status == 401
    assert STUB_KEY_ENV in str(info.value)
    assert len(stub_llm.requests) == 1


def test_missing_key_fails_before_any_request(stub_llm: StubLLM,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STUB_KEY_ENV)
    with pytest.raises(LLMUnavailable, match=f"set {STUB_KEY_ENV}") as info:
        LLMGateway(stub_llm.llm_config()).complete(HELLO)
    assert info.value.fatal and stub_llm.requests == []
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LLMUnavailable, match=r"OPENAI_API_KEY.*--api-base"):
        LLMGateway(LLMConfig(model="gpt-4o")).check()


def test_local_server_without_key_gets_a_placeholder(stub_llm: StubLLM,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stub_llm.script(["ok"])
    config = stub_llm.llm_config(api_key_env=None)
    assert LLMGateway(config).complete(HELLO).text == "ok"
    assert stub_llm.headers[0]["authorization"] == "Bearer sk-no-key-required"


def test_unreachable_server_is_unavailable_and_names_the_address() -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMConfig(model="openai/stub", api_base=f"http://127.0.0.1:{port}/v1",
                       max_retries=1, backoff_base_s=0.01, timeout_s=5)
    sleeps = Sleeps()
    with pytest.raises(LLMUnavailable, match=f"cannot reach http://127.0.0.1:{port}/v1") as info:
        LLMGateway(config, sleep=sleeps).complete(HELLO)
    assert info.value.attempts == 2 and len(sleeps.delays) == 1 and not info.value.fatal


def test_budget_guard_refuses_unaffordable_calls_without_sending(stub_llm: StubLLM) -> None:
    config = stub_llm.llm_config(input_cost_per_token=1e-3, output_cost_per_token=1e-3)
    with pytest.raises(LLMBudgetExceeded, match="--budget-usd"):
        LLMGateway(config).complete(HELLO, max_cost_usd=0.01)
    assert stub_llm.requests == []


def test_budget_guard_caps_max_tokens_so_the_worst_case_fits(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply("ok", prompt_tokens=20, completion_tokens=5)])
    config = stub_llm.llm_config(input_cost_per_token=1e-4, output_cost_per_token=1e-3,
                                 max_tokens=4096)
    budget = 0.5
    done = LLMGateway(config).complete(HELLO, max_cost_usd=budget)
    sent = stub_llm.requests[0]["max_tokens"]
    assert 64 <= sent < 500  # 0.5 USD buys < 500 reply tokens at 1e-3
    # The worst case (the estimated prompt plus a full-length reply) stays within budget.
    assert 20 * 1e-4 + sent * 1e-3 <= budget
    assert done.cost_usd <= budget


def test_streaming_delivers_deltas_and_usage(stub_llm: StubLLM) -> None:
    text = "streamed " * 12
    stub_llm.script([Reply(text, prompt_tokens=30, completion_tokens=24)])
    deltas: list[str] = []
    config = stub_llm.llm_config(input_cost_per_token=1e-6, output_cost_per_token=1e-6)
    done = LLMGateway(config).complete(HELLO, on_delta=deltas.append)
    assert len(deltas) > 1 and "".join(deltas) == text == done.text
    assert (done.prompt_tokens, done.completion_tokens) == (30, 24)
    assert stub_llm.requests[0]["stream"] is True


def test_tool_calls_come_back_structured(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply(tool_calls=[ToolCall("list_runs", {"limit": 3})])])
    tools = [{"type": "function", "function": {
        "name": "list_runs", "description": "list runs",
        "parameters": {"type": "object", "properties": {"limit": {"type": "integer"}}}}}]
    done = LLMGateway(stub_llm.llm_config()).complete(HELLO, tools=tools)
    assert done.finish_reason == "tool_calls"
    assert done.tool_calls[0]["name"] == "list_runs"
    assert done.tool_calls[0]["arguments"] == '{"limit": 3}'
    assert stub_llm.requests[0]["tools"][0]["function"]["name"] == "list_runs"


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAEDALUS_MODEL", raising=False)
    with pytest.raises(LLMUnavailable, match="--model"):
        LLMConfig.from_env()
    monkeypatch.setenv("DAEDALUS_MODEL", "anthropic/claude-x")
    monkeypatch.setenv("DAEDALUS_API_BASE", "http://127.0.0.1:9/v1")
    config = LLMConfig.from_env(timeout_s=5.0, api_base=None)
    assert config.model == "anthropic/claude-x" and config.timeout_s == 5.0
    assert config.api_base == "http://127.0.0.1:9/v1"
    assert LLMConfig.from_env(model="openai/local").model == "openai/local"


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    delay = parse_retry_after({"retry-after": future})
    assert delay is not None and 25 <= delay <= 31


def test_stream_broken_after_text_was_shown_is_not_retried(stub_llm: StubLLM) -> None:
    stub_llm.script([Reply("partial answer " * 8, stream_abort_after=3), "must not be sent"])
    deltas: list[str] = []
    with pytest.raises((LLMUnavailable, LLMBadReply)):
        LLMGateway(stub_llm.llm_config(max_retries=3), sleep=Sleeps()).complete(
            HELLO, on_delta=deltas.append)
    assert deltas and len(stub_llm.requests) == 1
