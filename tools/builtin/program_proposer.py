"""The built-in proposer for program tasks: numeric tuning and recombination, no LLM.

What it can honestly do for a program it knows nothing about:

- improve: scale one numeric literal inside the EVOLVE-BLOCKs (x0.5 ... x2), replaying a
  (literal, factor) move that raised the score before half of the time (a pattern search);
- explore: scale two to four literals by larger factors (x0.25 ... x4);
- crossover: mix the literals of two programs of the same shape, else swap whole
  top-level functions between them;
- fix: go back to the best working program it was shown and tune that instead.

Its limits: it never invents an algorithm, it cannot change code that has no literal to
tune, and it knows nothing of the task's meaning; it is an offline baseline and a tuner for
what an LLM found. Every proposal is new to this proposer (it remembers what it proposed).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading

from daedalus.tools.builtin import program_mutate as M
from daedalus.tools.proposer import ArchiveEntry, Brief, Proposal

_ATTEMPTS = 24
_GOOD_MOVES = 64


def _key(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class ProgramProposer:
    """Implements the Proposer protocol for ``Brief.kind == "program"`` (see module doc)."""

    name = "builtin"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proposed: set[str] = set()
        self._good: list[tuple[str, float]] = []  # (slot key, factor) moves that helped

    def observe(self, proposal: Proposal, *, parent_score: float, score: float) -> None:
        moves = json.loads(proposal.meta.get("moves", "[]")) if proposal.meta else []
        if score > parent_score and moves:
            with self._lock:
                self._good = [*self._good, *((str(k), float(f)) for k, f in moves)][-_GOOD_MOVES:]

    def propose(self, brief: Brief) -> Proposal:
        with self._lock:
            rng = random.Random(f"{brief.seed}|{brief.mode}|{brief.parent.candidate_id}")
            seen = set(self._proposed) | {_key(e.code) for e in
                                          (brief.parent, *brief.inspirations, *brief.failures)}
            base = self._base(brief)
            proposal = None
            if brief.mode == "crossover":
                proposal = self._crossover(base, brief, rng, seen)
            if proposal is None:
                explore = brief.mode == "explore"
                proposal = self._mutate(base, rng, seen, explore=explore, note=self._note(brief, base))
            if proposal.code:
                self._proposed.add(_key(proposal.code))
            return proposal

    @staticmethod
    def _working(brief: Brief) -> list[ArchiveEntry]:
        return [e for e in (brief.parent, *brief.inspirations) if e.status == "ok" and e.code]

    def _base(self, brief: Brief) -> ArchiveEntry:
        if brief.parent.status == "ok" or brief.mode != "fix":
            return brief.parent
        working = self._working(brief)
        return max(working, key=lambda e: e.score) if working else brief.parent

    @staticmethod
    def _note(brief: Brief, base: ArchiveEntry) -> str:
        if base is brief.parent:
            return ""
        return f"fix: {brief.parent.candidate_id} failed; tuned {base.candidate_id} instead. "

    def _mutate(self, base: ArchiveEntry, rng: random.Random, seen: set[str], *,
                explore: bool, note: str) -> Proposal:
        literals = True
        for _ in range(_ATTEMPTS):
            count = rng.randint(2, 4) if explore else 1
            steps = M.LARGE_STEPS if explore else M.SMALL_STEPS
            made = M.mutate(base.code, rng, count=count, steps=steps,
                            prefer=None if explore else self._good)
            if made is None:
                literals = False  # nothing to vary in this parent, ever
                break
            code, mutations = made
            if _key(code) in seen:
                continue
            moves = [(m.key, m.after / m.before) for m in mutations]
            text = ", ".join(f"line {m.line}: {m.before!r} -> {m.after!r}" for m in mutations)
            return Proposal(code=code, raw=code, meta={"moves": json.dumps(moves)},
                            description=f"{note}{'explore' if explore else 'tune'}: {text} "
                                        f"(from {base.candidate_id})")  # fmt: skip
        # No literals at all: this parent is done for good (the planner stops offering it and
        # nothing is archived). Only repeats drawn this time: an error, as the draw may differ.
        meta = {"mode": "tune"} if literals else {"mode": "tune", "exhausted": "true"}
        return Proposal(code="", meta=meta, error=(
            f"the built-in proposer has nothing new to try on {base.candidate_id}: it tunes "
            "numeric literals inside the EVOLVE-BLOCKs and there are none left to vary; use "
            "an LLM proposer (--proposer llm) to change the algorithm"))

    def _crossover(self, base: ArchiveEntry, brief: Brief, rng: random.Random,
                   seen: set[str]) -> Proposal | None:
        for other in self._working(brief):
            if other.candidate_id == base.candidate_id:
                continue
            made = M.cross_constants(base.code, other.code, rng)
            if made is not None and _key(made[0]) not in seen:
                text = ", ".join(f"line {m.line}: {m.before!r} -> {m.after!r}" for m in made[1])
                return Proposal(code=made[0], raw=made[0], description=(
                    f"crossover: literals of {other.candidate_id} into {base.candidate_id}: {text}"))
            swapped = M.cross_functions(base.code, other.code, rng)
            if swapped is not None and _key(swapped[0]) not in seen:
                return Proposal(code=swapped[0], raw=swapped[0], description=(
                    f"crossover: {', '.join(swapped[1])} from {other.candidate_id} into "
                    f"{base.candidate_id}"))
        return None
