"""`daedalus run DIR` end to end on a program task: the built-in proposer offline, and an
OpenEvolve-style config.yaml driving the LLM proposer (the scripted stub on 127.0.0.1)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daedalus.archive.db import open_archive
from daedalus.archive.models import Candidate, Lesson
from tests.stub_llm import STUB_API_KEY, STUB_KEY_ENV, StubLLM

DAEDALUS = [sys.executable, "-m", "daedalus.agent.cli"]
FIXED_TAIL = "def main():\n    return run()\n"
INITIAL = f"# EVOLVE-BLOCK-START\ndef run(scale=1.0):\n    return 0.25 * scale\n# EVOLVE-BLOCK-END\n\n\n{FIXED_TAIL}"
EVALUATOR = textwrap.dedent('''\
    import importlib.util

    def evaluate(program_path):
        spec = importlib.util.spec_from_file_location("program", program_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        value = module.main()
        return {"combined_score": value, "note": f"ARTIFACT-MARK main() gave {value!r}"}
    ''')


def _task(tmp_path: Path, config: str = "") -> Path:
    task = tmp_path / "my_task"
    task.mkdir()
    (task / "initial_program.py").write_text(INITIAL)
    (task / "evaluator.py").write_text(EVALUATOR)
    if config:
        (task / "config.yaml").write_text(config)
    return task


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DAEDALUS, *args], cwd=cwd, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def _candidates(cwd: Path) -> list[Candidate]:
    archive = open_archive(f"sqlite:///{cwd / '.daedalus' / 'archive.db'}")
    with archive.session() as s:
        rows = list(s.scalars(select(Candidate).order_by(Candidate.seq)))
        for row in rows:
            _ = row.evaluation
        return rows


def test_builtin_run_on_a_program_directory(tmp_path: Path) -> None:
    task = _task(tmp_path)
    out = _run(["run", str(task), "--iterations", "4", "--workers", "1", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["iterations"] == 4
    assert summary["by_status"] == {"ok": 5} and summary["best_score"] >= 0.25
    assert "program task my_task" in out.stderr
    rows = _candidates(tmp_path)
    assert rows[0].code == INITIAL and rows[0].mode == "seed"
    assert all(r.code.endswith(FIXED_TAIL) for r in rows)
    assert all("ARTIFACT-MARK" in json.dumps(r.evaluation.artifacts) for r in rows if r.evaluation)


def _reply(code: str) -> str:
    return f"Changed the scale.\n\n```python\n{code}```\n"


def test_llm_run_from_an_openevolve_config_feeds_artifacts_back(tmp_path: Path) -> None:
    changed_tail = INITIAL.replace("return run()", "return run() * 100")  # outside: reverted
    replies = [
        _reply(changed_tail.replace("scale=1.0", "scale=2.0")),
        _reply(INITIAL.replace("0.25 * scale", "float('nan')")),
        _reply(INITIAL.replace("0.25 * scale", "float('inf')")),
        _reply("def run():\n    return 9.0\n\n\ndef main():\n    return run()\n"),  # markers gone
        _reply(INITIAL.replace("scale=1.0", "scale=3.0")),
    ]
    counter = itertools.count()

    def script(request: dict[str, Any]) -> str:
        system = json.dumps(request.get("messages", [])[:1]).lower()
        if "analyst" in system:
            return "- Larger scales scored higher."
        return replies[min(next(counter), len(replies) - 1)]

    with StubLLM(script) as stub:
        config = textwrap.dedent(f'''\
            max_iterations: 5
            diff_based_evolution: false
            llm:
              api_base: "{stub.url}"
              models:
                - name: "stub"
              api_key: "${{{STUB_KEY_ENV}}}"
              temperature: 0.3
            prompt:
              system_message: "Maximise main(). SYSTEM-MARK"
            evaluator:
              timeout: 20
              parallel_evaluations: 1
            checkpoint_interval: 5
            ''')
        task = _task(tmp_path, config)
        out = _run(["run", str(task)], tmp_path, env={STUB_KEY_ENV: STUB_API_KEY})
        requests = list(stub.requests)
    assert out.returncode == 0, out.stderr
    assert "config.yaml, honoured" in out.stderr and "checkpoint_interval" in out.stderr
    assert "score 0.75" in out.stdout  # the human summary; the best is not inf, not nan
    rows = {r.seq: r for r in _candidates(tmp_path)}
    assert len(rows) == 6 and max(r.score or 0.0 for r in rows.values()) == 0.75
    first = rows[2]
    assert first.status == "ok" and first.code.endswith(FIXED_TAIL) and "reverted" in first.description
    errors = [r.evaluation.error or "" for r in rows.values() if r.evaluation]
    assert sum("non-finite score" in e for e in errors) == 2
    assert any("EVOLVE-BLOCK" in e for e in errors)
    proposals = [r for r in requests if "analyst" not in json.dumps(r["messages"][:1]).lower()]
    assert proposals[0]["temperature"] == 0.3
    system = proposals[0]["messages"][0]["content"]
    assert "SYSTEM-MARK" in system and "EVOLVE-BLOCK" in system and "ModelNew" not in system
    users = [m["content"] for r in proposals for m in r["messages"] if m["role"] == "user"]
    assert "ARTIFACT-MARK main() gave 0.25" in users[0]  # the seed's artifacts
    assert any("ARTIFACT-MARK main() gave 0.5" in u for u in users[1:])


def _overlapped(rows: list[Candidate]) -> int:
    """How many candidates were proposed (archived) before the one before them was scored."""
    return sum(
        1 for before, after in itertools.pairwise(rows)
        if before.evaluation is not None and after.created_at < before.evaluation.created_at
    )


def test_lookahead_proposes_while_the_evaluation_runs(tmp_path: Path) -> None:
    # A slow evaluator: with one worker, lookahead 1 prepares the next proposal meanwhile;
    # lookahead 0 waits for every result before it proposes again.
    counts = {}
    for lookahead in ("1", "0"):
        cwd = tmp_path / f"lookahead{lookahead}"
        cwd.mkdir()
        task = _task(cwd)
        (task / "evaluator.py").write_text("import time\n" + EVALUATOR.replace(
            "    value = module.main()", "    time.sleep(0.6)\n    value = module.main()"))
        out = _run(["run", str(task), "--iterations", "4", "--workers", "1",
                    "--lookahead", lookahead, "--json"], cwd)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert summary["iterations"] == 4 and summary["by_status"] == {"ok": 5}
        counts[lookahead] = _overlapped(_candidates(cwd))
    assert counts["0"] == 0
    assert counts["1"] >= 2, counts


def test_builtin_run_stops_when_no_parent_has_anything_to_tune(tmp_path: Path) -> None:
    # No numeric literal inside the EVOLVE-BLOCK: the built-in proposer can never change it.
    task = _task(tmp_path)
    (task / "initial_program.py").write_text(INITIAL.replace("scale=1.0", "scale=True")
                                             .replace("0.25 * scale", "scale / (scale + scale)"))
    out = _run(["run", str(task), "--iterations", "5", "--workers", "1", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["iterations"] == 0
    assert "no new rewrite" in summary["stop_reason"]
    assert [r.mode for r in _candidates(tmp_path)] == ["seed"]  # nothing empty was archived


def test_the_llm_analyst_runs_beside_the_loop_and_its_lessons_are_archived(tmp_path: Path) -> None:
    # The analyst's reply waits until three more proposals arrive: a loop that waited for
    # the analyst (as it once did) would send none, and the reply would time out.
    lock = threading.Lock()
    proposals = itertools.count(1)
    seen = {"proposals": 0}
    during: list[int] = []

    def script(request: dict[str, Any]) -> str:
        system = json.dumps(request.get("messages", [])[:1]).lower()
        if "analyst" in system:
            with lock:
                start = seen["proposals"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and seen["proposals"] - start < 3 < 12 - start:
                time.sleep(0.05)  # (late analyses, with fewer than 3 proposals left, answer at once)
            with lock:
                during.append(seen["proposals"] - start)
            return "- LESSON-MARK larger scales scored higher."
        n = next(proposals)
        with lock:
            seen["proposals"] += 1
        return _reply(INITIAL.replace("scale=1.0", f"scale={n + 1}.0"))

    with StubLLM(script) as stub:
        task = _task(tmp_path, textwrap.dedent(f'''\
            max_iterations: 12
            llm:
              api_base: "{stub.url}"
              models:
                - name: "stub"
              api_key: "${{{STUB_KEY_ENV}}}"
            evaluator:
              parallel_evaluations: 1
            '''))
        (task / "daedalus.toml").write_text("[run]\nreflect_every = 4\n")
        out = _run(["run", str(task), "--json"], tmp_path, env={STUB_KEY_ENV: STUB_API_KEY})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["iterations"] == 12
    assert during and during[0] >= 3, during
    archive = open_archive(f"sqlite:///{tmp_path / '.daedalus' / 'archive.db'}")
    with archive.session() as s:  # every analysis that ran was archived before the run ended
        texts = [lesson.text for lesson in s.scalars(select(Lesson))]
    assert len(texts) >= len(during) and all("LESSON-MARK" in t for t in texts), texts
