"""Shared pytest fixtures. Each area adds its own fixtures below; keep them independent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stub_llm import STUB_API_KEY, STUB_KEY_ENV, StubLLM

# --- stub LLM (tests/stub_llm.py): a scripted OpenAI-compatible server on 127.0.0.1 ---


@pytest.fixture
def stub_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubLLM]:
    """A running stub LLM with an empty script; its dummy key is in the environment.

    ``stub_llm.script([...])`` or ``stub_llm.push(...)`` sets the replies and
    ``stub_llm.llm_config()`` gives an ``LLMConfig`` for model ``openai/stub`` pointing at it.
    """
    monkeypatch.setenv(STUB_KEY_ENV, STUB_API_KEY)
    with StubLLM() as stub:
        yield stub
