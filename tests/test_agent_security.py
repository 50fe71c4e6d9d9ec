"""The agent's redaction of credentials from stored and shown text."""

from __future__ import annotations

import pytest

from daedalus.agent.security import redact


@pytest.mark.parametrize("secret", [
    "sk-abcdefghijklmnop1234",
    "ghp_abcdefghijklmnopqrstuvwxyz",
    "github_pat_abcdefghijklmnopqrstuvwxyz",
    "AKIAABCDEFGHIJKLMNOP",
])
def test_key_shapes_are_redacted(secret: str) -> None:
    assert redact(f"key: {secret} end") == "key: [redacted] end"


@pytest.mark.parametrize("header", ["Authorization: Bearer", "AUTHORIZATION: BEARER", "authorization:bearer "])
def test_bearer_tokens_are_redacted_in_any_case(header: str) -> None:
    assert redact(f"{header} abcdefghijklmnop") == f"{header} [redacted]"


def test_secret_environment_values_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "hunter2hunter2")
    assert redact("the key is hunter2hunter2.") == "the key is [redacted]."


def test_text_without_secrets_is_unchanged() -> None:
    text = "task-sk and AKIA short, bearer of news; sk-short"
    assert redact(text) == text
