"""Shared pytest fixtures. Each area adds its own fixtures below; keep them independent."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daedalus.archive.db import Archive, open_archive
from tests.postgres_db import fresh_database
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


# --- archive databases (issue 9): archive tests run on SQLite and on PostgreSQL ---


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty archive database URL: a SQLite file, then a fresh PostgreSQL database.

    The PostgreSQL case needs ``DAEDALUS_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` sets one up)
    and is skipped with that fix named when it is unset.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'archive.db'}"
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def archive(archive_url: str) -> Iterator[Archive]:
    """An open archive on ``archive_url`` (SQLite, then PostgreSQL); modules may override."""
    arch = open_archive(archive_url)
    yield arch
    arch.close()


# --- sandbox build cache ---


@pytest.fixture
def private_cache() -> Iterator[Path]:
    """A build cache of the test's own, so a test can plant or leave build state (torch's
    build lock of a killed build) without touching the machine's shared cache. Under /tmp:
    the sandbox user must reach it, which pytest's private tmp_path does not allow."""
    path = Path(f"/tmp/daedalus-test-cache-{uuid.uuid4().hex[:8]}")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- torch global state ---


@pytest.fixture(autouse=True)
def _restore_grad_mode() -> Iterator[None]:
    """The harness turns autograd off globally (right in a sandbox child, whose whole life is
    one evaluation); tests that call it in-process must not leak that to later tests."""
    torch = sys.modules.get("torch")
    enabled = torch.is_grad_enabled() if torch is not None else True
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_grad_enabled(enabled)
