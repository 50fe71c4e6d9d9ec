"""`daedalus archive runs|list|show|best` on a real archive file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daedalus.agent.cli_archive import app
from daedalus.archive import store
from daedalus.archive.db import ENV_URL, open_archive

CODE = "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x * torch.sigmoid(x)\n"
RUN_KEYS = {"id", "task", "status", "iterations", "best_score", "cost_usd", "created_at"}
BEST_KEYS = {"id", "run_id", "status", "score", "speedup", "code"}


@pytest.fixture
def db(archive_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV_URL, archive_url)
    return archive_url


def _populate(url: str) -> dict[str, str]:
    with open_archive(url) as archive, archive.session() as s:
        old = store.create_run(s, task="gelu", run_id="aaaa00000001")
        run = store.create_run(s, task="swish", run_id="bbbb00000001", model="openai/gpt-x")
        store.update_run_status(s, run_id=old.id, status="finished")
        root = store.add_candidate(
            s, run_id=run.id, code="# reference\n", code_hash="r", mode="seed"
        )
        store.record_evaluation(
            s, candidate_id=root.id, status="ok", correct=True, score=1.0, speedup=1.0
        )
        best = store.add_candidate(
            s, run_id=run.id, code=CODE, code_hash="b", parent_id=root.id, description="fused swish"
        )
        store.record_evaluation(
            s,
            candidate_id=best.id,
            status="ok",
            correct=True,
            score=1.42,
            speedup=1.42,
            metrics={"ref_ms": 2.0, "cand_ms": 1.41},
            fingerprint={"cpu": "Test CPU 9000", "torch": "2.13.0"},
            logs="timing done\n[bold red]not markup[/bold red]",
            backend="cpu",
            sandbox="process",
        )
        bad = store.add_candidate(
            s, run_id=run.id, code="def broken(:\n", code_hash="x", parent_id=best.id
        )
        store.record_evaluation(
            s, candidate_id=bad.id, status="compile_error", error="SyntaxError: invalid syntax"
        )
        store.add_spend(s, run_id=run.id, iterations=3, cost_usd=0.0125)
        return {"run": run.id, "old": old.id, "root": root.id, "best": best.id, "bad": bad.id}


def _ok(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _err(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Fix:" in result.stderr
    return result.stderr


def test_runs_json_and_table(db: str) -> None:
    ids = _populate(db)
    runs = json.loads(_ok(["runs", "--json"]))
    assert [r["id"] for r in runs] == [ids["run"], ids["old"]]
    assert all(set(r) >= RUN_KEYS for r in runs)
    assert runs[0]["iterations"] == 3 and runs[0]["best_score"] == 1.42
    assert runs[0]["cost_usd"] == pytest.approx(0.0125) and runs[1]["status"] == "finished"
    assert [r["id"] for r in json.loads(_ok(["runs", "--json", "--task", "gelu"]))] == [ids["old"]]
    assert json.loads(_ok(["runs", "--json", "--status", "failed"])) == []
    table = _ok(["runs"])
    assert ids["run"] in table and "swish" in table and "1.42" in table
    assert "unknown run status" in _err(["runs", "--status", "paused"])


def test_list_json(db: str) -> None:
    ids = _populate(db)
    rows = json.loads(_ok(["list", "--run", "bbbb", "--json"]))
    assert [r["id"] for r in rows] == [ids["bad"], ids["best"], ids["root"]]
    assert {"id", "run_id", "seq", "status", "score", "speedup", "parent_id"} <= set(rows[0])
    assert rows[1]["speedup"] == 1.42 and "code" not in rows[0]
    top = json.loads(_ok(["list", "--json", "--sort", "score", "--limit", "1"]))  # latest run
    assert [r["id"] for r in top] == [ids["best"]]
    failed = json.loads(_ok(["list", "--json", "--status", "compile_error"]))
    assert [r["error"] for r in failed] == ["SyntaxError: invalid syntax"]
    assert "compile_error 1, ok 2" in _ok(["list"])
    assert "no run with id 'ffff'" in _err(["list", "--run", "ffff"])


def test_best_json(db: str) -> None:
    ids = _populate(db)
    best = json.loads(_ok(["best", "--json"]))
    assert set(best) >= BEST_KEYS
    assert (best["id"], best["run_id"], best["status"]) == (ids["best"], ids["run"], "ok")
    assert (best["score"], best["speedup"], best["code"]) == (1.42, 1.42, CODE)
    assert best["fingerprint"]["cpu"] == "Test CPU 9000"
    assert json.loads(_ok(["best", "--run", "latest", "--json"]))["id"] == ids["best"]
    assert json.loads(_ok(["best", "--task", "swish", "--json"]))["id"] == ids["best"]
    assert "ModelNew" in _ok(["best"])
    message = _err(["best", "--run", ids["old"]])
    assert "no correct candidate yet" in message and f"--resume {ids['old']}" in message


def test_show(db: str) -> None:
    ids = _populate(db)
    out = _ok(["show", ids["best"][:6]])
    for expected in (ids["best"], "fused swish", "sigmoid", "ref_ms", "Test CPU 9000", "1.420"):
        assert expected in out
    assert "[bold red]not markup[/bold red]" in out  # logs are shown as text, never as markup
    assert ids["root"][:12] in out and "1 children" in out  # lineage summary
    data = json.loads(_ok(["show", ids["bad"], "--json"]))
    assert data["evaluation"]["error"] == "SyntaxError: invalid syntax"
    assert data["lineage"] == [ids["best"], ids["root"]] and data["code"] == "def broken(:\n"


def test_errors_name_the_fix(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_URL, f"sqlite:///{tmp_path / 'missing.db'}")
    assert "no archive at" in _err(["runs"])
    assert not (tmp_path / "missing.db").exists()  # reviewing never creates an archive
    monkeypatch.setenv(ENV_URL, db)
    open_archive(db).close()
    assert "no runs yet" in _err(["runs", "--json"])
    assert "no runs yet" in _err(["best"])
    _populate(db)
    assert "no candidate with id" in _err(["show", "0123"])
    assert "not-an-id" in _err(["show", "not-an-id"])


def test_ambiguous_prefix(db: str) -> None:
    with open_archive(db) as archive, archive.session() as s:
        store.create_run(s, task="t", run_id="abab00000001")
        store.create_run(s, task="t", run_id="abab00000002")
    assert "matches several runs" in _err(["list", "--run", "abab"])


def test_real_entry_point(db: str) -> None:
    """The installed `daedalus` script end to end, and no torch/litellm/langgraph on the
    way (start-up time itself is measured by hand: `time daedalus archive runs`)."""
    ids = _populate(db)
    exe = Path(sys.executable).with_name("daedalus")
    env = {**os.environ, ENV_URL: db}
    probe = (
        "import sys; from daedalus.agent.cli import main; sys.argv=['daedalus','archive','runs','--json'];"
        "\ntry: main()\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'litellm', 'langgraph') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    probe_run = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in probe_run.stderr, probe_run.stderr
    done = subprocess.run(
        [str(exe), "archive", "runs", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["id"] == ids["run"]
