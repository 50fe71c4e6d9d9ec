"""`daedalus tasks list/show/check` through typer, and the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from daedalus.agent.cli_tasks import app
from daedalus.tasks import list_tasks

RELU = Path(__file__).parent / "data" / "kernelbench" / "19_ReLU.py"
runner = CliRunner()

RECORD_TYPES = {
    "name": str,
    "kind": str,
    "category": str,
    "description": str,
    "path": str,
    "atol": float,
    "rtol": float,
    "backends": list,
    "objectives": list,
    "features": list,
    "seed": int,
    "constants": dict,
    "overrides": dict,
}


def test_list_json_schema() -> None:
    result = runner.invoke(app, ["list", "--kind", "kernel", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert isinstance(records, list)
    assert [r["name"] for r in records] == [t.name for t in list_tasks()]
    for record in records:
        for key, kind in RECORD_TYPES.items():
            assert isinstance(record[key], kind), (record["name"], key)
        assert record["kind"] == "kernel"
        assert Path(record["path"]).is_file()
        assert record["objectives"][0] == {"name": "speedup", "direction": "max"}
        assert record["constants"], f"{record['name']} has no size constant to --set"


def test_list_shows_every_kind_by_default() -> None:
    records = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    kinds = {r["name"]: r["kind"] for r in records}
    assert kinds["swish_scale"] == "kernel"
    assert kinds["mqar"] == "architecture"
    assert kinds["function_minimization"] == "program"
    only = json.loads(runner.invoke(app, ["list", "--kind", "architecture", "--json"]).stdout)
    assert {r["kind"] for r in only} == {"architecture"} and len(only) >= 4
    bad = runner.invoke(app, ["list", "--kind", "kernels"])
    assert bad.exit_code == 2 and "choose one of" in bad.output


def test_list_table_names_every_task() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for task in list_tasks():
        assert task.name in result.stdout


def test_console_script_lists_json_quickly() -> None:
    # The installed entry point, as a user runs it: the group is wired and imports stay light.
    daedalus = Path(sys.executable).with_name("daedalus")
    out = subprocess.run(
        [str(daedalus), "tasks", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    )
    names = {r["name"] for r in json.loads(out.stdout)}
    assert "swish_scale" in names
    probe = "import sys, daedalus.agent.cli_tasks; print('torch' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False", "cli_tasks must import torch lazily"


def test_show_prints_metadata_and_source() -> None:
    result = runner.invoke(app, ["show", "swish_scale"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "fusion" in result.stdout
    assert "class Model(nn.Module):" in result.stdout
    assert "batch_size=128" in result.stdout  # the constants line


def test_show_path_with_overrides_shows_the_rewritten_source() -> None:
    result = runner.invoke(app, ["show", str(RELU), "--set", "dim=1024"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "dim = 1024" in result.stdout and "dim = 16384" not in result.stdout
    assert "overrides" in result.stdout


def test_show_json_includes_source_and_overrides() -> None:
    result = runner.invoke(app, ["show", str(RELU), "--set", "batch_size=2", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["name"] == "19_ReLU" and record["category"] == "activation"
    assert record["overrides"] == {"batch_size": 2}
    assert record["source"] == RELU.read_text()


def test_show_unknown_task_exits_2_with_a_hint() -> None:
    result = runner.invoke(app, ["show", "no_such_task"])
    assert result.exit_code == 2
    assert "no shipped task named 'no_such_task'" in result.stderr
    assert "daedalus tasks list" in result.stderr


def test_bad_override_exits_2_naming_the_valid_constants() -> None:
    result = runner.invoke(app, ["show", str(RELU), "--set", "width=3"], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "width" in result.stderr and "dim=16384" in result.stderr
    result = runner.invoke(app, ["show", str(RELU), "--set", "dim"])
    assert result.exit_code == 2 and "expected NAME=VALUE" in result.stderr


def test_check_broken_task_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(RELU.read_text().replace("x = torch.randn", "x = torch.nope"))
    result = runner.invoke(app, ["check", str(broken)], env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert "get_inputs() raised AttributeError" in result.stderr
    assert str(broken) in result.stderr
