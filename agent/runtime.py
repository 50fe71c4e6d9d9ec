"""The discovery run's live context: the parts the graph's nodes act through.

Nodes in ``graph.py`` stay thin; the work they name (plan, propose, vet, evaluate, record,
reflect) happens here, one archive transaction per decision, so a run killed at any moment
resumes from the archive with nothing lost or counted twice.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from daedalus.agent import memory, planning, security
from daedalus.agent.action import EvaluateFn, EvaluationPool, Finished
from daedalus.agent.config import RunConfig
from daedalus.agent.recording import record_rejection, record_result
from daedalus.archive import store
from daedalus.tools.proposer import Proposal, Proposer

if TYPE_CHECKING:
    from daedalus.archive.db import Archive
    from daedalus.tasks.model import Task

# Elites steer diversity, not correctness: refreshing them every few results is enough.
_ELITE_REFRESH = 8
EventSink = Callable[[str, dict[str, Any]], None]
Analyst = Callable[[str, list[Any]], list[str]]


@dataclass
class Progress:
    iterations: int = 0
    evaluated: int = 0
    best_score: float | None = None
    best_speedup: float | None = None
    best_id: str | None = None
    cost_usd: float = 0.0
    by_status: dict[str, int] | None = None


class RunContext:
    """Everything a node needs that is not serialisable working state."""

    def __init__(
        self,
        *,
        archive: Archive,
        task: Task,
        config: RunConfig,
        run_id: str,
        proposers: dict[str, Proposer],
        evaluate: EvaluateFn,
        backend: str,
        sandbox: str,
        analyst: Analyst | None = None,
        on_event: EventSink | None = None,
        elapsed_before: float = 0.0,
    ) -> None:
        self.archive = archive
        self.task = task
        self.config = config
        self.run_id = run_id
        self.proposers = proposers
        self.backend = backend
        self.sandbox = sandbox
        self.pool = EvaluationPool(evaluate, workers=config.workers, lookahead=config.lookahead)
        self.analyst = analyst
        self.on_event = on_event or (lambda kind, data: None)
        self.stop_event = threading.Event()
        self._started = time.monotonic()
        self._elapsed_before = elapsed_before
        self._rng = random.Random(f"{config.seed}:{run_id}:{elapsed_before}")
        self.bandit = planning.Bandit(planning.arms_for(config), self._rng)
        self._in_memory: dict[str, tuple[Proposal, str, float]] = {}
        self._recorded = 0
        self._elite_cache: tuple[int, list[str]] | None = None
        # The task's known functional hashes: read in full every few results (other runs of
        # the task add to them too), this run's own added as they are recorded.
        self._functional: tuple[int, set[str]] | None = None
        self.fatal: str | None = None  # set when a proposer cannot go on (bad key, no budget)

    # ------------------------------------------------------------------ helpers

    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started

    def progress(self) -> Progress:
        with self.archive.session(readonly=True) as s:
            run = store.get_run(s, run_id=self.run_id)
            best = store.best_candidate(s, run_id=self.run_id)
            return Progress(
                iterations=run.iterations,
                evaluated=sum(v for k, v in store.count_by_status(s, run_id=self.run_id).items() if k != "pending"),
                best_score=run.best_score,
                best_speedup=best.evaluation.speedup if best and best.evaluation else None,
                best_id=best.id if best else None,
                cost_usd=run.cost_usd,
                by_status=store.count_by_status(s, run_id=self.run_id),
            )

    def resubmit_pending(self) -> int:
        """Re-evaluate candidates the archive holds without a result (after a kill)."""
        with self.archive.session(readonly=True) as s:
            pending = [(c.id, c.code) for c in store.pending_candidates(s, run_id=self.run_id)]
            known = frozenset(store.known_functional_hashes(s, task=self.task.key))
        for candidate_id, code in pending:
            self.pool.submit(candidate_id, self.task, code, known)
        return len(pending)

    @staticmethod
    def _candidate(s: Any, candidate_id: str) -> Any:
        """An exact-id lookup (the store's get_candidate also resolves prefixes, slower)."""
        candidate = store.find_candidate(s, candidate_id=candidate_id)
        if candidate is None:
            raise LookupError(f"candidate {candidate_id} is not in the archive")
        return candidate

    def _elite_ids(self, s: Any) -> list[str]:
        """MAP-Elites cell elites' ids, re-queried only after new results were recorded."""
        if self._elite_cache is None or self._recorded - self._elite_cache[0] >= _ELITE_REFRESH:
            ids = [c.id for c in store.cell_elites(s, run_id=self.run_id)]
            self._elite_cache = (self._recorded, ids)
        return self._elite_cache[1]

    # ------------------------------------------------------------------ plan

    def plan(self, *, proposals: int) -> tuple[dict[str, Any] | None, str | None]:
        """A plan for the next proposal, or (None, reason) to stop, or (None, None) to wait."""
        with self.archive.session(readonly=True) as s:
            run = store.get_run(s, run_id=self.run_id)
            reason = planning.stop_reason(
                self.config,
                iterations=run.iterations,
                cost_usd=run.cost_usd,
                device_seconds=run.device_seconds,
                elapsed_s=self.elapsed(),
                best_score=run.best_score,
                interrupted=self.stop_event.is_set(),
            )
            if reason is None and self.fatal is not None:
                reason = f"proposer failed: {self.fatal}"
            if reason is not None:
                return None, reason
            if len(self.pool) >= self.pool.capacity:
                return None, None
            plan = self._choose(s, proposals)
        if plan is None and len(self.pool) == 0:
            return None, "no viable parent: every candidate so far was rejected or duplicated"
        return (plan.as_state() if plan else None), None

    def _choose(self, s: Any, proposals: int) -> planning.Plan | None:
        n = self.config.islands
        island = proposals % n
        # The plan needs ids, scores and statuses only: no evaluations loaded.
        best = store.top_candidates(s, run_id=self.run_id, limit=8, evaluations=False)
        top = store.top_candidates(s, run_id=self.run_id, island=island, limit=8,
                                   evaluations=False) or best
        failures = store.recent_failures(s, run_id=self.run_id, limit=5, evaluations=False)
        if not top:
            if len(self.pool):
                return None  # wait for the seed's result before building on it
            if not failures:
                return None
            top = []
        ok_count = len(top)
        mode = planning.choose_mode(self._rng, self.config, have_failures=bool(failures), ok_count=ok_count)
        if not top:
            mode = "fix"
        inspirations = best[:3]
        elite_ids = self._elite_ids(s)
        if elite_ids:
            picked = self._rng.sample(elite_ids, k=min(2, len(elite_ids)))
            inspirations += [self._candidate(s, i) for i in picked]
        if mode == "fix":
            parent = self._rng.choice(failures)
        elif mode == "explore" and elite_ids:
            parent = self._candidate(s, self._rng.choice(elite_ids))
        elif mode == "random":
            parent = store.sample_parent(s, run_id=self.run_id, rng=self._rng) or top[0]
        else:
            # Multi-objective tasks (accuracy, params, latency): exploit the Pareto front.
            front_pool = (store.top_candidates(s, run_id=self.run_id, island=island, limit=64)
                          if len(self.task.objectives) > 1 else [])
            parent = planning.pareto_parent(self._rng, front_pool, self.task.objectives) or max(
                self._rng.sample(top, k=min(3, len(top))), key=lambda c: c.score or 0.0)
        if n > 1 and proposals and proposals % self.config.migration_every == 0:
            source = store.top_candidates(s, run_id=self.run_id, island=(island - 1) % n, limit=1)
            if source:  # migration: the neighbour island's best seeds this island
                parent, mode = source[0], "improve"
        if mode == "crossover":
            others = [c for c in inspirations if c.id != parent.id and c.status == "ok"]
            if not others:
                mode = "improve"
            else:
                inspirations = [self._rng.choice(others), *[c for c in inspirations if c.id != parent.id]]
        seen: set[str] = {parent.id}
        unique = [c for c in inspirations if not (c.id in seen or seen.add(c.id))]  # type: ignore[func-returns-value]
        return planning.Plan(
            parent_id=parent.id,
            mode=mode,
            island=island,
            arm=self.bandit.select(),
            inspiration_ids=[c.id for c in unique[:5]],
            failure_ids=[c.id for c in failures[:3] if c.id != parent.id],
        )

    # ------------------------------------------------------------------ propose

    def propose(self, plan_state: dict[str, Any]) -> dict[str, Any] | None:
        """Ask the planned proposer for a candidate; None when it cannot go on at all."""
        from daedalus.tools.llm_errors import LLMBudgetExceeded, LLMUnavailable

        plan = planning.Plan.from_state(plan_state)
        with self.archive.session(readonly=True) as s:
            run = store.get_run(s, run_id=self.run_id)
            remaining = None if self.config.budget_usd is None else max(0.0, self.config.budget_usd - run.cost_usd)
            # One query for every candidate the brief shows (and one for their evaluations).
            found = store.candidates_by_id(
                s, [plan.parent_id, *plan.inspiration_ids, *plan.failure_ids])
            parent = found.get(plan.parent_id) or self._candidate(s, plan.parent_id)
            inspirations = [found[i] for i in plan.inspiration_ids if i in found]
            failures = [found[i] for i in plan.failure_ids if i in found]
            lessons = [lesson.text for lesson in store.lessons(s, task=self.task.key, limit=5)]
            guidance = memory.guidance_lines(run.guidance or [])
            brief = memory.brief(
                task=self.task,
                mode=plan.mode,
                parent=parent,
                inspirations=inspirations,
                failures=failures,
                lessons=lessons,
                guidance=guidance,
                seed=self._rng.randrange(2**31),
            )
            brief = replace(brief, max_cost_usd=remaining)
            generation = parent.generation + 1
        proposer = self.proposers[plan.arm.key]
        started = time.monotonic()
        try:
            proposal = proposer.propose(brief)
        except (LLMUnavailable, LLMBudgetExceeded) as exc:
            self.fatal = security.redact(str(exc))
            self.on_event("note", {"message": f"proposer stopped: {self.fatal}"})
            return None
        if proposal.meta.get("fatal") == "true":
            self.fatal = security.redact(proposal.error or "the proposer cannot continue")
        if self.task.kind == "program" and proposal.code and not proposal.error:
            from daedalus.tasks.program import BlockError, keep_fixed_parts

            try:  # only EVOLVE-BLOCK contents evolve; the rest stays as the task wrote it
                proposal.code, reverted = keep_fixed_parts(self.task.source, proposal.code)
                if reverted:
                    proposal.description += " [edits outside the EVOLVE-BLOCKs were reverted]"
            except BlockError as exc:
                proposal.error = str(exc)
        latency = time.monotonic() - started
        candidate_id = uuid.uuid4().hex[:16]
        self._in_memory[candidate_id] = (proposal, plan.arm.key, brief.parent.score)
        data = asdict(proposal)
        data.update(
            id=candidate_id,
            plan=plan_state,
            generation=generation,
            latency_s=latency,
            prompt=security.redact(proposal.meta.get("prompt", brief.prompt)),
            raw=security.redact(proposal.raw),
        )
        self.on_event("proposed", {"id": candidate_id, "mode": plan.mode, "error": proposal.error})
        return data

    # ------------------------------------------------------------------ vet

    def vet(self, proposal: dict[str, Any]) -> str | None:
        """Archive the proposal; return its id when it still needs an evaluation."""
        from daedalus.sandbox.static import normalized_hash

        plan = planning.Plan.from_state(proposal["plan"])
        code = proposal["code"] or ""
        verdict = (
            security.Verdict(False, "proposer", proposal["error"])
            if proposal.get("error")
            else security.vet(code, max_code_bytes=self.config.max_code_bytes, check=self._policy())
        )
        try:
            code_hash = normalized_hash(code)
        except SyntaxError:
            code_hash = "unparsable:" + uuid.uuid5(uuid.NAMESPACE_OID, code).hex
        with self.archive.session() as s, s.begin():
            existing = store.find_candidate(s, candidate_id=proposal["id"])
            if existing is not None:  # resumed after the insert was committed
                return existing.id if existing.status == "pending" else None
            duplicate = store.find_by_code_hash(s, task=self.task.key, code_hash=code_hash) if verdict.ok else None
            candidate = store.add_candidate(
                s,
                candidate_id=proposal["id"],
                run_id=self.run_id,
                task=self.task.key,
                code=code,
                code_hash=code_hash,
                parent_id=plan.parent_id,
                inspirations=plan.inspiration_ids,
                island=plan.island,
                generation=proposal["generation"],
                proposer=proposal["proposer"],
                model=proposal["model"],
                mode="improve" if plan.mode == "random" else plan.mode,
                prompt=proposal["prompt"],
                description=proposal["description"],
                prompt_tokens=proposal["prompt_tokens"],
                completion_tokens=proposal["completion_tokens"],
                cost_usd=proposal["cost_usd"],
            )
            store.add_spend(
                s,
                run_id=self.run_id,
                iterations=1,
                prompt_tokens=proposal["prompt_tokens"],
                completion_tokens=proposal["completion_tokens"],
                cost_usd=proposal["cost_usd"],
            )
            if not verdict.ok:
                record_rejection(s, candidate_id=candidate.id, verdict=verdict, backend=self.backend,
                                 sandbox=self.sandbox)
                self.on_event("recorded", {"id": candidate.id, "status": "rejected"})
                return None
            if duplicate is not None:
                store.mark_duplicate(s, candidate_id=candidate.id, duplicate_of=duplicate.id, kind="exact")
                self.on_event("recorded", {"id": candidate.id, "status": "duplicate"})
                return None
            return candidate.id

    def _policy(self) -> Any:
        """The task's static policy: the kernel one, or a program task's own (or None: off)."""
        if self.task.kind != "program":
            return "kernel"
        from daedalus.sandbox.program_policy import policy_for

        return policy_for(self.task.source, self.task.settings)

    # ------------------------------------------------------------------ evaluate / record

    def submit(self, candidate_id: str) -> None:
        with self.archive.session(readonly=True) as s:
            code = self._candidate(s, candidate_id).code
            if self._functional is None or self._recorded - self._functional[0] >= _ELITE_REFRESH:
                self._functional = (self._recorded, store.known_functional_hashes(s, task=self.task.key))
            known = frozenset(self._functional[1])
        self.pool.submit(candidate_id, self.task, code, known)

    def record(self, *, block: bool) -> int:
        finished = self.pool.harvest(block=block, timeout=1.0 if block else None)
        for item in finished:
            self._record_one(item)
        self._recorded += len(finished)
        return len(finished)

    def _record_one(self, item: Finished) -> None:
        result = item.result
        with self.archive.session() as s, s.begin():
            record_result(s, task=self.task, candidate_id=item.candidate_id, result=result,
                          backend=self.backend, sandbox=self.sandbox)
            store.set_run_elapsed(s, run_id=self.run_id, elapsed_s=self.elapsed())
        if result.functional_hash and self._functional is not None:
            self._functional[1].add(result.functional_hash)
        remembered = self._in_memory.pop(item.candidate_id, None)
        if remembered is not None:
            proposal, arm_key, parent_score = remembered
            cost = proposal.cost_usd + result.duration_s * planning.DEVICE_USD_PER_S
            self.bandit.update(arm_key, parent_score=parent_score, score=result.score, cost=cost)
            self.proposers[arm_key].observe(proposal, parent_score=parent_score, score=result.score)
        self.on_event(
            "recorded",
            {"id": item.candidate_id, "status": str(result.status), "speedup": result.speedup, "score": result.score},
        )

    # ------------------------------------------------------------------ reflect / finish

    def reflect(self) -> None:
        with self.archive.session(readonly=True) as s:
            recent = store.recent_candidates(s, run_id=self.run_id, limit=20)
            entries = [memory.entry(c) for c in recent]
            iteration = store.get_run(s, run_id=self.run_id).iterations
        analyst = self.analyst or memory.statistical_lessons
        lessons = analyst(self.task.name, entries)
        with self.archive.session() as s, s.begin():
            for text in lessons[:3]:
                store.add_lesson(
                    s, run_id=self.run_id, task=self.task.key, iteration=iteration, text=security.redact(text)
                )
        if lessons:
            self.on_event("lessons", {"lessons": lessons[:3]})

    def finish(self, reason: str) -> None:
        status = "stopped" if reason == "interrupted" else "finished"
        with self.archive.session() as s, s.begin():
            store.set_run_elapsed(s, run_id=self.run_id, elapsed_s=self.elapsed())
            store.update_run_status(s, run_id=self.run_id, status=status)
        self.on_event("finished", {"reason": reason, "status": status})

