"""Adaptive choice of transformations: a UCB bandit over transformation kinds.

Reward is the log-speedup a transformation earned over its parent, divided by its relative
evaluation cost (a ``torch.compile`` or C++ build costs several eager evaluations), so the
bandit prefers what improves most per second of evaluation. Failures and regressions earn
0. Untried arms carry an optimistic prior, scaled down by cost, so cheap rewrites are tried
before expensive ones. The state is a plain count/sum table, rebuildable from the archive.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass


def reward(parent_score: float, score: float, cost: float = 1.0) -> float:
    """Log-improvement over the parent per unit of evaluation cost (0 for no improvement)."""
    if parent_score <= 0 or score <= 0:
        return 0.0
    return max(0.0, math.log(score / parent_score)) / max(cost, 1e-9)


@dataclass
class Arm:
    pulls: float = 0.0
    total: float = 0.0

    def mean(self) -> float:
        return self.total / self.pulls if self.pulls else 0.0


class Bandit:
    """UCB1 over named arms with an optimistic, cost-aware prior."""

    def __init__(
        self, costs: dict[str, float], *, prior: float = 0.2, explore: float = 0.15
    ) -> None:
        self.costs = dict(costs)
        self.prior = prior  # pseudo-reward of one imaginary pull, before the cost divide
        self.explore = explore
        self.arms: dict[str, Arm] = {name: Arm() for name in costs}

    def update(self, name: str, value: float) -> None:
        self.arms.setdefault(name, Arm())
        arm = self.arms[name]
        arm.pulls += 1
        arm.total += value

    def score(self, name: str, total_pulls: float) -> float:
        arm = self.arms.get(name, Arm())
        cost = self.costs.get(name, 1.0)
        pulls = arm.pulls + 1  # the prior's pseudo-pull
        mean = (arm.total + self.prior / cost) / pulls
        bonus = self.explore * math.sqrt(math.log(total_pulls + 2) / pulls) / math.sqrt(cost)
        return mean + bonus

    def rank(self, names: Iterable[str], rng: random.Random) -> list[str]:
        """Names best-first by upper confidence bound; ties broken by ``rng``."""
        names = list(names)
        total = sum(self.arms[n].pulls for n in names if n in self.arms)
        keyed = [(self.score(n, total), rng.random(), n) for n in names]
        keyed.sort(reverse=True)
        return [n for _, _, n in keyed]

    def snapshot(self) -> dict[str, tuple[float, float]]:
        return {name: (arm.pulls, arm.mean()) for name, arm in self.arms.items()}
