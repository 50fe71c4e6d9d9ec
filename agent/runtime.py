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
from daedalus.agent.reflection import BackgroundAnalyst
from daedalus.agent.selection import Refreshing, Selector, candidate_by_id
from daedalus.archive import store
from daedalus.tools.proposer import Proposal, Proposer

if TYPE_CHECKING:
    from daedalus.archive.db import Archive
    from daedalus.tasks.model import Task

# The newest archived candidates a proposer learns from when the run (re)starts.
WARM_LIMIT = 10_000
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
        self._reflection = BackgroundAnalyst()
        self.on_event = on_event or (lambda kind, data: None)
        self.stop_event = threading.Event()
        self._started = time.monotonic()
        self._elapsed_before = elapsed_before
        self._rng = random.Random(f"{config.seed}:{run_id}:{elapsed_before}")
        self.bandit = planning.Bandit(planning.arms_for(config), self._rng)
        self._in_memory: dict[str, tuple[Proposal, str, float]] = {}
        self._recorded = 0
        self.selector = Selector(run_id=run_id, config=config, task=task, rng=self._rng)
        # The run's known functional hashes (duplicates are recognised within a run: each run
        # measures its candidates itself, in one sitting); its own are added as recorded.
        self._functional = Refreshing(
            lambda s: store.known_functional_hashes(s, task=task.key, run_id=run_id)
        )
        self.fatal: str | None = None  # set when a proposer cannot go on (bad key, no budget)
        self.stop_reason: str | None = None  # why the run stopped, once it has
        self._warmed = False  # proposers told what the run archived (see _warm_proposers)

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
            known = frozenset(
                store.known_functional_hashes(s, task=self.task.key, run_id=self.run_id)
            )
        for candidate_id, code in pending:
            self.pool.submit(candidate_id, self.task, code, known)
        return len(pending)

    # ------------------------------------------------------------------ plan

    def plan(self, *, proposals: int) -> tuple[dict[str, Any] | None, str | None]:
        """A plan for the next proposal, or (None, reason) to stop, or (None, None) to wait."""
        with self.archive.session(readonly=True) as s:
            run = store.run_counters(s, run_id=self.run_id)
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
            plan = self.selector.choose(s, proposals, recorded=self._recorded,
                                        waiting=len(self.pool) > 0, bandit=self.bandit)
            iterations = run.iterations
        if plan is None and len(self.pool) == 0:
            if self.selector.dry:
                return None, planning.catalogue_exhausted(iterations)
            return None, "no viable parent: every candidate so far was rejected or duplicated"
        return (plan.as_state() if plan else None), None

    # ------------------------------------------------------------------ propose

    def propose(self, plan_state: dict[str, Any]) -> dict[str, Any] | None:
        """Ask the planned proposer for a candidate; None when it cannot go on at all."""
        from daedalus.tools.llm_errors import LLMBudgetExceeded, LLMUnavailable

        plan = planning.Plan.from_state(plan_state)
        with self.archive.session(readonly=True) as s:
            if not self._warmed:
                self._warm_proposers(s)
            run = store.run_counters(s, run_id=self.run_id)
            remaining = None if self.config.budget_usd is None else max(0.0, self.config.budget_usd - run.cost_usd)
            # One query for every candidate the brief shows (and one for their evaluations).
            found = store.candidates_by_id(
                s, [plan.parent_id, *plan.inspiration_ids, *plan.failure_ids])
            parent = found.get(plan.parent_id) or candidate_by_id(s, plan.parent_id)
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
        if proposal.meta.get("exhausted") == "true" and not proposal.code and not proposal.cost_usd:
            # Nothing new for this (mode, parent), and nothing written or spent: not an
            # iteration and nothing to archive. The planner will not draw it again.
            self.selector.mark_exhausted(plan.arm.key, plan.mode, plan.parent_id)
            self.on_event("note", {"message": f"{plan.arm.proposer}: nothing new to {plan.mode} "
                                              f"{plan.parent_id}; planning another parent"})
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

    def _warm_proposers(self, s: Any) -> None:
        """Once per process, before the first proposal: proposers that can use it learn what
        the run already archived. The built-in one rebuilds its bandit and never re-offers an
        archived program, so a resumed run re-learns its exhausted parents (a fast call each)
        instead of archiving exact duplicates of what it proposed before the restart."""
        self._warmed = True
        warm = [w for p in self.proposers.values() if (w := getattr(p, "warm_start", None))]
        if warm and self.task.kind == "kernel":  # the built-in warm start reads kernel lineages
            archived = store.list_candidates(s, run_id=self.run_id, limit=WARM_LIMIT)
            entries = [memory.entry(c) for c in archived]
            for warm_start in warm:
                warm_start(entries)

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
            existing = store.candidate_status(s, candidate_id=proposal["id"])
            if existing is not None:  # resumed after the insert was committed
                return proposal["id"] if existing == "pending" else None
            duplicate = (
                store.find_by_code_hash(
                    s, task=self.task.key, code_hash=code_hash, run_id=self.run_id
                )
                if verdict.ok
                else None
            )
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
        remembered = self._in_memory.get(candidate_id)
        with self.archive.session(readonly=True) as s:
            # The code vet just archived; after a resume, read back from the archive.
            code = remembered[0].code if remembered else candidate_by_id(s, candidate_id).code
            known = frozenset(self._functional.get(s, self._recorded))
        self.pool.submit(candidate_id, self.task, code, known)

    def record(self, *, block: bool) -> int:
        self.report_lessons()
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
        if result.functional_hash and self._functional.value is not None:
            self._functional.value.add(result.functional_hash)
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
            iteration = store.run_counters(s, run_id=self.run_id).iterations
        analyst = self.analyst
        if analyst is None:  # statistical lessons: quick, so in the loop
            lessons = self._store_lessons(memory.statistical_lessons(self.task.name, entries), iteration)
            if lessons:
                self.on_event("lessons", {"lessons": lessons})
            return
        # An LLM call: beside the loop (agent/reflection.py), reported when it is done.
        self._reflection.start(lambda: self._store_lessons(analyst(self.task.name, entries), iteration))

    def _store_lessons(self, lessons: list[str], iteration: int) -> list[str]:
        with self.archive.session() as s, s.begin():
            for text in lessons[:3]:
                store.add_lesson(
                    s, run_id=self.run_id, task=self.task.key, iteration=iteration, text=security.redact(text)
                )
        return lessons[:3]

    def report_lessons(self) -> None:
        for lessons in self._reflection.drain():
            if lessons:
                self.on_event("lessons", {"lessons": lessons})

    def finish(self, reason: str) -> None:
        self._reflection.join()  # lessons it paid for are archived before the run ends
        self.report_lessons()
        self.stop_reason = reason
        status = "stopped" if reason == "interrupted" else "finished"
        with self.archive.session() as s, s.begin():
            store.set_run_elapsed(s, run_id=self.run_id, elapsed_s=self.elapsed())
            store.update_run_status(s, run_id=self.run_id, status=status)
        self.on_event("finished", {"reason": reason, "status": status})

