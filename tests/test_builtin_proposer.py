"""The built-in proposer: modes, determinism, no repeats, the bandit, crossover, honesty."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from daedalus.tasks import list_tasks
from daedalus.tools.builtin import TRANSFORMS, BuiltinProposer, reference_as_candidate
from daedalus.tools.builtin import lineage as lineage_mod
from daedalus.tools.builtin.engine import canonical
from daedalus.tools.proposer import ArchiveEntry, Brief, Proposal
from tests.test_builtin_transforms import PROGRAMS, assert_equivalent

SOURCE = PROGRAMS["swish_chain"]
SEED = reference_as_candidate(SOURCE)
PACKAGE = Path(__file__).resolve().parents[1] / "tools" / "builtin"
# Proposals that get executed here avoid torch.compile and the C++ build (test_builtin_cpp.py
# covers those); the catalogue-wide properties use every transformation.
FAST = tuple(t for t in TRANSFORMS if t.cost == 1.0)  # no compiler or C++ build


def fast() -> BuiltinProposer:
    return BuiltinProposer(transforms=FAST)


def seed_entry() -> ArchiveEntry:
    return ArchiveEntry("seed", SEED, "ok", 1.0, speedup=1.0, origin="seed")


def brief(
    parent: ArchiveEntry,
    mode: str = "improve",
    seed: int = 0,
    inspirations: tuple[ArchiveEntry, ...] = (),
    failures: tuple[ArchiveEntry, ...] = (),
    source: str = SOURCE,
    kind: str = "kernel",
) -> Brief:
    return Brief(
        task_name="t",
        task_source=source,
        category="fusion",
        mode=mode,  # type: ignore[arg-type]
        parent=parent,
        inspirations=inspirations,
        failures=failures,
        seed=seed,
        kind=kind,
    )


def entry_of(
    proposal: Proposal, cid: str, score: float, status: str = "ok", feedback: str = ""
) -> ArchiveEntry:
    return ArchiveEntry(
        cid,
        proposal.code,
        status,
        score,
        speedup=score if status == "ok" else None,
        feedback=feedback,
        origin="builtin",
        description=proposal.description,
    )


def applied(proposal: Proposal) -> list[str]:
    return json.loads(proposal.meta["applied"])


def test_improve_rewrites_the_parent_and_says_exactly_what_it_did() -> None:
    proposal = fast().propose(brief(seed_entry()))
    assert proposal.error is None and proposal.proposer == "builtin"
    assert canonical(proposal.code) != canonical(SEED)
    record = lineage_mod.parse(proposal.description)
    assert record is not None and record.parent_id == "seed" and record.mode == "improve"
    assert record.applied == tuple(applied(proposal)) and len(record.applied) == 1
    changes = json.loads(proposal.meta["transforms"])
    assert changes and {c["name"] for c in changes} == set(record.applied)
    assert all(c["where"] and c["detail"] for c in changes)
    assert_equivalent(SOURCE, proposal.code)


def test_same_seed_and_history_give_the_same_proposal() -> None:
    for mode in ("improve", "explore"):
        first = BuiltinProposer().propose(brief(seed_entry(), mode, seed=7))
        second = BuiltinProposer().propose(brief(seed_entry(), mode, seed=7))
        assert first.code == second.code and first.description == second.description


def test_never_repeats_a_program_and_says_so_when_exhausted() -> None:
    proposer = BuiltinProposer()
    seen = {canonical(SEED)}
    failures: list[ArchiveEntry] = []
    for i in range(40):
        proposal = proposer.propose(brief(seed_entry(), seed=i, failures=tuple(failures)))
        if proposal.error:
            assert proposal.code == ""
            assert "no transformation applies" in proposal.error
            break
        assert canonical(proposal.code) not in seen
        seen.add(canonical(proposal.code))
        failures.append(entry_of(proposal, f"c{i}", 0.0, status="incorrect"))
    else:
        pytest.fail("the catalogue never ran out on a three-line program")
    assert len(seen) > 3  # several different single rewrites of the seed were offered


def test_bandit_shifts_toward_rewarded_transformations() -> None:
    teacher = BuiltinProposer(selection="random", transforms=FAST)
    learner = fast()
    for i in range(12):
        proposal = teacher.propose(brief(seed_entry(), seed=i))
        if proposal.error:
            break
        score = 3.0 if applied(proposal) == ["inplace"] else 0.9
        learner.observe(proposal, parent_score=1.0, score=score)
    assert learner.bandit.arms["inplace"].pulls >= 1
    ranked = learner.bandit.rank(learner.transforms, random.Random(0))
    assert ranked[0] == "inplace"
    assert applied(learner.propose(brief(seed_entry(), seed=99))) == ["inplace"]


def test_bandit_is_rebuilt_from_archived_descriptions() -> None:
    live = fast()
    entries = []
    for i in range(6):
        proposal = live.propose(brief(seed_entry(), seed=i))
        if proposal.error:
            break
        score = 1.0 + 0.3 * i
        live.observe(proposal, parent_score=1.0, score=score)
        entries.append(entry_of(proposal, f"c{i}", score))
    resumed = fast()
    pending = [
        ArchiveEntry(e.candidate_id, e.code, "pending", 0.0, description=e.description)
        for e in entries
    ]
    assert resumed.warm_start(pending) == 0  # in flight: its outcome is not known yet
    assert resumed.warm_start(entries) == len(entries)
    assert resumed.bandit.snapshot() == live.bandit.snapshot()
    assert resumed.warm_start(entries) == 0  # never counted twice


def test_a_warm_started_proposer_never_reoffers_an_archived_program() -> None:
    # What a resumed run does: a fresh proposer learns the archive, then asks for more.
    live = fast()
    archived = [seed_entry()]
    while (proposal := live.propose(brief(seed_entry(), seed=len(archived)))).code:
        archived.append(entry_of(proposal, f"c{len(archived)}", 1.0, status="pending"))
    assert len(archived) > 2 and proposal.meta.get("exhausted") == "true"
    assert fast().propose(brief(seed_entry(), seed=99)).code  # without the archive: a repeat
    resumed = fast()
    resumed.warm_start(archived)
    again = resumed.propose(brief(seed_entry(), seed=99))
    assert again.code == "" and again.meta.get("exhausted") == "true"


def test_crossover_replays_both_parents_lineages() -> None:
    proposer = fast()
    a = proposer.propose(brief(seed_entry(), seed=1))
    seen = [entry_of(a, "a", 1.5)]
    b = a
    for i in range(2, 30):  # a second parent with a different lineage
        b = proposer.propose(brief(seed_entry(), seed=i, failures=tuple(seen)))
        seen.append(entry_of(b, f"x{i}", 1.2))
        if set(applied(b)) - set(applied(a)):
            break
    child = proposer.propose(brief(seen[0], "crossover", inspirations=(entry_of(b, "b", 1.3),)))
    record = lineage_mod.parse(child.description)
    assert record is not None and record.mode == "crossover"
    assert set(applied(a)) | set(applied(b)) <= set(record.lineage)
    assert "crossover: a (" in child.description
    assert_equivalent(SOURCE, child.code)


def test_fix_goes_back_to_the_working_ancestor_and_avoids_the_culprit() -> None:
    source = PROGRAMS["identities"]  # a program several rewrites apply to
    proposer = fast()
    root = ArchiveEntry("seed", reference_as_candidate(source), "ok", 1.0)
    base = proposer.propose(brief(root, seed=3, source=source))
    ancestor = entry_of(base, "anc", 1.4)
    broken = proposer.propose(brief(ancestor, seed=4, source=source))
    failed = entry_of(
        broken, "bad", 0.0, status="runtime_error", feedback="RuntimeError: boom\nmore"
    )
    fix = proposer.propose(brief(failed, "fix", inspirations=(ancestor,), source=source))
    record = lineage_mod.parse(fix.description)
    assert record is not None and record.parent_id == "anc"
    assert not set(record.applied) & set(applied(broken))
    assert record.lineage[: len(applied(base))] == tuple(applied(base))
    assert "bad failed (RuntimeError: boom)" in fix.description
    assert_equivalent(source, fix.code)


def test_explore_stacks_random_transformations() -> None:
    proposal = fast().propose(brief(seed_entry(), "explore", seed=5))
    assert len(applied(proposal)) >= 2
    assert set(applied(proposal)) <= set(json.loads(proposal.meta["lineage"]))
    assert_equivalent(SOURCE, proposal.code)


def test_code_the_proposer_did_not_write_is_transformed_directly() -> None:
    handwritten = SEED.replace("x = x * self.scale", "x = self.scale * x")
    parent = ArchiveEntry("llm1", handwritten, "ok", 1.1, origin="llm")
    proposal = fast().propose(brief(parent, seed=2))
    record = lineage_mod.parse(proposal.description)
    assert record is not None and record.lineage[0] == "external"
    assert "self.scale * x" in proposal.code or "_imul" in proposal.code
    assert_equivalent(SOURCE, proposal.code)
    again = fast().propose(brief(entry_of(proposal, "p2", 1.2), seed=3))
    trail = lineage_mod.parse(again.description).lineage  # type: ignore[union-attr]
    assert trail[:2] == record.lineage and len(trail) == 3  # external > first > second
    assert_equivalent(SOURCE, again.code)


def test_unknown_task_kinds_get_a_clear_error() -> None:
    proposal = BuiltinProposer().propose(brief(seed_entry(), kind="mystery"))
    assert proposal.code == "" and proposal.error and "--proposer llm" in proposal.error


def test_a_broken_task_source_is_an_error_not_an_exception() -> None:
    proposal = BuiltinProposer().propose(brief(seed_entry(), source="def f(:\n"))
    assert proposal.code == "" and proposal.error and "does not parse" in proposal.error


def test_the_package_knows_no_shipped_task() -> None:
    """Task names that are not also torch op names must not appear in the proposer's code."""
    functional = torch.nn.functional
    names = {
        t.name
        for t in list_tasks()
        if not hasattr(torch, t.name) and not hasattr(functional, t.name)
    }
    assert "swish_scale" in names
    text = "\n".join(p.read_text() for p in PACKAGE.glob("*.py")).lower()
    found = sorted(n for n in names if re.search(rf"\b{re.escape(n.lower())}\b", text))
    assert found == [], f"task-specific names in tools/builtin: {found}"
