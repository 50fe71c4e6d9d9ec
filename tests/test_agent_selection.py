"""Parent selection against a real archive: exhausted (arm, mode, parent) combinations."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from daedalus.agent import planning
from daedalus.agent.config import RunConfig
from daedalus.agent.selection import Selector
from daedalus.archive import store
from daedalus.archive.db import Archive, open_archive
from daedalus.tasks import load_task

BUILTIN = planning.Arm("builtin", "builtin")


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    arch = open_archive(f"sqlite:///{tmp_path / 'archive.db'}")
    yield arch
    arch.close()


def _scored(archive: Archive, run_id: str, name: str, score: float, status: str = "ok") -> str:
    with archive.session() as s, s.begin():
        cid = store.add_candidate(s, run_id=run_id, candidate_id=name, code=f"class ModelNew: {name}",
                                  code_hash=name, mode="seed" if name == "seed" else "improve").id
        store.record_evaluation(s, candidate_id=cid, status=status, correct=status == "ok",
                                score=score if status == "ok" else 0.0, backend="cpu", sandbox="process")
        return cid


def _setup(archive: Archive, arms: list[planning.Arm]) -> tuple[str, Selector, planning.Bandit]:
    with archive.session() as s, s.begin():
        run_id = store.create_run(s, task="swish_scale").id
    for name, score in (("seed", 1.0), ("best", 2.0), ("second", 1.5)):
        _scored(archive, run_id, name, score)
    rng = random.Random(3)
    config = RunConfig(task="swish_scale", islands=1, exploit=1.0, explore=0.0, random=0.0)
    selector = Selector(run_id=run_id, config=config, task=load_task("swish_scale"), rng=rng)
    return run_id, selector, planning.Bandit(arms, rng)


def _plans(archive: Archive, selector: Selector, bandit: planning.Bandit, n: int = 40) -> list[planning.Plan | None]:
    with archive.session(readonly=True) as s:
        return [selector.choose(s, i, recorded=0, waiting=False, bandit=bandit) for i in range(n)]


def test_the_planner_never_draws_a_parent_the_proposer_said_is_exhausted(archive: Archive) -> None:
    _, selector, bandit = _setup(archive, [BUILTIN])
    before = _plans(archive, selector, bandit)
    assert {p.parent_id for p in before if p} == {"best"}  # exploit: always the best of three
    for mode in ("improve", "crossover"):
        selector.mark_exhausted(BUILTIN.key, mode, "best")
    after = [p for p in _plans(archive, selector, bandit) if p is not None]
    assert len(after) == 40 and not selector.dry
    assert all(not selector.is_exhausted(p.arm.key, p.mode, p.parent_id) for p in after)
    # the next best parent in the same mode, or "best" in a mode it still has something for
    assert {(p.mode, p.parent_id) for p in after} <= {("improve", "second"), ("crossover", "second"),
                                                      ("explore", "best")}
    assert ("improve", "second") in {(p.mode, p.parent_id) for p in after}
    # "random" is improve with another parent draw: exhausted with it
    assert selector.is_exhausted(BUILTIN.key, "random", "best")


def test_when_every_combination_is_exhausted_the_selector_runs_dry(archive: Archive) -> None:
    run_id, selector, bandit = _setup(archive, [BUILTIN])
    _scored(archive, run_id, "broken", 0.0, status="runtime_error")
    for parent in ("seed", "best", "second"):
        for mode in ("improve", "explore", "crossover"):
            selector.mark_exhausted(BUILTIN.key, mode, parent)
    plans = _plans(archive, selector, bandit, n=10)
    assert plans and all(p is not None and (p.mode, p.parent_id) == ("fix", "broken") for p in plans)
    selector.mark_exhausted(BUILTIN.key, "fix", "broken")
    assert _plans(archive, selector, bandit, n=3) == [None, None, None]
    assert selector.dry


def test_an_llm_arm_takes_over_what_the_builtin_proposer_exhausted(archive: Archive) -> None:
    llm = planning.Arm("llm", "openai/stub")
    _, selector, bandit = _setup(archive, [BUILTIN, llm])
    for parent in ("seed", "best", "second"):
        for mode in ("improve", "explore", "crossover", "fix"):
            selector.mark_exhausted(BUILTIN.key, mode, parent)
    plans = _plans(archive, selector, bandit, n=10)
    assert all(p is not None and p.arm == llm for p in plans) and not selector.dry
