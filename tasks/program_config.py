"""Read an OpenEvolve ``config.yaml`` as Daedalus settings, saying what is honoured and what not.

Only keys present in the file are translated; Daedalus's own defaults hold otherwise. The
result separates run settings (``RunConfig`` keys: budget, models, edit format, limits,
islands) from task settings (system message, cascade, artifacts), and lists every key it
used (``honoured``) and every key it did not (``ignored``, with the reason), so
``daedalus run DIR`` can tell an OpenEvolve user exactly what carried over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daedalus.tasks.model import TaskError

# OpenEvolve's placeholders that name a template instead of holding text.
_TEMPLATE_NAMES = frozenset({"system_message", "evaluator_system_message"})
_KEY = re.compile(r"^[\w.]+")


@dataclass
class Translation:
    run: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)
    honoured: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    features: tuple[str, ...] = ()
    seed: int | None = None
    score_explicit: bool = False


# key -> why Daedalus does not use it (keys not listed and not handled are "unknown")
_IGNORED: dict[str, str] = {
    "checkpoint_interval": "Daedalus checkpoints after every step; nothing to configure",
    "log_level": "use --json or the archive (daedalus archive ...)",
    "log_dir": "everything is in the archive (.daedalus/)",
    "max_tasks_per_child": "every candidate runs in a fresh sandboxed process already",
    "diff_pattern": "Daedalus parses SEARCH/REPLACE blocks itself (tolerant matching)",
    "enforce_evolve_blocks": "Daedalus always keeps code outside EVOLVE-BLOCKs fixed",
    "early_stopping_patience": "not supported; use --iterations, --time-limit or --target-score",
    "convergence_threshold": "not supported; use --target-score",
    "early_stopping_metric": "not supported; the score metric is `score` in daedalus.toml",
    "evolution_trace": "every prompt, reply and result is in the archive already",
    "llm.evaluator_models": "LLM feedback on programs is not supported",
    "llm.top_p": "not passed to the model",
    "llm.timeout": "the LLM gateway has its own timeout (DAEDALUS LLMConfig.timeout_s)",
    "llm.retries": "the LLM gateway retries with backoff by itself",
    "llm.retry_delay": "the LLM gateway retries with backoff by itself",
    "llm.reasoning_effort": "not passed to the model",
    "llm.random_seed": "not passed to the model",
    "llm.manual_mode": "not supported",
    "llm.provider": "every model goes through litellm",
    "llm.primary_model_weight": "a bandit weighs models by reward per cost instead",
    "llm.secondary_model_weight": "a bandit weighs models by reward per cost instead",
    "prompt.template_dir": "Daedalus renders its own templates (prompts/program_*.j2)",
    "prompt.evaluator_system_message": "LLM feedback on programs is not supported",
    "prompt.num_top_programs": "the planner shows the top 3 and 2 MAP-Elites elites",
    "prompt.num_diverse_programs": "the planner shows the top 3 and 2 MAP-Elites elites",
    "prompt.use_template_stochasticity": "prompts are deterministic",
    "prompt.template_variations": "prompts are deterministic",
    "prompt.use_meta_prompting": "not supported (not implemented in OpenEvolve either)",
    "prompt.meta_prompt_weight": "not supported (not implemented in OpenEvolve either)",
    "prompt.artifact_security_filter": "archive text is always fenced as data in prompts",
    "prompt.programs_as_changes_description": "not supported",
    "prompt.system_message_changes_description": "not supported",
    "prompt.initial_changes_description": "not supported",
    "prompt.suggest_simplification_after_chars": "not supported",
    "prompt.include_changes_under_chars": "not supported",
    "prompt.concise_implementation_max_lines": "not supported",
    "prompt.comprehensive_implementation_min_lines": "not supported",
    "prompt.diff_summary_max_line_len": "not supported",
    "prompt.diff_summary_max_lines": "not supported",
    "prompt.code_length_threshold": "not supported",
    "database.population_size": "the archive keeps every candidate",
    "database.archive_size": "the archive keeps every candidate",
    "database.elite_selection_ratio": "parents come from a tournament among an island's top 8",
    "database.diversity_metric": "diversity comes from MAP-Elites cells",
    "database.feature_bins": "Daedalus bins features by log2",
    "database.diversity_reference_size": "diversity comes from MAP-Elites cells",
    "database.migration_rate": "migration moves an island's best into its neighbour",
    "database.db_path": "the archive is .daedalus/archive.db (or DAEDALUS_DATABASE_URL)",
    "database.in_memory": "the archive is always on disk",
    "database.log_prompts": "prompts are always archived",
    "database.artifacts_base_path": "artifacts are stored in the archive",
    "database.artifact_size_threshold": "artifacts are stored in the archive",
    "database.cleanup_old_artifacts": "artifacts are stored in the archive",
    "database.artifact_retention_days": "artifacts are stored in the archive",
    "database.max_snapshot_artifacts": "no worker snapshots: the archive is shared",
    "database.embedding_model": "novelty by embeddings is not supported",
    "database.embedding_api_base": "novelty by embeddings is not supported",
    "database.similarity_threshold": "duplicates are found by normalised AST hash instead",
    "database.novelty_llm": "novelty by LLM is not supported",
    "evaluator.max_retries": "a failing candidate is a result; it is not evaluated again",
    "evaluator.cpu_limit": "candidates get one thread (--threads) and the CPU-time rlimit",
    "evaluator.use_llm_feedback": "LLM feedback on programs is not supported",
    "evaluator.llm_feedback_weight": "LLM feedback on programs is not supported",
    "evaluator.distributed": "not supported (not implemented in OpenEvolve either)",
    "evaluator.max_artifact_storage": "artifacts are capped per evaluation in the sandbox",
}


def _model(name: str) -> str:
    # OpenEvolve always speaks the OpenAI protocol to api_base: litellm's "openai/" route.
    return name if name.startswith("openai/") else f"openai/{name}"


class _Reader:
    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path, self.out = data, path, Translation()

    def get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def use(self, dotted: str, meaning: str) -> None:
        self.out.honoured.append(f"{dotted} = {self.get(dotted)!r} -> {meaning}")

    def number(self, dotted: str, kind: type = float) -> Any:
        value = self.get(dotted)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TaskError(f"{self.path}: {dotted} = {value!r} must be a number; fix config.yaml")
        return kind(value)

    def run(self, dotted: str, key: str, meaning: str, kind: type = float) -> None:
        if self.get(dotted) is not None:
            self.out.run[key] = self.number(dotted, kind)
            self.use(dotted, meaning)


def read_openevolve_config(path: Path) -> Translation:
    """Translate ``path`` (an OpenEvolve config.yaml). Raises TaskError when unreadable."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TaskError(f"{path}: cannot read the OpenEvolve config ({exc}); fix the YAML") from exc
    if not isinstance(data, dict):
        raise TaskError(f"{path}: the OpenEvolve config must be a mapping of settings")
    r = _Reader(data, path)
    _general(r)
    _llm(r)
    _prompt(r)
    _database(r)
    _evaluator(r)
    handled = {m.group(0) for line in r.out.honoured + r.out.ignored
               if (m := _KEY.match(line)) is not None}  # fmt: skip
    for dotted in _leaves(data):
        if dotted in handled or any(dotted.startswith(h + ".") for h in handled):
            continue
        reason = _IGNORED.get(dotted) or _IGNORED.get(dotted.split(".")[0])
        if reason is None and dotted.startswith("llm.models"):
            continue  # model entries are handled as a whole above
        r.out.ignored.append(f"{dotted}: {reason or 'not an OpenEvolve 0.4 key Daedalus knows'}")
    return r.out


def _leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in ("evolution_trace",):
            keys += _leaves(value, dotted + ".")
        else:
            keys.append(dotted)
    return keys


def _general(r: _Reader) -> None:
    r.run("max_iterations", "iterations", "--iterations", int)
    if r.get("random_seed") is not None:
        r.out.seed = r.number("random_seed", int)
        r.out.run["seed"] = r.out.seed
        r.use("random_seed", "--seed and the task seed")
    language = r.get("language")
    if language is not None:
        if str(language).lower() != "python":
            raise TaskError(f"{r.path}: language {language!r}: Daedalus evolves Python programs only")
        r.use("language", "Python programs")
    suffix = r.get("file_suffix")
    if suffix is not None:
        if suffix != ".py":
            raise TaskError(f"{r.path}: file_suffix {suffix!r}: Daedalus evolves .py programs only")
        r.use("file_suffix", ".py programs")
    diff = r.get("diff_based_evolution")
    if diff is not None:
        r.out.run["edit_format"] = "diff" if diff else "full"
        r.use("diff_based_evolution", f"edit format {'diff' if diff else 'full'}")
    r.run("max_code_length", "max_code_bytes", "largest candidate in bytes", int)


def _llm(r: _Reader) -> None:
    names: list[str] = []
    models = r.get("llm.models")
    if isinstance(models, list) and models:
        names = [str(m["name"]) for m in models if isinstance(m, dict) and m.get("name")]
        r.out.honoured.append(f"llm.models = {names} -> --model (weights ignored: a bandit "
                              "weighs models by reward per cost)")
        bases = {m.get("api_base") for m in models if isinstance(m, dict) and m.get("api_base")}
        if bases - {r.get("llm.api_base")}:
            r.out.ignored.append("llm.models[].api_base: one --api-base serves every model")
    for key in ("primary_model", "secondary_model"):
        if r.get(f"llm.{key}"):
            names.append(str(r.get(f"llm.{key}")))
            r.use(f"llm.{key}", "--model")
    if names:
        r.out.run["models"] = [_model(n) for n in dict.fromkeys(names)]
        r.out.run["proposers"] = ["llm"]
    if r.get("llm.api_base"):
        r.out.run["api_base"] = str(r.get("llm.api_base"))
        r.use("llm.api_base", "--api-base")
    r.run("llm.temperature", "temperature", "the models' temperature")
    r.run("llm.max_tokens", "max_tokens", "the models' reply limit", int)
    key = r.get("llm.api_key")
    if isinstance(key, str) and key.startswith("${") and key.endswith("}"):
        r.out.run["api_key_env"] = key[2:-1]
        r.out.honoured.append(f"llm.api_key = {key} -> the key is read from ${key[2:-1]}")
    elif key is not None:
        r.out.ignored.append("llm.api_key: Daedalus never reads keys from files; export the key "
                             "and write api_key: ${VARIABLE}")
    if r.get("llm.system_message") not in (None, *_TEMPLATE_NAMES):
        r.out.task.setdefault("instructions", str(r.get("llm.system_message")))
        r.use("llm.system_message", "the task instructions in every prompt")


def _prompt(r: _Reader) -> None:
    message = r.get("prompt.system_message")
    if message is not None and message not in _TEMPLATE_NAMES:
        r.out.task["instructions"] = str(message)
        r.out.honoured.append("prompt.system_message -> the task instructions in every prompt")
    elif message is not None:
        r.out.ignored.append("prompt.system_message: names an OpenEvolve template, not text")
    if r.get("prompt.include_artifacts") is not None:
        r.out.task["include_artifacts"] = bool(r.get("prompt.include_artifacts"))
        r.use("prompt.include_artifacts", "evaluator artifacts in the next prompt")
    if r.get("prompt.max_artifact_bytes") is not None:
        r.out.task["max_artifact_bytes"] = r.number("prompt.max_artifact_bytes", int)
        r.use("prompt.max_artifact_bytes", "artifact text kept per evaluation")


def _database(r: _Reader) -> None:
    r.run("database.num_islands", "islands", "--islands (planner islands)", int)
    r.run("database.migration_interval", "migration_every",
          "migrate every N proposals (OpenEvolve counts island generations)", int)
    r.run("database.exploration_ratio", "explore", "explore share of parent choices")
    r.run("database.exploitation_ratio", "exploit", "exploit share of parent choices")
    if "explore" in r.out.run or "exploit" in r.out.run:
        # The rest of OpenEvolve's mix (its defaults 0.2 / 0.7 fill a missing ratio) is random.
        r.out.run.setdefault("explore", 0.2)
        r.out.run.setdefault("exploit", 0.7)
        r.out.run["random"] = max(0.0, 1.0 - r.out.run["explore"] - r.out.run["exploit"])
    if r.get("database.random_seed") is not None and r.out.seed is None:
        r.out.seed = r.number("database.random_seed", int)
        r.out.run["seed"] = r.out.seed
        r.use("database.random_seed", "--seed and the task seed")
    dims = r.get("database.feature_dimensions")
    if isinstance(dims, list):
        axes = []
        for dim in dims:
            if dim == "complexity":
                axes.append("code_size")
            elif dim == "diversity":
                r.out.ignored.append("database.feature_dimensions[diversity]: MAP-Elites cells "
                                     "already spread the population; use complexity or a metric")
            elif dim == "score":
                axes.append("score")
            else:
                axes.append(str(dim))
        r.out.features = tuple(axes)
        r.use("database.feature_dimensions", f"MAP-Elites axes {axes}")


def _evaluator(r: _Reader) -> None:
    if r.get("evaluator.timeout") is not None:
        r.out.task.setdefault("limits", {})["timeout_s"] = r.number("evaluator.timeout")
        r.use("evaluator.timeout", "wall-clock limit per evaluation, all cascade stages "
              "together (OpenEvolve: per stage)")
    if r.get("evaluator.memory_limit_mb") is not None:
        r.out.task.setdefault("limits", {})["memory_mb"] = r.number("evaluator.memory_limit_mb", int)
        r.use("evaluator.memory_limit_mb", "address-space limit of the sandbox (OpenEvolve does "
              "not enforce it)")
    r.run("evaluator.parallel_evaluations", "workers", "--workers", int)
    if r.get("evaluator.cascade_evaluation") is not None:
        r.out.task["cascade"] = bool(r.get("evaluator.cascade_evaluation"))
        r.use("evaluator.cascade_evaluation", "run evaluate_stage1 first when defined")
    thresholds = r.get("evaluator.cascade_thresholds")
    if thresholds is not None:
        if not isinstance(thresholds, list) or not all(
                isinstance(t, int | float) and not isinstance(t, bool) for t in thresholds):
            raise TaskError(f"{r.path}: evaluator.cascade_thresholds must be a list of numbers")
        r.out.task["cascade_thresholds"] = [float(t) for t in thresholds]
        r.use("evaluator.cascade_thresholds", "score needed to go on to the next stage")
    if r.get("evaluator.enable_artifacts") is not None:
        if not r.get("evaluator.enable_artifacts"):
            r.out.task["include_artifacts"] = False
        r.use("evaluator.enable_artifacts", "keep the evaluator's artifacts")
