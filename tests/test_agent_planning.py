"""Planning decisions that need no archive: stopping, modes, MAP-Elites features, the bandit."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from daedalus.agent import planning
from daedalus.agent.config import RunConfig


def _stop(config: RunConfig, **kw: object) -> str | None:
    base: dict[str, object] = dict(
        iterations=0, cost_usd=0.0, device_seconds=0.0, elapsed_s=0.0, best_score=None, interrupted=False
    )
    base.update(kw)
    return planning.stop_reason(config, **base)  # type: ignore[arg-type]


def test_every_budget_stops_the_run() -> None:
    config = RunConfig(task="t", iterations=5, budget_usd=1.0, device_seconds=10, time_limit_s=60, target_score=2.0)
    assert _stop(config) is None
    assert "iteration" in (_stop(config, iterations=5) or "")
    assert "USD" in (_stop(config, cost_usd=1.0) or "")
    assert "device" in (_stop(config, device_seconds=10.0) or "")
    assert "time" in (_stop(config, elapsed_s=61.0) or "")
    assert "target" in (_stop(config, best_score=2.5) or "")
    assert _stop(config, interrupted=True) == "interrupted"


def test_mode_mix_follows_the_configured_ratios() -> None:
    config = RunConfig(task="t", exploit=0.7, explore=0.2, random=0.1)
    rng = random.Random(1)
    modes = Counter(planning.choose_mode(rng, config, have_failures=False, ok_count=1) for _ in range(5000))
    assert set(modes) == {"improve", "explore", "random"}
    assert 0.65 < modes["improve"] / 5000 < 0.75
    assert 0.15 < modes["explore"] / 5000 < 0.25
    with_failures = Counter(planning.choose_mode(rng, config, have_failures=True, ok_count=3) for _ in range(5000))
    assert with_failures["fix"] > 400 and with_failures["crossover"] > 400


def test_features_separate_approaches_and_sizes() -> None:
    eager = "import torch\nclass ModelNew:\n    def forward(self, x):\n        return x * 2\n"
    compiled = eager + "fast = torch.compile(lambda x: x)\n"
    cpp = "from torch.utils.cpp_extension import load_inline\n" + eager
    axes = ("approach", "code_size")
    cells = {planning.cell_key(planning.features(code, axes)) for code in (eager, compiled, cpp)}
    assert len(cells) == 3
    assert planning.features(eager, axes)["approach"] == "eager"
    assert planning.code_size_bin("x\n" * 100) > planning.code_size_bin("x\n" * 10)
    assert planning.features(eager, ("speedup",), {"speedup": 4.0}) == {"speedup": 2.0}


def test_bandit_learns_the_arm_with_more_reward_per_cost() -> None:
    arms = [planning.Arm("builtin", "builtin"), planning.Arm("llm", "openai/a")]
    bandit = planning.Bandit(arms, random.Random(0))
    picks: Counter[str] = Counter()
    for _ in range(300):
        arm = bandit.select()
        picks[arm.key] += 1
        gain = 0.5 if arm.proposer == "llm" else 0.0
        bandit.update(arm.key, parent_score=1.0, score=1.0 + gain, cost=0.01)
    assert picks["llm:openai/a"] > 250


def test_arms_need_a_model_for_the_llm_proposer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAEDALUS_MODEL", raising=False)
    assert planning.arms_for(RunConfig(task="t", proposers=["llm"])) == []
    arms = planning.arms_for(RunConfig(task="t", proposers=["builtin", "llm"], models=["a", "b"]))
    assert [a.key for a in arms] == ["builtin:builtin", "llm:a", "llm:b"]


def test_plan_round_trips_through_checkpoint_state() -> None:
    plan = planning.Plan("p1", "crossover", 1, planning.Arm("llm", "m"), ["a", "b"], ["f"])
    assert planning.Plan.from_state(plan.as_state()) == plan
