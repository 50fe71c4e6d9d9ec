"""`daedalus archive diff|lineage|export|import|hardware`, the shared filters and --json,
and `daedalus serve`'s safety checks, on real archive files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from daedalus.agent import cli_serve
from daedalus.agent.cli import app as root
from daedalus.archive import store
from daedalus.archive.db import ENV_URL, open_archive
from tests.review_data import CPU_FP, GPU_FP, Built, build


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Built:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv(ENV_URL, url)
    return build(url)


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(root, ["archive", *args])
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.stderr


def test_diff_against_parent_and_between_two(built: Built) -> None:
    out = run("diff", built.ids["best"][:8])
    assert "-        # variant 11" in out and "+        # variant 12" in out and "+1 -1" not in out
    data = json.loads(run("diff", built.ids["best"], built.ids["seed"], "--json"))
    assert data["from"] == built.ids["seed"] and data["to"] == built.ids["best"]
    assert data["added"] == 2 and data["removed"] == 2
    assert "return x * torch.sigmoid(x) * 1.12" in data["diff"]
    same = run("diff", built.ids["seed"], built.ids["seed"])
    assert "identical" in same
    err = run("diff", built.ids["seed"], code=2)
    assert "no parent" in err and "Fix:" in err


def test_lineage_tree_text_and_json(built: Built) -> None:
    out = run("lineage", built.ids["chain_mid"][:10], "--depth", "2")
    assert f"#1 {built.ids['seed'][:12]}" in out  # root first
    assert "folded" in out and "ok" in out and "score" in out
    data = json.loads(run("lineage", built.ids["seed"], "--json", "--depth", "1"))
    (root,) = data["tree"]
    assert root["id"] == built.ids["seed"] and data["ancestors"] == 0
    assert {c["seq"] for c in root["children"]} == {2, 14, 15, 16}
    step1 = next(c for c in root["children"] if c["seq"] == 2)
    assert step1["more_children"] == 1  # step 2 lies beyond --depth 1
    flat = json.loads(run("lineage", built.ids["best"], "--json", "--no-fold"))
    depth, node = 0, flat["tree"][0]
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == 13 and node["id"] == built.ids["pending"]


def test_filters_on_every_listing(built: Built) -> None:
    cpu, gpu = store.fingerprint_hash(CPU_FP), store.fingerprint_hash(GPU_FP)
    runs = json.loads(run("runs", "--backend", "cuda", "--json"))
    assert [r["id"] for r in runs] == [built.kernel_run]
    assert json.loads(run("runs", "--fingerprint", "0000", "--json")) == []
    listed = json.loads(run("list", "--run", built.kernel_run, "--backend", "cuda", "--json"))
    assert {c["seq"] for c in listed} == {4, 7, 10, 13}
    on_gpu = json.loads(run("list", "--run", built.kernel_run, "--fingerprint", gpu[:5], "--json"))
    assert [c["id"] for c in on_gpu] == [c["id"] for c in listed]
    by_task = json.loads(run("list", "--task", "mqar", "--json"))
    assert {c["run_id"] for c in by_task} == {built.arch_run} and len(by_task) == 5
    failed = json.loads(
        run("list", "--run", built.kernel_run, "--status", "compile_error", "--json")
    )
    assert [c["id"] for c in failed] == [built.ids["bad"]]
    found = json.loads(run("list", "--run", built.kernel_run, "--search", "step 5 fused", "--json"))
    assert [c["seq"] for c in found] == [6]
    table = run("list", "--task", "swish_scale", "--backend", "cpu")
    assert "Task swish_scale" in table
    best = json.loads(run("best", "--run", built.kernel_run, "--fingerprint", cpu, "--json"))
    assert best["score"] == pytest.approx(2.1) and best["fingerprint"] == CPU_FP
    err = run("best", "--run", built.kernel_run, "--backend", "npu", code=2)
    assert "Fix:" in err
    err = run("list", "--status", "bogus", code=2)
    assert "unknown status" in err
    hw = json.loads(run("hardware", "--json"))
    assert {h["fingerprint_hash"] for h in hw} == {cpu, gpu}
    assert "Test GPU 1" in run("hardware")


def test_export_import_through_the_cli(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exports" / "kernel.jsonl"
    run("export", "--run", built.kernel_run, "--output", str(out))
    assert out.exists() and not list(out.parent.glob(".kernel.jsonl.*"))
    csv_text = run("export", "--task", "mqar", "--format", "csv")
    assert (
        csv_text.splitlines()[0].startswith("run_id,task,id,seq")
        and len(csv_text.splitlines()) == 6
    )
    other = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv(ENV_URL, other)
    dry = json.loads(run("import", str(out), "--dry-run", "--json"))
    assert dry["added"]["candidate"] == 17 and dry["dry_run"]
    with open_archive(other) as a, a.session(readonly=True) as s:
        assert store.latest_run(s) is None
    table = run("import", str(out))
    assert "candidates" in table and "17" in table
    again = json.loads(run("import", str(out), "--json"))
    assert again["added"] == {} and again["same"]["candidate"] == 17
    # A conflict: the same candidate id with other content makes the exit status 1.
    lines = out.read_text().splitlines()
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(x.replace('"code_hash":"h3"', '"code_hash":"zz"') for x in lines))
    result = CliRunner().invoke(root, ["archive", "import", str(tampered)])
    assert result.exit_code == 1 and "conflict: candidate" in result.stdout
    err = run("import", str(tmp_path / "missing.jsonl"), code=2)
    assert "Fix:" in err
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-1]))
    err = run("import", str(cut), code=2)
    assert "cut short" in err


def test_export_streams_to_stdout_in_a_real_process(built: Built) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daedalus.agent.cli", "archive", "export", "--run", built.arch_run],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    records = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["type"] for r in records][:2] == ["header", "run"] and records[-1]["type"] == "end"
    assert "exported" in proc.stderr


def test_serve_refuses_unsafe_binds_and_bad_tokens(built: Built) -> None:
    with pytest.raises(cli_serve.ServeError, match="without an access token"):
        cli_serve.plan("0.0.0.0", 8000, None)
    with pytest.raises(cli_serve.ServeError, match="without an access token"):
        cli_serve.plan("192.168.1.5", 8000, None)
    with pytest.raises(cli_serve.ServeError, match="at least 16"):
        cli_serve.plan("0.0.0.0", 8000, "short")
    with pytest.raises(cli_serve.ServeError, match="at least 16"):
        cli_serve.plan("127.0.0.1", 8000, "has spaces in it, bad!")
    local = cli_serve.plan("127.0.0.1", 8123, None)
    assert local.token is None and local.url == "http://127.0.0.1:8123/"
    made = cli_serve.plan("0.0.0.0", 8000, "auto")
    assert made.token and len(made.token) >= 16 and made.url.endswith(f"?token={made.token}")
    assert cli_serve.plan("::1", 8000, None).url == "http://[::1]:8000/"
    # Through the real command: exit 2 with the fix, before anything binds.
    result = CliRunner().invoke(root, ["serve", "--host", "0.0.0.0", "--port", "8765"])
    assert result.exit_code == 2 and "Fix:" in result.stderr


def test_serve_says_when_there_is_no_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_URL, f"sqlite:///{tmp_path / 'none.db'}")
    result = CliRunner().invoke(root, ["serve"])
    assert result.exit_code == 2 and "no archive" in result.stderr and "Fix:" in result.stderr
    assert not (tmp_path / "none.db").exists()


def test_startup_stays_light() -> None:
    code = (
        "import sys, daedalus.agent.cli\n"
        "heavy = [m for m in ('torch', 'litellm', 'langgraph', 'fastapi', 'uvicorn', 'sqlalchemy',"
        " 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == ""
