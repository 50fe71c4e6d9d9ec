"""The built-in proposer for architecture tasks: mutations of designs, chosen by a bandit.

- improve: one mutation (``arch_mutations.MUTATIONS``), the bandit's best among those that
  apply and give a design not seen before;
- fix: the parent failed, so go back to a working design (its parent when known, else the
  best working inspiration, else the seed) and apply a different mutation than the one
  that broke it;
- crossover: replay the mutations the other parent's lineage applied onto this parent;
- explore: a random stack of two or three mutations.

Descriptions use the built-in lineage format (``lineage.describe``), so a resumed run
rebuilds the bandit from the archive. Nothing here knows a task's answer.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import threading
from collections.abc import Iterable

from daedalus.tools.builtin import lineage
from daedalus.tools.builtin.arch_mutations import MUTATIONS, Target
from daedalus.tools.builtin.bandit import Bandit, reward
from daedalus.tools.builtin.base import Change
from daedalus.tools.proposer import ArchiveEntry, Brief, Proposal

KIND = "architecture"
_ATTEMPTS = 6  # draws per mutation before it counts as not applicable (they are random)


def _key(code: str) -> str:
    try:
        text = ast.dump(ast.parse(code))
    except SyntaxError:
        text = code
    return hashlib.sha256(text.encode()).hexdigest()


def target_of(brief: Brief) -> Target:
    """The interface the mutations may assume, from the task's category."""
    return Target(sequence=brief.category == "sequence_mixer")


class ArchitectureProposer:
    """Mutations of architecture code, chosen by a UCB bandit over mutation kinds."""

    name = "builtin"

    def __init__(self, *, selection: str = "adaptive") -> None:
        self.selection = selection
        self.bandit = Bandit({name: 1.0 for name in MUTATIONS})
        self._lock = threading.Lock()
        self._credited: set[str] = set()
        self._proposed: set[str] = set()

    # -- learning --------------------------------------------------------------------------
    def observe(self, proposal: Proposal, *, parent_score: float, score: float) -> None:
        applied = json.loads(proposal.meta.get("applied", "[]")) if proposal.meta else []
        if not applied or not proposal.code:
            return
        with self._lock:
            key = _key(proposal.code)
            if key not in self._credited:
                self._credited.add(key)
                self._credit(applied, parent_score, score)

    def _credit(self, applied: Iterable[str], parent_score: float, score: float) -> None:
        names = [n for n in applied if n in MUTATIONS]
        value = reward(parent_score, score, float(len(names) or 1))
        for name in names:
            self.bandit.update(name, value)

    def _learn(self, entries: Iterable[ArchiveEntry]) -> None:
        for entry in entries:
            record = lineage.parse(entry.description) if entry.description else None
            if (record is None or not entry.code or entry.status in ("", "pending")
                    or _key(entry.code) in self._credited):
                continue  # not ours, or still being evaluated (its outcome comes later)
            self._credited.add(_key(entry.code))
            self._credit(record.applied, record.parent_score, entry.score if entry.status == "ok" else 0.0)

    # -- proposing ---------------------------------------------------------------------------
    def propose(self, brief: Brief) -> Proposal:
        with self._lock:
            self._learn((brief.parent, *brief.inspirations, *brief.failures))
            rng = random.Random(f"{brief.seed}|{brief.mode}|{brief.parent.candidate_id}")
            seen = set(self._proposed) | {_key(e.code) for e in (brief.parent, *brief.inspirations,
                                                                  *brief.failures) if e.code}
            target = target_of(brief)
            if brief.mode == "fix" or not self._usable(brief.parent):
                proposal = self._fix(brief, rng, seen, target)
            elif brief.mode == "crossover":
                proposal = self._crossover(brief, rng, seen, target)
            elif brief.mode == "explore":
                proposal = self._explore(brief, rng, seen, target)
            else:
                proposal = self._improve(brief.parent, rng, seen, target)
            if proposal.code:
                self._proposed.add(_key(proposal.code))
            return proposal

    @staticmethod
    def _usable(entry: ArchiveEntry | None) -> bool:
        return entry is not None and bool(entry.code) and entry.status == "ok"

    def _order(self, rng: random.Random, exclude: Iterable[str] = ()) -> list[str]:
        names = sorted(set(MUTATIONS) - set(exclude))
        if self.selection == "adaptive":
            return self.bandit.rank(names, rng)
        rng.shuffle(names)
        return names

    @staticmethod
    def _apply(code: str, name: str, rng: random.Random, target: Target) -> tuple[str, list[Change]] | None:
        for _ in range(_ATTEMPTS):
            try:
                tree = ast.parse(code)
            except SyntaxError:
                return None
            changes = MUTATIONS[name](tree, rng, target)
            if not changes:
                return None  # the pattern matches nowhere: more draws will not help
            new = ast.unparse(ast.fix_missing_locations(tree))
            try:
                compile(new, "<mutation>", "exec")
            except SyntaxError:
                continue
            if _key(new) != _key(code):
                return new, changes
        return None

    def _step(self, code: str, rng: random.Random, seen: set[str], target: Target,
              exclude: Iterable[str] = ()) -> tuple[str, str, list[Change]] | None:
        for name in self._order(rng, exclude):
            result = self._apply(code, name, rng, target)
            if result is not None and _key(result[0]) not in seen:
                return name, *result
        return None

    def _finish(self, mode: str, base: ArchiveEntry | None, applied: list[str],
                code: str | None, changes: list[Change], note: str = "") -> Proposal:
        where = f"candidate {base.candidate_id}" if base is not None else "the seed"
        if not code or not applied:
            return Proposal(code="", error=(f"no architecture mutation applies to {where}: each "
                                            "either matches nowhere or repeats a design already "
                                            "proposed; start from another parent or let an LLM "
                                            "proposer take over"), meta={"mode": mode, "kind": KIND})
        history = lineage.parse(base.description) if base is not None and base.description else None
        chain = (*(history.lineage if history else ()), *applied)
        record = lineage.Record(mode, tuple(applied), chain, base.candidate_id if base else "",
                                base.score if base else 0.0)
        description = lineage.describe(record, changes) + (f"\n{note}" if note else "")
        return Proposal(code=code, raw=code, description=description,
                        meta={**lineage.meta(record, changes), "kind": KIND})

    def _improve(self, parent: ArchiveEntry, rng: random.Random, seen: set[str],
                 target: Target) -> Proposal:
        step = self._step(parent.code, rng, seen, target)
        if step is None:
            return self._finish("improve", parent, [], None, [])
        name, code, changes = step
        return self._finish("improve", parent, [name], code, changes)

    def _fix(self, brief: Brief, rng: random.Random, seen: set[str], target: Target) -> Proposal:
        failed = brief.parent
        record = lineage.parse(failed.description) if failed.description else None
        working = {e.candidate_id: e for e in brief.inspirations if self._usable(e)}
        base = working.get(record.parent_id) if record is not None else None
        if base is None and working:
            base = max(working.values(), key=lambda e: e.score)
        code = base.code if base is not None else brief.task_source
        culprits = set(record.applied) if record is not None else set()
        step = self._step(code, rng, seen, target, exclude=culprits)
        reason = (failed.feedback.strip().splitlines() or [failed.status])[0][:200]
        note = (f"fix: {failed.candidate_id} failed ({reason}); went back to "
                f"{'candidate ' + base.candidate_id if base else 'the seed'} and avoided "
                f"{', '.join(sorted(culprits)) or 'nothing (its mutations are unknown)'}.")
        if step is None:
            return self._finish("fix", base, [], None, [])
        name, new, changes = step
        return self._finish("fix", base, [name], new, changes, note)

    def _crossover(self, brief: Brief, rng: random.Random, seen: set[str],
                   target: Target) -> Proposal:
        a = brief.parent
        own = lineage.parse(a.description) if a.description else None
        for b in brief.inspirations:
            other = lineage.parse(b.description) if b.description and self._usable(b) else None
            extra = [n for n in (other.lineage if other else ()) if n in MUTATIONS
                     and n not in (own.lineage if own else ())]
            if not extra:
                continue
            code, applied, changes = a.code, list[str](), list[Change]()
            for name in dict.fromkeys(extra):
                result = self._apply(code, name, rng, target)
                if result is not None:
                    code, found = result
                    applied.append(name)
                    changes += found
            if applied and _key(code) not in seen:
                note = f"crossover: replayed {', '.join(applied)} from {b.candidate_id} onto {a.candidate_id}."
                return self._finish("crossover", a, applied, code, changes, note)
        return self._improve(a, rng, seen, target)

    def _explore(self, brief: Brief, rng: random.Random, seen: set[str],
                 target: Target) -> Proposal:
        code, applied, changes = brief.parent.code, list[str](), list[Change]()
        names = list(MUTATIONS)
        rng.shuffle(names)
        wanted = rng.randint(2, 3)
        for name in names:
            if len(applied) == wanted:
                break
            result = self._apply(code, name, rng, target)
            if result is not None:
                code, found = result
                applied.append(name)
                changes += found
        if not applied or _key(code) in seen:
            return self._improve(brief.parent, rng, seen, target)
        return self._finish("explore", brief.parent, applied, code, changes)
