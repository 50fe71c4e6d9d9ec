"""The OpenEvolve side-by-side benchmark's pieces that must stay right without running it:
the scripted stub (same programs to both tools, hostile first, analyst not counted, kill
hook), the parsers of OpenEvolve checkpoints and the Daedalus archive, and the tables."""

from __future__ import annotations

import ast
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.peers.report import daedalus_state, markdown, openevolve_state
from benchmarks.peers.run import describe_hostile, tables
from benchmarks.peers.scripts import HOSTILE, TASK_DIR, Conductor
from benchmarks.peers.tools import CONFIG, Run
from daedalus.archive import store
from daedalus.archive.db import open_archive
from daedalus.tasks.program import keep_fixed_parts
from tests.stub_llm import StubLLM


def _ask(url: str, model: str, system: str = "You are the engineer.") -> str:
    body = json.dumps({"model": model, "messages": [{"role": "system", "content": system},
                                                    {"role": "user", "content": "improve"}]})
    request = urllib.request.Request(f"{url}/chat/completions", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # 127.0.0.1 only
        return json.loads(response.read())["choices"][0]["message"]["content"]


def _code(reply: str) -> str:
    return reply.split("```python\n", 1)[1].rsplit("```", 1)[0]


def test_stub_gives_both_tools_the_same_programs(tmp_path: Path) -> None:
    killed: list[int] = []
    conductor = Conductor(tmp_path, 4242)
    conductor.kill_at["bench-daedalus-perf-0"] = (2, lambda: killed.append(1))
    initial = (TASK_DIR / "initial_program.py").read_text()
    with StubLLM(conductor) as stub:
        a = [_ask(stub.url, "bench-openevolve-perf-0") for _ in range(3)]
        assert _ask(stub.url, "bench-daedalus-perf-0", "You are the analyst; one lesson") == "- none"
        b = [_ask(stub.url, "bench-daedalus-perf-0") for _ in range(3)]
        hostile = _ask(stub.url, "bench-openevolve-os_exit-0")
        after = _ask(stub.url, "bench-openevolve-os_exit-0")
    assert a == b and len(set(a)) == 3 and killed == [1]
    assert conductor.analyst == {"bench-daedalus-perf-0": 1}
    assert conductor.counts == {"bench-openevolve-perf-0": 3, "bench-daedalus-perf-0": 3,
                                "bench-openevolve-os_exit-0": 2}
    for reply in (*a, hostile, after):
        code = _code(reply)
        ast.parse(code)
        assert keep_fixed_parts(initial, code) == (code, False)  # only the block changed
    assert "# hostile: os_exit" in hostile and "os._exit(0)" in hostile
    assert _code(after) == _code(a[0])  # the ordinary sequence follows the hostile program
    assert CONFIG.format(iterations=5, checkpoint=1, url="u", model="m", timeout=3, parallel=1).count("${BENCH_STUB_KEY}") == 1
    assert len(HOSTILE) == 9


def _oe_program(out: Path, pid: str, iteration: int, metrics: dict[str, Any], parent: str | None) -> None:
    (out / f"{pid}.json").write_text(json.dumps({"id": pid, "code": f"# {pid}\n", "metrics": metrics,
                                                 "iteration_found": iteration, "parent_id": parent}))


def test_openevolve_checkpoint_parser(tmp_path: Path) -> None:
    for n in (5, 10):
        programs = tmp_path / "checkpoints" / f"checkpoint_{n}" / "programs"
        programs.mkdir(parents=True)
        (programs.parent / "metadata.json").write_text(json.dumps({"last_iteration": n, "best_program_id": "c"}))
    programs = tmp_path / "checkpoints" / "checkpoint_10" / "programs"
    _oe_program(programs, "init", 0, {"combined_score": 0.5}, None)
    _oe_program(programs, "a", 1, {"combined_score": 0.0, "error": "All trials failed"}, "init")
    _oe_program(programs, "b", 2, {"error": 0.0, "timeout": True}, "init")
    _oe_program(programs, "c", 3, {"combined_score": float("inf")}, "a")
    state = openevolve_state(tmp_path)
    assert state.last_iteration == 10 and state.kept == 3 and state.valid == 1
    assert [p.status for p in state.programs] == ["ok", "error", "timeout", "ok"]
    assert state.best == float("inf")
    assert openevolve_state(tmp_path / "missing").kept == 0


def test_daedalus_archive_parser_and_tables(tmp_path: Path) -> None:
    archive = open_archive(f"sqlite:///{tmp_path / '.daedalus' / 'archive.db'}")
    with archive.session() as s, s.begin():
        run = store.create_run(s, task="t", config={})
        for i, status in enumerate(["ok", "ok", "timeout"]):
            c = store.add_candidate(s, run_id=run.id, task="t", code=f"# hostile: x\n{i}" if i == 2 else str(i),
                                    code_hash=str(i))
            store.record_evaluation(s, candidate_id=c.id, status=status, score=0.5 if status == "ok" else 0.0,
                                    error=None if status == "ok" else "exceeded the wall-clock limit of 10 s; killed")
        store.update_run_status(s, run_id=run.id, status="finished")
    state = daedalus_state(tmp_path)
    assert state.finished and state.kept == 2 and state.valid == 1 and state.best == 0.5
    cell = describe_hostile(Run("daedalus", "x", tmp_path, returncode=0, wall_s=12.0), state, False, 0, {})
    assert cell.startswith("`timeout` (exceeded the wall-clock limit of 10 s)") and "later 1/3 ok" in cell
    died_pool = describe_hostile(Run("openevolve", "x", tmp_path, returncode=0), state, False, 0, {"broken_pool": True})
    assert "worker pool broken" in died_pool
    died = describe_hostile(Run("openevolve", "x", tmp_path, returncode=-9, leftovers=["1 x"]), state, True, 2, {})
    assert "**run died**" in died and "file written outside" in died and "2 loopback" in died
    results = {"perf": {t: [{"per_iteration_s": 0.2, "steady_s": 0.1, "startup_s": 2.0, "peak_pss_mb": 80.0,
                             "kept": 50, "valid": 49, "best": 0.9, "llm_requests": 50}]
                        for t in ("openevolve", "daedalus")},
               "hostile": {"os_exit": {"openevolve": died, "sandbox": cell, "daedalus": cell}}}
    text = tables(results, type("Args", (), {"iterations": 50})())
    assert "| wall time per iteration" in text and "50 (49)" in text and "| os_exit" in text
    assert markdown(["a", "b"], [["1", "22"]]).splitlines()[1] == "|---|----|"


def test_stub_latency_delays_every_reply(tmp_path: Path) -> None:
    conductor = Conductor(tmp_path, 4242, latency_s=0.3)  # --llm-latency 0.3
    with StubLLM(conductor) as stub:
        started = time.monotonic()
        reply = _ask(stub.url, "bench-daedalus-perf-0")
        took = time.monotonic() - started
    assert "```python" in reply and took >= 0.3
    assert conductor.times["bench-daedalus-perf-0"][0] < started + 0.3  # recorded on arrival
