"""Planning: which parent, which inspirations, which mode, which proposer, and when to stop.

The planner mixes exploitation (a tournament among an island's best), exploration (a
random MAP-Elites cell elite) and pure random picks; it rotates over islands and migrates
the best of one island into the next every ``migration_every`` proposals; a UCB1 bandit
chooses the proposer/model arm by reward per unit cost. All choices come from the archive,
so a resumed run re-derives the same planner state from the data.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daedalus.agent.config import RunConfig

# Cost of one evaluation second, so a free proposer is still charged for the evaluator's time.
DEVICE_USD_PER_S = 1e-4
_FIX_PROBABILITY = 0.15
_CROSSOVER_PROBABILITY = 0.2


@dataclass(frozen=True)
class Arm:
    proposer: str
    model: str

    @property
    def key(self) -> str:
        return f"{self.proposer}:{self.model}"


@dataclass
class Plan:
    parent_id: str
    mode: str
    island: int
    arm: Arm
    inspiration_ids: list[str] = field(default_factory=list)
    failure_ids: list[str] = field(default_factory=list)

    def as_state(self) -> dict[str, Any]:
        return {
            "parent_id": self.parent_id,
            "mode": self.mode,
            "island": self.island,
            "proposer": self.arm.proposer,
            "model": self.arm.model,
            "inspiration_ids": list(self.inspiration_ids),
            "failure_ids": list(self.failure_ids),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Plan:
        return cls(
            parent_id=data["parent_id"],
            mode=data["mode"],
            island=int(data["island"]),
            arm=Arm(data["proposer"], data["model"]),
            inspiration_ids=list(data.get("inspiration_ids", [])),
            failure_ids=list(data.get("failure_ids", [])),
        )


# ---------------------------------------------------------------- MAP-Elites features

_APPROACHES = (
    ("cpp", re.compile(r"load_inline|cpp_extension")),
    ("triton", re.compile(r"\btriton\b")),
    ("compiled", re.compile(r"torch\.compile|torch\.jit\.")),
)


def approach(code: str) -> str:
    """The implementation strategy of a candidate, read statically from its code."""
    for name, pattern in _APPROACHES:
        if pattern.search(code):
            return name
    return "eager"


def code_size_bin(code: str) -> int:
    """Log2 bins of the non-blank line count: 0-7 lines, 8-15, 16-31, ..."""
    lines = sum(1 for line in code.splitlines() if line.strip())
    return max(0, int(math.log2(max(lines, 1))) - 2)


def features(code: str, axes: tuple[str, ...], metrics: dict[str, float] | None = None) -> dict[str, Any]:
    """Feature values for the task's MAP-Elites axes; unknown axes read from metrics."""
    values: dict[str, Any] = {}
    for axis in axes:
        if axis == "approach":
            values[axis] = approach(code)
        elif axis in ("code_size", "code_length"):
            values[axis] = code_size_bin(code)
        else:
            raw = (metrics or {}).get(axis)
            values[axis] = None if raw is None else round(math.log2(max(raw, 1e-9)), 0)
    return values


def cell_key(values: dict[str, Any]) -> str:
    return "|".join(f"{k}={values[k]}" for k in sorted(values))


# ---------------------------------------------------------------- Pareto front


def objective_vector(candidate: Any, objectives: Sequence[Any]) -> tuple[float, ...] | None:
    """The candidate's values of the task's objectives, oriented so larger is better for
    each; None when its evaluation lacks one or a value is not finite."""
    evaluation = getattr(candidate, "evaluation", None)
    values = getattr(evaluation, "objectives", None) or {}
    vector: list[float] = []
    for objective in objectives:
        value = values.get(objective.name)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        vector.append(float(value) if objective.direction == "max" else -float(value))
    return tuple(vector)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def pareto_front(candidates: Sequence[Any], objectives: Sequence[Any]) -> list[Any]:
    """The candidates no other candidate dominates on the objectives (equal points all stay)."""
    scored = [(c, v) for c in candidates if (v := objective_vector(c, objectives)) is not None]
    return [c for c, v in scored if not any(dominates(w, v) for _, w in scored)]


def pareto_parent(rng: random.Random, candidates: Sequence[Any], objectives: Sequence[Any]) -> Any | None:
    """A parent drawn uniformly from the Pareto front; None for single-objective tasks or
    when no candidate carries every objective yet."""
    if len(objectives) < 2:
        return None
    front = pareto_front(candidates, objectives)
    return rng.choice(front) if front else None


# ---------------------------------------------------------------- bandit over arms


@dataclass
class _ArmStats:
    pulls: int = 0
    reward: float = 0.0
    cost: float = 0.0


class Bandit:
    """UCB1 over arms, rewarding relative improvement over the parent per unit cost."""

    def __init__(self, arms: list[Arm], rng: random.Random) -> None:
        if not arms:
            raise ValueError("the bandit needs at least one proposer arm")
        self.arms = arms
        self._rng = rng
        self._stats = {arm.key: _ArmStats() for arm in arms}

    def select(self) -> Arm:
        untried = [arm for arm in self.arms if self._stats[arm.key].pulls == 0]
        if untried:
            return self._rng.choice(untried)
        total = sum(s.pulls for s in self._stats.values())

        def ucb(arm: Arm) -> float:
            s = self._stats[arm.key]
            mean = s.reward / max(s.cost, 1e-6)
            return mean + math.sqrt(2 * math.log(total) / s.pulls)

        return max(self.arms, key=ucb)

    def update(self, arm_key: str, *, parent_score: float, score: float, cost: float) -> None:
        stats = self._stats.get(arm_key)
        if stats is None:
            return
        stats.pulls += 1
        stats.reward += max(0.0, score - parent_score) / max(parent_score, 1e-6)
        stats.cost += max(cost, 0.0) + 1e-3

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {k: {"pulls": s.pulls, "reward": s.reward, "cost": s.cost} for k, s in self._stats.items()}


def arms_for(config: RunConfig) -> list[Arm]:
    arms: list[Arm] = []
    for proposer in config.proposers:
        if proposer == "builtin":
            arms.append(Arm("builtin", "builtin"))
        else:
            models = config.models or ([config.default_model] if config.default_model else [])
            arms.extend(Arm("llm", m) for m in models if m)
    return arms


# ---------------------------------------------------------------- stopping


def stop_reason(
    config: RunConfig,
    *,
    iterations: int,
    cost_usd: float,
    device_seconds: float,
    elapsed_s: float,
    best_score: float | None,
    interrupted: bool,
) -> str | None:
    """Why the run must stop proposing now, or None to go on."""
    if interrupted:
        return "interrupted"
    if iterations >= config.iterations:
        return f"iteration budget reached ({config.iterations})"
    if config.budget_usd is not None and cost_usd >= config.budget_usd:
        return f"USD budget reached (${config.budget_usd:.2f})"
    if config.device_seconds is not None and device_seconds >= config.device_seconds:
        return f"device-seconds budget reached ({config.device_seconds:.0f} s)"
    if config.time_limit_s is not None and elapsed_s >= config.time_limit_s:
        return f"time limit reached ({config.time_limit_s:.0f} s)"
    if config.target_score is not None and best_score is not None and best_score >= config.target_score:
        return f"target score reached ({best_score:.3f} >= {config.target_score})"
    return None


def catalogue_exhausted(iterations: int) -> str:
    """The stop reason when no proposer has anything new for any parent the planner may pick
    (only the built-in proposer ever runs dry: an LLM can always write something)."""
    return (f"the built-in catalogue has no new rewrite for any archived candidate after "
            f"{iterations} iteration{'' if iterations == 1 else 's'}; use --proposer llm to go further")


def choose_mode(rng: random.Random, config: RunConfig, *, have_failures: bool, ok_count: int) -> str:
    """Draw the next mode from the configured exploit/explore/random mix."""
    if have_failures and rng.random() < _FIX_PROBABILITY:
        return "fix"
    if ok_count >= 2 and rng.random() < _CROSSOVER_PROBABILITY:
        return "crossover"
    total = config.exploit + config.explore + config.random
    draw = rng.random() * (total or 1.0)
    if draw < config.exploit:
        return "improve"
    if draw < config.exploit + config.explore:
        return "explore"
    return "random"
