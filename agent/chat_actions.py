"""The chat agent's actions that spend budget or start work: variants and runs.

Each action has two halves. ``prepare`` does what is cheap and safe (checks the
arguments; for a variant it asks the LLM for the code, vets it and checks for duplicates)
and returns either a finished observation or an action that needs the user's yes.
``execute`` does the work once confirmed: evaluate and archive the variant, or start a
run in the background. The chat graph checkpoints between the two, so a confirmation
answered in another process executes exactly what was shown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daedalus import prompts
from daedalus.agent import memory, profile, security
from daedalus.agent.chat_tools import MAX_CODE, ToolError, clip, code_diff, resolve_run
from daedalus.agent.config import RunConfig
from daedalus.agent.recording import record_rejection, record_result
from daedalus.archive import store

if TYPE_CHECKING:
    from daedalus.archive.db import Archive
    from daedalus.sandbox import Evaluator
    from daedalus.tasks.model import Task
    from daedalus.tools.llm import LLMConfig

Status = Callable[[str], None]


@dataclass
class Prepared:
    """What ``prepare`` found: an observation now, or an action awaiting confirmation."""

    observation: dict[str, Any] | None = None
    action: dict[str, Any] | None = None


def run_config(run: Any) -> RunConfig:
    """The settings a run was created with (as ``daedalus run --resume`` rebuilds them)."""
    settings = dict(run.config or {})
    settings.pop("elapsed_s", None)
    if not settings.get("task"):
        raise ToolError(f"run {run.id} has no stored settings (it was imported?); "
                        "start a new run on its task instead")
    return RunConfig(**settings)


def run_task(config: RunConfig, task_path: str) -> Task:
    """The run's task, by the name it was started with, else by the file it was loaded from
    (a relative path given to `daedalus run` elsewhere does not resolve from here)."""
    from daedalus.tasks import TaskError, load_task

    try:
        return load_task(config.task, config.overrides or None)
    except TaskError:
        if not task_path or not Path(task_path).is_file():
            raise
        return load_task(task_path, config.overrides or None)


class Actions:
    """Variants and runs, for one chat session (which owns the evaluators it opens)."""

    def __init__(self, archive: Archive, *, home: Path, llm: LLMConfig,
                 status: Status | None = None) -> None:
        self.archive = archive
        self.home = home
        self.llm = llm
        self.status = status or (lambda message: None)
        self._evaluators: dict[tuple[Any, ...], Evaluator] = {}
        self._stack = ExitStack()  # the evaluators' sandboxes, closed with the session

    def close(self) -> None:
        self._evaluators.clear()
        self._stack.close()

    # ------------------------------------------------------------------ variants

    def propose_variant(self, candidate: str, instruction: str) -> Prepared:
        from daedalus.sandbox.static import normalized_hash

        instruction = instruction.strip()
        if not instruction:
            raise ToolError("propose_variant needs an instruction: what should change?")
        with self.archive.session(readonly=True) as s:
            parent = store.get_candidate(s, candidate_id=candidate)
            run = store.get_run(s, run_id=parent.run_id)
            config = run_config(run)
            entry = memory.entry(parent)
            guidance = memory.guidance_lines(run.guidance or [])
            parent_id, run_id, generation, island = parent.id, run.id, parent.generation + 1, parent.island
            task_path = run.task_path
        task = run_task(config, task_path)
        self.status(f"writing the variant with {self.llm.model}")
        proposal = self._write(task, entry, instruction, guidance)
        if proposal.error:
            raise ToolError(f"the model gave no usable program: {security.redact(proposal.error)}; "
                            "rephrase the instruction or try again")
        code = proposal.code
        verdict = security.vet(code, max_code_bytes=config.max_code_bytes)
        try:
            code_hash = normalized_hash(code)
        except SyntaxError:
            code_hash = "unparsable:" + uuid.uuid5(uuid.NAMESPACE_OID, code).hex
        draft = {
            "kind": "variant", "candidate_id": uuid.uuid4().hex[:16], "parent_id": parent_id,
            "run_id": run_id, "task": task.key, "code": code, "code_hash": code_hash,
            "generation": generation, "island": island, "instruction": instruction,
            "model": proposal.model, "description": proposal.description,
            "prompt": security.redact(proposal.meta.get("prompt", "")),
            "prompt_tokens": proposal.prompt_tokens, "completion_tokens": proposal.completion_tokens,
            "cost_usd": proposal.cost_usd,
        }
        with self.archive.session() as s, s.begin():
            duplicate = (store.find_by_code_hash(s, task=task.key, code_hash=code_hash, run_id=run_id)
                         if verdict.ok else None)
            if verdict.ok and duplicate is None:
                parent_row = store.get_candidate(s, candidate_id=parent_id)
                draft["diff"] = clip(code_diff(parent_row.code, code, before_label=f"candidate {parent_id}",
                                               after_label="variant")[0], MAX_CODE)
                draft["summary"] = (f"evaluate a variant of candidate {parent_id} "
                                    f"({instruction!r}) in the {config.sandbox} sandbox on "
                                    f"{config.backend}, and archive it in run {run_id}")
                return Prepared(action=draft)
            new = self._archive_draft(s, draft)
            if not verdict.ok:
                record_rejection(s, candidate_id=new.id, verdict=verdict, backend=config.backend,
                                 sandbox=config.sandbox)
                return Prepared(observation={
                    "candidate": new.id, "parent": parent_id, "status": "rejected",
                    "rule": verdict.rule, "reason": security.redact(verdict.reason),
                    "note": "archived as rejected; nothing was run"})
            assert duplicate is not None
            store.mark_duplicate(s, candidate_id=new.id, duplicate_of=duplicate.id, kind="exact")
            return Prepared(observation={
                "candidate": new.id, "parent": parent_id, "status": "duplicate",
                "duplicate_of": duplicate.id, "duplicate_status": duplicate.status,
                "duplicate_score": duplicate.score,
                "note": "the variant's code is the same program as an earlier candidate; not evaluated again"})

    def _write(self, task: Task, parent: Any, instruction: str, guidance: list[str]) -> Any:
        from daedalus.tools.llm import LLMGateway
        from daedalus.tools.llm_proposer import LLMProposer
        from daedalus.tools.proposer import Brief

        groups = profile.split_guidance(guidance)
        fenced_parent = {
            "candidate_id": profile.neutralise(parent.candidate_id),
            "status": profile.neutralise(parent.status),
            "score": f"{parent.score:.4g}",
            "speedup": None if parent.speedup is None else f"{parent.speedup:.4g}",
            "code": profile.fence(profile.clip(parent.code, profile.MAX_PARENT_CODE),
                                  label="candidate code", lang="python"),
            "feedback": profile.fence(profile.clip(parent.feedback, profile.MAX_FEEDBACK),
                                      label="candidate feedback"),
        }

        def messages(brief: Brief, *, edit_format: str = "full") -> list[dict[str, str]]:
            user = prompts.render(
                "chat_variant", task_name=task.name, category=task.category,
                task_source=task.source.strip(), parent=fenced_parent, instruction=instruction,
                pinned=groups["pinned"], banned=groups["banned"], edit_format=edit_format)
            return [{"role": "system", "content": prompts.render("role_engineer")},
                    {"role": "user", "content": user}]

        brief = Brief(task_name=task.name, task_source=task.source, category=task.category,
                      mode="improve", parent=parent, guidance=tuple(guidance))
        proposer = LLMProposer(LLMGateway(self.llm), build_messages=messages)
        return proposer.propose(brief)

    def _archive_draft(self, s: Any, draft: dict[str, Any]) -> Any:
        """The variant as a pending candidate of its run (idempotent by its chosen id)."""
        existing = store.find_candidate(s, candidate_id=draft["candidate_id"])
        if existing is not None:
            return existing
        candidate = store.add_candidate(
            s, candidate_id=draft["candidate_id"], run_id=draft["run_id"], task=draft["task"],
            code=draft["code"], code_hash=draft["code_hash"], parent_id=draft["parent_id"],
            island=draft["island"], generation=draft["generation"], proposer="chat",
            model=draft["model"], mode="chat", prompt=draft["prompt"],
            description=draft["description"], instruction=draft["instruction"],
            prompt_tokens=draft["prompt_tokens"], completion_tokens=draft["completion_tokens"],
            cost_usd=draft["cost_usd"],
        )
        # The variant's LLM spend belongs to its run's budget; it is not one of the run's
        # proposals, so the iteration count is left alone.
        store.add_spend(s, run_id=draft["run_id"], prompt_tokens=draft["prompt_tokens"],
                        completion_tokens=draft["completion_tokens"], cost_usd=draft["cost_usd"])
        return candidate

    def _evaluate_variant(self, draft: dict[str, Any]) -> dict[str, Any]:
        with self.archive.session() as s, s.begin():
            run = store.get_run(s, run_id=draft["run_id"])
            config, task_path = run_config(run), run.task_path
            candidate = self._archive_draft(s, draft)
            already = candidate.evaluation is not None
        task = run_task(config, task_path)
        if not already:
            with self.archive.session(readonly=True) as s:
                known = frozenset(store.known_functional_hashes(s, task=task.key, run_id=draft["run_id"]))
            self.status(f"evaluating candidate {draft['candidate_id']} in the {config.sandbox} sandbox")
            result = self._evaluator(config).evaluate(task, draft["code"], known_functional=known)
            with self.archive.session() as s, s.begin():
                record_result(s, task=task, candidate_id=draft["candidate_id"], result=result,
                              backend=config.backend, sandbox=config.sandbox)
        with self.archive.session(readonly=True) as s:
            row = store.get_candidate(s, candidate_id=draft["candidate_id"])
            parent = store.find_candidate(s, candidate_id=draft["parent_id"])
            ev = row.evaluation
            return {
                "candidate": row.id, "parent": draft["parent_id"], "run": row.run_id,
                "status": row.status, "score": row.score,
                "speedup": ev.speedup if ev is not None else None,
                "parent_speedup": parent.evaluation.speedup if parent and parent.evaluation else None,
                "stage": ev.stage if ev is not None else None,
                "evaluation_error": ev.error if ev is not None else None,
                "duplicate_of": row.duplicate_of,
                "feedback": clip(memory.feedback(ev), 3000),
                "description": row.description,
            }

    def _evaluator(self, config: RunConfig) -> Evaluator:
        from daedalus.sandbox import Evaluator
        from daedalus.sandbox.result import Limits

        key = (config.sandbox, config.backend, config.timeout_s, config.threads)
        if key not in self._evaluators:
            limits = Limits(timeout_s=config.timeout_s, threads=config.threads)
            self._evaluators[key] = self._stack.enter_context(
                Evaluator(sandbox=config.sandbox, backend=config.backend, limits=limits))
        return self._evaluators[key]

    # ------------------------------------------------------------------ runs

    def start_run(self, task: str, iterations: int = 20, proposer: str = "builtin",
                  overrides: dict[str, Any] | None = None, workers: int | None = None) -> Prepared:
        from daedalus.tasks import load_task, parse_overrides

        given = parse_overrides([f"{k}={_literal(v)}" for k, v in (overrides or {}).items()])
        loaded = load_task(task, given or None)  # a bad name or constant fails here, not later
        settings: dict[str, Any] = {"task": task, "overrides": given, "iterations": iterations,
                                    "proposers": [proposer]}
        if workers is not None:
            settings["workers"] = workers
        if proposer == "llm":
            settings.update(models=[self.llm.model], api_base=self.llm.api_base)
        config = RunConfig(**settings)
        summary = (f"start a run on {loaded.key}: {iterations} proposals by the {proposer} proposer"
                   + (f" ({self.llm.model})" if proposer == "llm" else "")
                   + f", {config.workers} evaluation workers, in the background")
        return Prepared(action={"kind": "start_run", "config": config.model_dump(mode="json"),
                                "summary": summary})

    def resume_run(self, run: str, more_iterations: int = 10) -> Prepared:
        from daedalus.archive.serialize import run_process_alive

        with self.archive.session(readonly=True) as s:
            r = resolve_run(s, run)
            run_config(r)  # fails early for a run that cannot be resumed
            if r.status == "running" and run_process_alive(r) is not False:
                raise ToolError(f"run {r.id} is already running (pid {r.pid} on {r.host}); "
                                "use show_run for its progress or stop_run first")
            target = r.iterations + max(1, more_iterations)
            run_id, done = r.id, r.iterations
        return Prepared(action={
            "kind": "resume_run", "run_id": run_id, "iterations": target,
            "summary": f"resume run {run_id} in the background: {target - done} more proposals "
                       f"({done} made so far, {target} in all)"})

    def _start(self, config_data: dict[str, Any]) -> dict[str, Any]:
        from daedalus.agent.launch import create_run
        from daedalus.tasks import load_task

        config = RunConfig(**config_data)
        task = load_task(config.task, config.overrides or None)
        run_id = create_run(self.archive, task, config)
        return self._spawn(run_id, config.iterations, started=True)

    def _spawn(self, run_id: str, iterations: int, *, started: bool = False) -> dict[str, Any]:
        """``daedalus run --resume RUN`` in its own session: it outlives the chat and its Ctrl-C."""
        logs = self.home / "chat-runs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{run_id}.log"
        command = [sys.executable, "-m", "daedalus.agent.cli", "run", "--resume", run_id,
                   "--iterations", str(iterations), "--json"]
        env = {**os.environ, "DAEDALUS_DATABASE_URL": self.archive.url}
        with log.open("ab") as out:
            child = subprocess.Popen(command, cwd=self.home.parent, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        # Reap it when it ends, so a long chat session leaves no zombies behind.
        threading.Thread(target=child.wait, daemon=True, name=f"reap-{run_id}").start()
        return {"run": run_id, "started": True, "pid": child.pid, "log": str(log),
                "new_run": started, "iterations": iterations,
                "note": "running in the background; show_run reports its progress"}

    # ------------------------------------------------------------------ execute

    def execute(self, action: dict[str, Any]) -> dict[str, Any]:
        kind = action.get("kind")
        if kind == "variant":
            return self._evaluate_variant(action)
        if kind == "start_run":
            return self._start(action["config"])
        if kind == "resume_run":
            return self._spawn(action["run_id"], int(action["iterations"]))
        raise ToolError(f"unknown action kind {kind!r}")


def describe(action: dict[str, Any]) -> dict[str, Any]:
    """What the user is asked to confirm: the action's summary, and a variant's diff."""
    shown = {"kind": action["kind"], "summary": action["summary"]}
    if action["kind"] == "variant":
        shown.update(candidate=action["candidate_id"], parent=action["parent_id"],
                     instruction=action["instruction"], description=action["description"],
                     diff=action.get("diff", ""))
    return shown


def _literal(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
