"""``daedalus run`` keeps the cyclic garbage collector off while its imports load, then
freezes what they left and turns it back on; a command that fails early turns it back on
too (tests and other in-process callers must not be left without it)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import typer

from daedalus.agent.cli_run import run_command
from daedalus.agent.launch import _import_in_background


@pytest.fixture
def collector() -> Iterator[None]:
    was = gc.isenabled()
    yield
    gc.unfreeze()
    if was:
        gc.enable()


def test_a_failing_run_command_turns_the_collector_back_on(collector: None) -> None:
    gc.enable()
    with pytest.raises(typer.Exit):
        run_command(task=None, iterations=None, workers=None, lookahead=None, proposer=None,
                    model=None, api_base=None, budget_usd=None, time_limit=None,
                    device_seconds=None, target_score=None, backend=None, sandbox=None,
                    executor=None, ray_address=None, threads=None, timeout=None,
                    compile_timeout=None, seed=None, sets=None, config_file=None,
                    resume="no-such-run-id", as_json=True)  # fmt: skip
    assert gc.isenabled()


def test_the_import_thread_freezes_the_imports_and_turns_the_collector_on(collector: None) -> None:
    gc.unfreeze()
    gc.disable()  # as run_command leaves it
    thread = _import_in_background(llm=False)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 10_000  # the interpreter's and LangGraph's objects
