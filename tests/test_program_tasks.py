"""Program tasks without the sandbox: loading directories, OpenEvolve config translation,
EVOLVE-BLOCK handling, the program policy and the built-in proposer's edits."""

from __future__ import annotations

import ast
import random
import textwrap
from pathlib import Path

import pytest

from daedalus.sandbox.program_policy import check_program, policy_for
from daedalus.tasks import TaskError, load_task
from daedalus.tasks.program import (
    BlockError,
    describe,
    evolvable_spans,
    keep_fixed_parts,
    list_programs,
    split_blocks,
)
from daedalus.tools.builtin import program_mutate as M
from daedalus.tools.builtin.program_proposer import ProgramProposer
from daedalus.tools.proposer import ArchiveEntry, Brief

OE_EXAMPLE = Path(__file__).parent / "data" / "programs" / "oe_function_minimization"

PROGRAM = textwrap.dedent('''\
    import math

    # EVOLVE-BLOCK-START
    def solve(n=10, rate=0.5):
        return sum(math.sqrt(i) * rate for i in range(n))
    # EVOLVE-BLOCK-END

    def run():
        return solve()
    ''')


def _task_dir(tmp_path: Path, program: str = PROGRAM, evaluator: str | None = None, *,
              config: str | None = None, sidecar: str | None = None) -> Path:
    (tmp_path / "initial_program.py").write_text(program)
    (tmp_path / "evaluator.py").write_text(
        evaluator or "def evaluate(program_path):\n    return {'combined_score': 1.0}\n")
    if config is not None:
        (tmp_path / "config.yaml").write_text(config)
    if sidecar is not None:
        (tmp_path / "daedalus.toml").write_text(sidecar)
    return tmp_path


def test_openevolve_example_loads_as_it_is_and_says_what_carries_over() -> None:
    task = load_task(str(OE_EXAMPLE))
    assert task.kind == "program" and task.name == "oe_function_minimization"
    assert task.source.startswith("# EVOLVE-BLOCK-START")
    assert "evaluator.py" in task.files and "initial_program.py" not in task.files
    s = task.settings
    assert s["stages"] == ["evaluate_stage1", "evaluate_stage2", "evaluate"]
    assert s["cascade_thresholds"] == [0.5, 0.75] and s["limits"] == {"timeout_s": 60.0}
    assert s["instructions"].startswith("You are an expert programmer")
    run = s["run"]
    assert run["iterations"] == 10 and run["edit_format"] == "diff" and run["workers"] == 3
    assert run["models"] == ["openai/gemini-2.0-flash-lite", "openai/gemini-2.0-flash"]
    assert run["api_key_env"] == "GEMINI_API_KEY" and run["temperature"] == 0.7
    assert run["islands"] == 3 and run["exploit"] == 0.7 and run["explore"] == 0.2
    assert abs(run["random"] - 0.1) < 1e-9
    ignored = "\n".join(s["ignored"])
    for key in ("checkpoint_interval", "llm.top_p", "database.population_size",
                "prompt.use_template_stochasticity", "llm.primary_model_weight"):
        assert key in ignored
    lines = "\n".join(describe(task))
    assert "evaluate_stage1 -> evaluate_stage2" in lines and "ignored" in lines
    assert "max_iterations = 10 -> --iterations" in lines


def test_shipped_program_task_loads_by_name() -> None:
    names = [p.name for p in list_programs()]
    assert "function_minimization" in names
    task = load_task("function_minimization")
    assert task.kind == "program" and task.objectives[0].name == "combined_score"
    assert task.settings["blocks"] == 1 and task.settings["limits"]["memory_mb"] == 3072


def test_sidecar_wins_and_wrong_settings_name_the_fix(tmp_path: Path) -> None:
    d = _task_dir(tmp_path, config="evaluator:\n  timeout: 5\n",
                  sidecar='score = "quality"\nname = "mine"\n[limits]\ntimeout_s = 9\n')
    task = load_task(str(d))
    assert task.name == "mine" and task.settings["score"] == "quality"
    assert task.settings["score_explicit"] and task.settings["limits"]["timeout_s"] == 9
    (d / "daedalus.toml").write_text('scroe = "x"\n')
    with pytest.raises(TaskError, match="unknown key 'scroe'"):
        load_task(str(d))
    (d / "daedalus.toml").write_text("")
    (d / "config.yaml").write_text("language: rust\n")
    with pytest.raises(TaskError, match="Python programs only"):
        load_task(str(d))
    (d / "config.yaml").write_text("evaluator: [1, 2\n")
    with pytest.raises(TaskError, match="fix the YAML"):
        load_task(str(d))


def test_broken_directories_are_task_errors(tmp_path: Path) -> None:
    d = _task_dir(tmp_path, evaluator="def score(p):\n    return {}\n")
    with pytest.raises(TaskError, match="no `evaluate"):
        load_task(str(d))
    d = _task_dir(tmp_path, program="# EVOLVE-BLOCK-START\nx = 1\n")
    with pytest.raises(TaskError, match="unmatched"):
        load_task(str(d))
    d = _task_dir(tmp_path, program="def f(:\n")
    with pytest.raises(TaskError, match="syntax error at line 1"):
        load_task(str(d))
    with pytest.raises(TaskError, match="--set applies to kernel tasks only"):
        load_task(str(_task_dir(tmp_path)), {"n": 3})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TaskError, match="program task directory"):
        load_task(str(empty))


def test_evolve_blocks_keep_the_fixed_parts() -> None:
    outside, blocks = split_blocks(PROGRAM) or ([], [])
    assert len(blocks) == 1 and len(outside) == 2
    assert evolvable_spans(PROGRAM) == [(3, 5)]
    child = PROGRAM.replace("rate=0.5", "rate=0.7").replace("return solve()", "return 42")
    code, reverted = keep_fixed_parts(PROGRAM, child)
    assert reverted and "rate=0.7" in code and "return solve()" in code and "42" not in code
    same, reverted = keep_fixed_parts(PROGRAM, PROGRAM.replace("0.5", "0.6"))
    assert not reverted and "0.6" in same
    with pytest.raises(BlockError, match="keep its 1 EVOLVE-BLOCK"):
        keep_fixed_parts(PROGRAM, "def solve():\n    return 1\n")
    assert keep_fixed_parts("x = 1\n", "y = 2\n") == ("y = 2\n", False)  # no blocks: free


def test_program_policy_allows_compute_and_what_the_task_imports() -> None:
    assert check_program("import random, time, scipy.optimize\nx = random.random()\n") == []
    rules = {v.rule for v in check_program("import os\nos._exit(0)\n")}
    assert "file-access" in rules
    assert {v.rule for v in check_program("import socket\n")} == {"network"}
    assert {v.rule for v in check_program("import json\njson.dumps = repr\n")} == {"monkeypatch"}
    assert {v.rule for v in check_program("import tomllib\n")} == {"import"}
    assert check_program("import tomllib\n", extra=["tomllib"]) == []
    # The task author's own imports stay allowed, denied or not.
    assert check_program("import os\nprint(os.getcwd())\n", initial="import os\n") == []
    assert policy_for("x = 1\n", {"policy": "off"}) is None


def test_mutations_stay_inside_the_blocks_and_parse() -> None:
    found = M.slots(PROGRAM)
    assert [s.value for s in found] == [10, 0.5]  # `run()` outside the block has none
    rng = random.Random(1)
    for _ in range(20):
        made = M.mutate(PROGRAM, rng, count=2)
        assert made is not None
        code, mutations = made
        ast.parse(code)
        assert code.split("# EVOLVE-BLOCK-END")[1] == PROGRAM.split("# EVOLVE-BLOCK-END")[1]
        assert all(m.before != m.after for m in mutations)
    assert M.scaled(3, 1.1) == 4 and M.scaled(1, 0.5) == 2 and M.scaled(-2, 0.25) == -1
    other = PROGRAM.replace("n=10", "n=40").replace("rate=0.5", "rate=0.9")
    crossed = M.cross_constants(PROGRAM, other, random.Random(3))
    assert crossed is not None and crossed[0] not in (PROGRAM, other)
    two = PROGRAM.replace("# EVOLVE-BLOCK-END", "def helper():\n    return 1\n# EVOLVE-BLOCK-END")
    a = two.replace("return 1", "return 2")
    b = two.replace("math.sqrt(i) * rate", "i * rate")
    for seed in range(5):  # one function from each parent: never a copy of either
        swapped = M.cross_functions(a, b, random.Random(seed))
        assert swapped is not None and len(swapped[1]) == 1
        assert swapped[0] not in (a, b) and ("return 2" in swapped[0]) == ("i * rate" in swapped[0])


def _entry(cid: str, code: str, score: float, status: str = "ok") -> ArchiveEntry:
    return ArchiveEntry(candidate_id=cid, code=code, status=status, score=score)


def test_builtin_program_proposer_never_repeats_and_says_when_it_is_stuck() -> None:
    proposer = ProgramProposer()
    parent = _entry("p", PROGRAM, 1.0)
    codes = set()
    for seed in range(8):
        brief = Brief(task_name="t", task_source="", category="program", mode="improve",
                      parent=parent, seed=seed, kind="program")
        proposal = proposer.propose(brief)
        assert proposal.code and proposal.error is None and proposal.code not in codes
        codes.add(proposal.code)
        proposer.observe(proposal, parent_score=1.0, score=2.0)
    assert proposer._good  # improvements are remembered as moves to replay
    stuck = _entry("s", "# EVOLVE-BLOCK-START\ndef f():\n    return 0\n# EVOLVE-BLOCK-END\n", 1.0)
    brief = Brief(task_name="t", task_source="", category="program", mode="improve",
                  parent=stuck, kind="program")
    assert "--proposer llm" in (proposer.propose(brief).error or "")
    cross = Brief(task_name="t", task_source="", category="program", mode="crossover",
                  parent=parent, inspirations=(_entry("q", PROGRAM.replace("n=10", "n=30").replace("0.5", "0.25"), 2.0),),
                  kind="program", seed=5)
    assert proposer.propose(cross).description.startswith("crossover")
