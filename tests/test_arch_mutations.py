"""The built-in architecture mutations and their proposer: every mode yields a new, valid
design; mutations are generic (they apply to mixers and classifiers alike, and know no
task's answer); the bandit learns from observed scores; the kernel proposer dispatches."""

from __future__ import annotations

import ast
import json
import random

import pytest

from daedalus.tasks import load_task
from daedalus.tools.builtin import BuiltinProposer
from daedalus.tools.builtin.arch_mutations import MUTATIONS, Target
from daedalus.tools.builtin.arch_proposer import ArchitectureProposer
from daedalus.tools.proposer import ArchiveEntry, Brief


def _brief(task_name: str, mode: str, parent: ArchiveEntry, *others: ArchiveEntry,
           seed: int = 1) -> Brief:
    task = load_task(task_name)
    return Brief(task_name=task.name, task_source=task.source, category=task.category,
                 mode=mode, parent=parent, inspirations=others, seed=seed,  # type: ignore[arg-type]
                 kind="architecture")  # fmt: skip


def _entry(cid: str, code: str, status: str = "ok", score: float = 0.5, description: str = "") -> ArchiveEntry:
    return ArchiveEntry(candidate_id=cid, code=code, status=status, score=score,
                        description=description)


def _valid(code: str) -> None:
    tree = ast.parse(code)
    assert any(isinstance(n, ast.ClassDef) and n.name == "ModelNew" for n in tree.body)
    namespace: dict[str, object] = {}
    exec(compile(code, "design", "exec"), namespace)


@pytest.mark.parametrize("task", ["mqar", "digits"])
def test_every_applicable_mutation_gives_valid_new_code(task: str) -> None:
    loaded = load_task(task)
    target = Target(sequence=loaded.category == "sequence_mixer")
    applied = 0
    for code in loaded.files.values():
        for name, mutation in MUTATIONS.items():
            tree = ast.parse(code)
            changes = mutation(tree, random.Random(3), target)
            if not changes:
                continue
            applied += 1
            new = ast.unparse(ast.fix_missing_locations(tree))
            assert ast.dump(ast.parse(new)) != ast.dump(ast.parse(code)), name
            _valid(new)
            assert all(c.transform == name and c.detail for c in changes)
    assert applied >= 8


def test_sequence_mutations_stay_away_from_classifiers() -> None:
    code = load_task("digits").source
    for name in ("gate", "short_conv", "skip"):
        assert MUTATIONS[name](ast.parse(code), random.Random(0), Target(sequence=False)) == []


@pytest.mark.parametrize("mode", ["improve", "explore", "fix", "crossover"])
def test_each_mode_proposes_a_new_valid_design(mode: str) -> None:
    proposer = ArchitectureProposer()
    seed = load_task("mqar").source
    parent = _entry("p1", seed)
    first = proposer.propose(_brief("mqar", "improve", parent))
    assert first.code and not first.error
    child = _entry("c1", first.code, score=0.6, description=first.description)
    if mode == "fix":
        failed = _entry("f1", first.code, status="incorrect", score=0.0, description=first.description)
        proposal = proposer.propose(_brief("mqar", "fix", failed, parent))
        culprit = json.loads(first.meta["applied"])[0]
        assert culprit not in json.loads(proposal.meta["applied"])  # a different mutation
        assert "went back to candidate p1" in proposal.description
    elif mode == "crossover":
        # A partner whose mutation also applies on top of this parent's (not every pair does).
        for s in range(2, 40):
            other = ArchitectureProposer().propose(_brief("mqar", "improve", parent, seed=s))
            partner = _entry("c2", other.code, score=0.7, description=other.description)
            proposal = ArchitectureProposer().propose(_brief("mqar", "crossover", child, partner))
            if proposal.description.startswith("builtin/crossover"):
                break
        assert "from c2 onto c1" in proposal.description
    else:
        proposal = proposer.propose(_brief("mqar", mode, child))
    assert proposal.code and not proposal.error, proposal.error
    _valid(proposal.code)
    assert proposal.code not in (seed, first.code)
    assert proposal.meta["kind"] == "architecture"
    assert proposal.description.startswith(f"builtin/{mode}: applied ")


def test_the_bandit_learns_from_observed_scores() -> None:
    proposer = ArchitectureProposer()
    parent = _entry("p", load_task("mqar").source, score=0.3)
    proposal = proposer.propose(_brief("mqar", "improve", parent))
    name = json.loads(proposal.meta["applied"])[0]
    proposer.observe(proposal, parent_score=0.3, score=0.6)
    pulls, mean = proposer.bandit.snapshot()[name]
    assert pulls == 1 and mean > 0


def test_the_builtin_proposer_dispatches_architecture_briefs() -> None:
    builtin = BuiltinProposer()
    parent = _entry("p", load_task("digits").source)
    proposal = builtin.propose(_brief("digits", "improve", parent))
    assert proposal.code and proposal.meta["kind"] == "architecture"
    builtin.observe(proposal, parent_score=0.5, score=0.7)  # routed, not a kernel transform
    assert all(name not in builtin.bandit.arms for name in MUTATIONS)


def test_no_mutation_left_is_an_error_not_a_repeat() -> None:
    proposer = ArchitectureProposer()
    tiny = "import torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n    def forward(self, x):\n        return x\n"
    proposal = proposer.propose(_brief("digits", "improve", _entry("p", tiny)))
    assert proposal.code == "" and "no architecture mutation applies" in (proposal.error or "")


def test_kernel_resizing_never_reaches_zero() -> None:
    code = load_task("digits").files["cnn_classifier.py"].replace("kernel_size=3, padding=1",
                                                                  "kernel_size=2, padding=1")
    for seed in range(20):
        tree = ast.parse(code)
        changes = MUTATIONS["kernel_size"](tree, random.Random(seed), Target(sequence=False))
        assert changes and "-> 0" not in changes[0].detail and "-> -" not in changes[0].detail
