"""`daedalus eval`: the report, --json, and exit codes, through the real CLI and sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daedalus.agent.cli import app

HERE = Path(__file__).parent / "candidates"
TASK = str(HERE / "task_swish.py")
SMALL = ["--set", "batch_size=8", "--set", "dim=1024"]
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["eval", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_for_a_good_candidate() -> None:
    code, out, _ = run(TASK, str(HERE / "good_fused.py"), *SMALL, "--json")
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "ok" and record["correct"] is True
    assert record["speedup"] > 0 and record["score"] == record["speedup"]
    assert record["error"] is None
    assert record["task"] == "task_swish[batch_size=8,dim=1024]"
    assert record["overrides"] == {"batch_size": 8, "dim": 1024}
    assert {"ref_ms", "cand_ms", "threads"} <= set(record["metrics"])


def test_failing_candidate_still_exits_zero() -> None:
    code, out, _ = run(TASK, str(HERE / "hostile" / "zeros.py"), *SMALL, "--json")
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "incorrect" and record["correct"] is False
    assert record["speedup"] is None and record["score"] == 0.0 and "values" in record["error"]


def test_rejected_candidate_in_the_report() -> None:
    code, out, _ = run(TASK, str(HERE / "hostile" / "fork_bomb.py"), *SMALL)
    assert code == 0
    assert "status rejected" in out and "[file-access]" in out


def test_timeout_option() -> None:
    code, out, _ = run(TASK, str(HERE / "hostile" / "infinite_loop.py"), *SMALL,
                       "--timeout", "1.5", "--json")
    assert code == 0
    assert json.loads(out)["status"] == "timeout"


def test_readable_report() -> None:
    code, out, _ = run(TASK, str(HERE / "good_fused.py"), *SMALL)
    assert code == 0
    for text in ("task_swish[batch_size=8,dim=1024]", "status ok", "speedup", "reference",
                 "candidate", "median ms", "machine:"):
        assert text in out, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_task", str(HERE / "good_fused.py")], "no shipped task named"),
        ([TASK, str(HERE / "missing.py")], "cannot read the candidate"),
        ([TASK, str(HERE / "good_fused.py"), "--set", "nope=3"], "cannot override nope"),
        ([TASK, str(HERE / "good_fused.py"), "--backend", "abacus"], "unknown backend"),
        ([TASK, str(HERE / "good_fused.py"), "--sandbox", "vm"], "unknown sandbox"),
        ([str(HERE / "task_broken_inputs.py"), str(HERE / "good_fused.py")], "get_inputs() raised"),
    ],
)
def test_usage_and_task_errors_exit_2(args: list[str], message: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert message in " ".join(err.split()), err
    assert out == ""
