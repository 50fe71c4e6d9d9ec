"""The built-in proposer: no network, no LLM, deterministic for a given seed and history.

Each proposal applies catalogue transformations (``catalogue.TRANSFORMS``) to a parent:

- improve: one transformation, chosen by the bandit among those that apply and produce a
  program not seen before;
- fix: the parent failed, so go back to its last working ancestor (or the best working
  inspiration, or the seed) and apply a different transformation than the one that broke it;
- crossover: replay the union of two parents' lineages on the seed (transformation-set
  recombination), plus one more step if the union reproduces a parent;
- explore: a random stack of two or three applicable transformations.

``selection="random"`` replaces the bandit by a uniform choice (the benchmark's baseline).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from daedalus.tools.builtin import lineage
from daedalus.tools.builtin.arch_proposer import ArchitectureProposer
from daedalus.tools.builtin.bandit import Bandit, reward
from daedalus.tools.builtin.base import Change, Transform, float_inputs
from daedalus.tools.builtin.catalogue import TRANSFORMS
from daedalus.tools.builtin.engine import Engine, InvalidCandidate, canonical
from daedalus.tools.builtin.program_proposer import ProgramProposer
from daedalus.tools.builtin.seed import SeedError, reference_as_candidate
from daedalus.tools.proposer import ArchiveEntry, Brief, Proposal

log = logging.getLogger(__name__)

Selection = Literal["adaptive", "random"]
# Lineage marker for proposals built on code the proposer did not write (e.g. an LLM's): such
# a lineage cannot be replayed from the seed, so transformations apply to the code directly.
EXTERNAL = "external"
_FINAL = frozenset({"ok", "rejected", "compile_error", "runtime_error", "timeout", "incorrect"})


@dataclass
class _Step:
    code: str
    changes: list[Change]
    applied: list[str]
    lineage: tuple[str, ...]


@dataclass
class _Base:
    """What a proposal starts from: code, and its lineage from the seed when known."""

    code: str
    history: tuple[str, ...] | None  # None: not ours (an LLM's, say); transforms apply directly
    seed: str | None = None
    trail: tuple[str, ...] = (EXTERNAL,)  # the recorded lineage of code that is not ours


def _key(code: str) -> str:
    return hashlib.sha256(canonical(code).encode()).hexdigest()


class BuiltinProposer:
    """Semantics-preserving program transformations chosen by a bandit (see module doc)."""

    name = "builtin"

    def __init__(
        self,
        *,
        selection: Selection = "adaptive",
        transforms: Sequence[Transform] = TRANSFORMS,
        check_policy: bool = True,
    ) -> None:
        if selection not in ("adaptive", "random"):
            raise ValueError(f"selection must be 'adaptive' or 'random', not {selection!r}")
        self.selection = selection
        self.transforms = {t.name: t for t in transforms}
        self.bandit = Bandit({t.name: t.cost for t in transforms})
        self.check_policy = check_policy
        self._lock = threading.Lock()
        self._credited: set[str] = set()  # code keys whose outcome is already in the bandit
        self._proposed: set[str] = set()  # code keys proposed by this instance
        self._engines: dict[str, Engine] = {}
        self._programs = ProgramProposer()
        self._architectures = ArchitectureProposer(selection=selection)

    # -- learning --------------------------------------------------------------------------
    def observe(self, proposal: Proposal, *, parent_score: float, score: float) -> None:
        """Credit the applied transformations with the improvement they earned."""
        if proposal.meta and proposal.meta.get("kind") == "architecture":
            self._architectures.observe(proposal, parent_score=parent_score, score=score)
            return
        if proposal.meta and "moves" in proposal.meta:  # a program-task proposal
            self._programs.observe(proposal, parent_score=parent_score, score=score)
            return
        applied = json.loads(proposal.meta.get("applied", "[]")) if proposal.meta else []
        if not applied or not proposal.code:
            return
        with self._lock:
            key = _key(proposal.code)
            if key in self._credited:
                return
            self._credited.add(key)
            self._credit(applied, parent_score, score)

    def warm_start(self, entries: Iterable[ArchiveEntry]) -> int:
        """Rebuild the bandit from archived built-in proposals and remember every archived
        program as already proposed (a resumed run must not offer them again); returns how
        many entries credited the bandit."""
        entries = list(entries)
        with self._lock:
            self._proposed |= {_key(e.code) for e in entries if e.code}
            return self._learn(entries)

    def _credit(self, applied: Sequence[str], parent_score: float, score: float) -> None:
        cost = sum(self.transforms[n].cost if n in self.transforms else 1.0 for n in applied)
        value = reward(parent_score, score, cost)
        for name in applied:
            self.bandit.update(name, value)

    def _learn(self, entries: Iterable[ArchiveEntry]) -> int:
        used = 0
        for entry in entries:
            record = lineage.parse(entry.description) if entry.description else None
            if record is None or not entry.code or entry.status not in _FINAL:
                continue  # not ours, or still being evaluated (its outcome comes later)
            key = _key(entry.code)
            if key in self._credited:
                continue
            self._credited.add(key)
            score = entry.score if entry.status == "ok" else 0.0
            self._credit(record.applied, record.parent_score, score)
            used += 1
        return used

    # -- proposing ---------------------------------------------------------------------------
    def propose(self, brief: Brief) -> Proposal:
        if brief.kind == "program":  # generic programs: literal tuning and recombination
            return self._programs.propose(brief)
        if brief.kind == "architecture":  # design mutations, judged by training
            return self._architectures.propose(brief)
        if brief.kind != "kernel":
            return Proposal(
                code="",
                error=(
                    f"the built-in proposer rewrites KernelBench-format kernel programs; task "
                    f"{brief.task_name!r} is a {brief.kind!r} task: use --proposer llm for it"
                ),
            )
        with self._lock:
            self._learn((brief.parent, *brief.inspirations, *brief.failures))
            rng = random.Random(f"{brief.seed}|{brief.mode}|{brief.parent.candidate_id}")
            try:
                seed = reference_as_candidate(brief.task_source)
            except SeedError as exc:
                return Proposal(code="", error=f"the built-in proposer cannot start: {exc}")
            engine = self._engine(brief.task_source)
            seen = set(self._proposed)
            seen |= {
                _key(e.code) for e in (brief.parent, *brief.inspirations, *brief.failures) if e.code
            }
            handler = {
                "fix": self._fix,
                "crossover": self._crossover,
                "explore": self._explore,
            }.get(brief.mode, self._improve)
            proposal = handler(brief, engine, seed, seen, rng)
            if proposal.code:
                self._proposed.add(_key(proposal.code))
            return proposal

    def _engine(self, task_source: str) -> Engine:
        digest = hashlib.sha256(task_source.encode()).hexdigest()
        if digest not in self._engines:
            self._engines[digest] = Engine(
                float_inputs(task_source), check_policy=self.check_policy
            )
        return self._engines[digest]

    def _order(self, names: Iterable[str], rng: random.Random, *, adaptive: bool) -> list[str]:
        names = sorted(names)
        if adaptive and self.selection == "adaptive":
            return self.bandit.rank(names, rng)
        rng.shuffle(names)
        return names

    def _replay(
        self, engine: Engine, seed: str, names: Iterable[str]
    ) -> tuple[str, list[Change], list[str]]:
        """The seed with ``names`` applied in stage order (how every lineage is rebuilt)."""
        known = [n for n in dict.fromkeys(names) if n in self.transforms]
        order = sorted(known, key=lambda n: self.transforms[n].stage)
        return engine.apply_all(seed, [self.transforms[n] for n in order])

    def _step(
        self,
        engine: Engine,
        base: _Base,
        rng: random.Random,
        seen: set[str],
        *,
        exclude: Iterable[str] = (),
        adaptive: bool = True,
    ) -> _Step | None:
        """The first transformation (bandit or random order) that yields a new valid program.

        A base with a known lineage is rebuilt from the seed with the new transformation in
        its stage order, so e.g. a later algebraic rewrite still sees the plain expressions
        that the memory pass would otherwise have turned into in-place helper calls.
        """
        blocked = set(exclude) | set(base.history or ())
        for name in base.history or ():
            blocked |= self.transforms[name].conflicts if name in self.transforms else set()
        for name in self._order(set(self.transforms) - blocked, rng, adaptive=adaptive):
            try:
                if base.history is not None and base.seed is not None:
                    code, changes, applied = self._replay(engine, base.seed, (*base.history, name))
                    if name not in applied:
                        continue
                    step = _Step(code, changes, [name], tuple(applied))
                else:
                    result = engine.apply(base.code, self.transforms[name])
                    if result is None:
                        continue
                    step = _Step(result.code, list(result.changes), [name], (*base.trail, name))
            except InvalidCandidate as exc:
                log.warning(
                    "built-in transformation %s produced an invalid candidate: %s", name, exc
                )
                continue
            if _key(step.code) in seen or canonical(step.code) == canonical(base.code):
                continue
            return step
        return None

    def _finish(
        self, mode: str, step: _Step | None, parent: ArchiveEntry | None, base: str, note: str = ""
    ) -> Proposal:
        if step is None:
            return Proposal(
                code="",
                error=(
                    f"no transformation applies to {base}: every catalogue rewrite either does "
                    "not match this program or reproduces a candidate already proposed; "
                    "start from another parent or let an LLM proposer take over"
                ),
                meta={"mode": mode, "exhausted": "true"},
            )
        parent_id = parent.candidate_id if parent is not None else ""
        parent_score = parent.score if parent is not None else 1.0  # the seed is the reference
        record = lineage.Record(mode, tuple(step.applied), step.lineage, parent_id, parent_score)
        description = lineage.describe(record, step.changes)
        if note:
            description += f"\n{note}"
        return Proposal(
            code=step.code,
            raw=step.code,
            description=description,
            meta=lineage.meta(record, step.changes),
        )

    @staticmethod
    def _base(entry: ArchiveEntry | None, seed: str) -> _Base:
        if entry is None:
            return _Base(seed, (), seed)
        record = lineage.parse(entry.description) if entry.description else None
        if record is not None and EXTERNAL not in record.lineage:
            return _Base(entry.code, record.lineage, seed)
        if record is not None:
            return _Base(entry.code, None, trail=record.lineage)
        if canonical(entry.code) == canonical(seed):
            return _Base(entry.code, (), seed)
        return _Base(entry.code, None)

    @staticmethod
    def _usable(entry: ArchiveEntry) -> bool:
        return bool(entry.code) and "class ModelNew" in entry.code and entry.status in ("ok", "")

    @staticmethod
    def _name(entry: ArchiveEntry | None) -> str:
        return f"candidate {entry.candidate_id}" if entry is not None else "the seed"

    def _improve(
        self, brief: Brief, engine: Engine, seed: str, seen: set[str], rng: random.Random
    ) -> Proposal:
        parent = brief.parent if self._usable(brief.parent) else None
        step = self._step(engine, self._base(parent, seed), rng, seen)
        return self._finish("improve", step, parent, self._name(parent))

    def _fix(
        self, brief: Brief, engine: Engine, seed: str, seen: set[str], rng: random.Random
    ) -> Proposal:
        failed = brief.parent
        record = lineage.parse(failed.description) if failed.description else None
        working = {
            e.candidate_id: e for e in brief.inspirations if self._usable(e) and e.status == "ok"
        }
        ancestor = working.get(record.parent_id) if record is not None else None
        if ancestor is None and working:
            ancestor = max(working.values(), key=lambda e: e.score)
        culprits = set(record.applied) if record is not None else set()
        step = self._step(engine, self._base(ancestor, seed), rng, seen, exclude=culprits)
        feedback = failed.feedback.strip()
        reason = feedback.splitlines()[0][:200] if feedback else failed.status
        avoided = ", ".join(sorted(culprits)) or "nothing (its transformations are unknown)"
        note = (
            f"fix: {failed.candidate_id} failed ({reason}); went back to "
            f"{self._name(ancestor)} and avoided {avoided}."
        )
        return self._finish("fix", step, ancestor, self._name(ancestor), note)

    def _crossover(
        self, brief: Brief, engine: Engine, seed: str, seen: set[str], rng: random.Random
    ) -> Proposal:
        a = brief.parent
        la = self._base(a, seed).history if self._usable(a) else None
        partners = [
            (e, lb)
            for e in brief.inspirations
            if self._usable(e)
            and (lb := self._base(e, seed).history) is not None
            and set(lb) - set(la or ())
        ]
        if la is None or not partners:
            return self._improve(brief, engine, seed, seen, rng)
        b, lb = partners[0]
        extra = [n for n in lb if n not in la]
        chosen = [n for n in extra if rng.random() < 0.5] or [rng.choice(extra)]
        try:
            code, changes, applied = self._replay(engine, seed, (*la, *chosen))
        except InvalidCandidate as exc:
            log.warning("replaying %s produced an invalid candidate: %s", (*la, *chosen), exc)
            return self._improve(brief, engine, seed, seen, rng)
        step: _Step | None = _Step(
            code, changes, [n for n in applied if n not in la], tuple(applied)
        )
        if step is not None and (not step.applied or _key(code) in seen):
            step = self._step(engine, _Base(code, tuple(applied), seed), rng, seen)
        note = (
            f"crossover: {a.candidate_id} ({' > '.join(la) or 'seed'}) x {b.candidate_id} "
            f"({' > '.join(lb)}), both lineages replayed together on the seed."
        )
        return self._finish("crossover", step, a, "the recombined lineage", note)

    def _explore(
        self, brief: Brief, engine: Engine, seed: str, seen: set[str], rng: random.Random
    ) -> Proposal:
        parent = brief.parent if self._usable(brief.parent) else None
        base = self._base(parent, seed)
        start = base.history
        depth = rng.randint(2, 3)
        total: _Step | None = None
        for i in range(depth):
            # intermediate programs may repeat known ones; only the last one must be new
            step = self._step(engine, base, rng, seen if i == depth - 1 else set(), adaptive=False)
            if step is None:
                break
            replayed = base.history is not None  # replays already list every change since the seed
            total = (
                step
                if total is None
                else _Step(
                    step.code,
                    step.changes if replayed else total.changes + step.changes,
                    total.applied + step.applied,
                    step.lineage,
                )
            )
            base = _Base(step.code, step.lineage if replayed else None, base.seed, step.lineage)
        if total is not None and _key(total.code) in seen:
            total = None
        if total is not None and start is not None:
            # a replay can make an earlier step a no-op (e.g. nothing left for the memory pass
            # once a chain went to C++): report what the final program actually contains
            total.applied = [n for n in total.lineage if n not in start]
        return self._finish("explore", total, parent, self._name(parent))
