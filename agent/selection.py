"""Choosing the next proposal's parent, mode and inspirations from the archive.

The planner's policy (islands and migration, MAP-Elites cell elites, the exploit/explore/
random mix, Pareto parents) applied to what the archive holds now; ``RunContext.plan``
checks the budgets and calls ``Selector.choose``.

A proposer may answer that it has nothing new for a (mode, parent): the built-in one
does once its catalogue has no unseen rewrite of that parent left. The selector remembers
those (arm, mode, parent) combinations for the run and never plans them again; when the
combination it drew is one of them it takes the next untried one (the next best parent,
another mode, another arm), and when none is left it says so (``dry``) so the run can stop.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from daedalus.agent import planning
from daedalus.agent.config import RunConfig
from daedalus.archive import store

if TYPE_CHECKING:
    from daedalus.tasks.model import Task

T = TypeVar("T")
# Elites and known functional hashes steer diversity and save evaluations, not correctness:
# re-reading them every few recorded results is enough.
REFRESH_EVERY = 8
# When the drawn (arm, mode, parent) is exhausted, the next one is looked for among the run's
# best correct candidates and its most recent failures, this many of each.
FALLBACK_POOL = 64
MODES = ("improve", "explore", "crossover", "fix")


class Refreshing(Generic[T]):
    """A value read from the archive, read again once ``every`` more results are recorded."""

    def __init__(self, load: Callable[[Any], T], every: int = REFRESH_EVERY) -> None:
        self._load = load
        self._every = every
        self._at: int | None = None
        self.value: T | None = None

    def get(self, s: Any, recorded: int) -> T:
        if self.value is None or self._at is None or recorded - self._at >= self._every:
            self.value, self._at = self._load(s), recorded
        return self.value


def candidate_by_id(s: Any, candidate_id: str) -> Any:
    """An exact-id lookup (the store's get_candidate also resolves prefixes, slower)."""
    found = store.find_candidate(s, candidate_id=candidate_id)
    if found is None:
        raise LookupError(f"candidate {candidate_id} is not in the archive")
    return found


class Selector:
    def __init__(self, *, run_id: str, config: RunConfig, task: Task, rng: random.Random) -> None:
        self.run_id = run_id
        self.config = config
        self.task = task
        self.rng = rng
        self.elites = Refreshing(lambda s: [c.id for c in store.cell_elites(s, run_id=run_id)])
        # (arm key, mode, parent id) combinations a proposer had nothing new for. In memory
        # only: a resumed run re-learns them, one cheap built-in proposer call each.
        self.exhausted: set[tuple[str, str, str]] = set()
        self.dry = False  # the last choose() found every combination exhausted

    @staticmethod
    def _combination(arm_key: str, mode: str, parent_id: str) -> tuple[str, str, str]:
        # "random" only picks the parent differently; the proposer improves it like "improve".
        return arm_key, "improve" if mode == "random" else mode, parent_id

    def mark_exhausted(self, arm_key: str, mode: str, parent_id: str) -> None:
        self.exhausted.add(self._combination(arm_key, mode, parent_id))

    def is_exhausted(self, arm_key: str, mode: str, parent_id: str) -> bool:
        return self._combination(arm_key, mode, parent_id) in self.exhausted

    def choose(self, s: Any, proposals: int, *, recorded: int, waiting: bool,
               bandit: planning.Bandit) -> planning.Plan | None:
        """The next plan, or None to wait (``waiting``: evaluations are in flight) or when
        nothing can be built on (``dry`` then says whether that is because every
        combination is exhausted)."""
        self.dry = False
        rng, run_id = self.rng, self.run_id
        n = self.config.islands
        island = proposals % n
        # The plan needs ids, scores and statuses only: no evaluations loaded.
        best = store.top_candidates(s, run_id=run_id, limit=8, evaluations=False)
        top = store.top_candidates(s, run_id=run_id, island=island, limit=8,
                                   evaluations=False) or best
        failures = store.recent_failures(s, run_id=run_id, limit=5, evaluations=False)
        if not top and (waiting or not failures):
            return None  # wait for the seed's result before building on it
        mode = planning.choose_mode(rng, self.config, have_failures=bool(failures), ok_count=len(top))
        if not top:
            mode = "fix"
        inspirations = best[:3]
        elite_ids = self.elites.get(s, recorded)
        if elite_ids:
            inspirations += [candidate_by_id(s, i) for i in rng.sample(elite_ids, k=min(2, len(elite_ids)))]
        if mode == "fix":
            parent = rng.choice(failures)
        elif mode == "explore" and elite_ids:
            parent = candidate_by_id(s, rng.choice(elite_ids))
        elif mode == "random":
            parent = store.sample_parent(s, run_id=run_id, rng=rng) or top[0]
        else:
            # Multi-objective tasks (accuracy, params, latency): exploit the Pareto front.
            front_pool = (store.top_candidates(s, run_id=run_id, island=island, limit=64)
                          if len(self.task.objectives) > 1 else [])
            parent = planning.pareto_parent(rng, front_pool, self.task.objectives) or max(
                rng.sample(top, k=min(3, len(top))), key=lambda c: c.score or 0.0)
        if n > 1 and proposals and proposals % self.config.migration_every == 0:
            source = store.top_candidates(s, run_id=run_id, island=(island - 1) % n, limit=1)
            if source:  # migration: the neighbour island's best seeds this island
                parent, mode = source[0], "improve"
        arm = bandit.select()

        def partners(p: Any) -> list[Any]:
            return [c for c in inspirations if c.id != p.id and c.status == "ok"]

        if mode == "crossover" and not partners(parent):
            mode = "improve"
        if self.is_exhausted(arm.key, mode, parent.id):
            arms = [arm, *[a for a in bandit.arms if a != arm]]
            untried = self._untried(s, arms, mode, partners)
            if untried is None:
                self.dry = True
                return None
            arm, mode, parent = untried
        if mode == "crossover":
            inspirations = [rng.choice(partners(parent)), *[c for c in inspirations if c.id != parent.id]]
        seen: set[str] = {parent.id}
        unique = [c for c in inspirations if not (c.id in seen or seen.add(c.id))]  # type: ignore[func-returns-value]
        return planning.Plan(
            parent_id=parent.id,
            mode=mode,
            island=island,
            arm=arm,
            inspiration_ids=[c.id for c in unique[:5]],
            failure_ids=[c.id for c in failures[:3] if c.id != parent.id],
        )

    def _untried(self, s: Any, arms: list[planning.Arm], preferred: str,
                 partners: Callable[[Any], list[Any]]) -> tuple[planning.Arm, str, Any] | None:
        """The first combination not known to be exhausted: arms in order, the preferred mode
        first, parents best first (failures, newest first, for fix); None when none is left."""
        ok = store.top_candidates(s, run_id=self.run_id, limit=FALLBACK_POOL, evaluations=False)
        failed = store.recent_failures(s, run_id=self.run_id, limit=FALLBACK_POOL, evaluations=False)
        for arm in arms:
            for mode in dict.fromkeys((preferred, *MODES)):
                for parent in failed if mode == "fix" else ok:
                    if mode == "crossover" and not partners(parent):
                        continue
                    if not self.is_exhausted(arm.key, mode, parent.id):
                        return arm, mode, parent
        return None
