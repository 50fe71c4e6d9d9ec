"""Program tasks: bring your own evaluator (the OpenEvolve / ShinkaEvolve format).

A program task is a directory::

    initial_program.py   the program to evolve; optional EVOLVE-BLOCK markers fence the
                         parts that may change, everything outside stays as written
    evaluator.py         evaluate(program_path) -> dict of metrics (or an object with
                         .metrics and .artifacts); optional evaluate_stage1/2/3 cascade
    config.yaml          optional: an OpenEvolve config, read by tasks/program_config.py
    daedalus.toml        optional: Daedalus's own settings, which win over config.yaml

Loading reads text only: the evaluator and the program run in the sandbox
(``sandbox/program_harness.py``), never in the agent's process.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path
from typing import Any

from daedalus.tasks.model import Objective, Task, TaskError
from daedalus.tasks.program_config import read_openevolve_config

# resolve(): the strict editable install links this file from build/, the library stays here.
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
SIDECAR = "daedalus.toml"
OPENEVOLVE_CONFIG = "config.yaml"
PROGRAM_NAMES = ("initial_program.py", "program.py", "initial.py")
EVALUATOR_NAMES = ("evaluator.py", "evaluate.py")
# Support files travel with every evaluation request, so they are kept small.
SUPPORT_SUFFIXES = frozenset({".py", ".txt", ".json", ".csv", ".tsv", ".dat", ".yaml", ".yml",
                              ".toml"})  # fmt: skip
MAX_SUPPORT_BYTES = 1 << 20
_MARKER = re.compile(r"^\W*EVOLVE-BLOCK-(START|END)\b")

_SIDECAR_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "description": str, "category": str, "program": str, "evaluator": str,
    "score": str, "instructions": str, "show_evaluator": bool, "policy": str,
    "allowed_imports": list, "features": list, "seed": int, "cascade": bool,
    "cascade_thresholds": list, "include_artifacts": bool, "max_artifact_bytes": int,
    "run": dict, "limits": dict,
}  # fmt: skip
# Sandbox limits a program task may set for its evaluations (sandbox.result.Limits fields).
LIMIT_KEYS = ("timeout_s", "memory_mb", "cpu_s", "fsize_mb", "output_bytes", "processes")


class BlockError(ValueError):
    """A proposal does not keep the program's EVOLVE-BLOCK structure (the message says how)."""


# ------------------------------------------------------------------------ EVOLVE-BLOCKs


def _marker(line: str) -> str | None:
    match = _MARKER.match(line)
    return match.group(1) if match else None


def split_blocks(code: str) -> tuple[list[list[str]], list[list[str]]] | None:
    """``(outside, blocks)``: the fixed segments (marker lines included; one more than the
    blocks) and the lines inside each block. None when markers are nested or unmatched."""
    lines = code.split("\n")
    outside: list[list[str]] = []
    blocks: list[list[str]] = []
    start, open_at = 0, None
    for i, line in enumerate(lines):
        kind = _marker(line)
        if kind == "START":
            if open_at is not None:
                return None
            outside.append(lines[start : i + 1])
            open_at = i
        elif kind == "END":
            if open_at is None:
                return None
            blocks.append(lines[open_at + 1 : i])
            start, open_at = i, None
    if open_at is not None:
        return None
    outside.append(lines[start:])
    return outside, blocks


def block_count(code: str) -> int:
    parts = split_blocks(code)
    return len(parts[1]) if parts else 0


def evolvable_spans(code: str) -> list[tuple[int, int]]:
    """Line ranges ``[first, last)`` (0-based) that may change: the blocks, else everything."""
    lines = code.split("\n")
    spans: list[tuple[int, int]] = []
    open_at: int | None = None
    for i, line in enumerate(lines):
        kind = _marker(line)
        if kind == "START":
            open_at = i + 1
        elif kind == "END" and open_at is not None:
            spans.append((open_at, i))
            open_at = None
    return spans or [(0, len(lines))]


def keep_fixed_parts(parent: str, child: str) -> tuple[str, bool]:
    """The child's EVOLVE-BLOCK contents placed into the parent's fixed parts.

    Returns ``(code, reverted)`` where ``reverted`` says that the child had changed code
    outside the blocks (those changes are dropped). A parent without blocks leaves the
    child unchanged. Raises ``BlockError`` when the child lost or added markers.
    """
    fixed = split_blocks(parent)
    if fixed is None or not fixed[1]:
        return child, False
    proposed = split_blocks(child)
    if proposed is None or len(proposed[1]) != len(fixed[1]):
        raise BlockError(
            f"the program must keep its {len(fixed[1])} EVOLVE-BLOCK region(s): keep every "
            "'# EVOLVE-BLOCK-START' and '# EVOLVE-BLOCK-END' line and change code only "
            "between them"
        )
    lines: list[str] = []
    for segment, block in zip(fixed[0], proposed[1], strict=False):
        lines += segment + block
    lines += fixed[0][-1]
    code = "\n".join(lines)
    return code, code != child


# ------------------------------------------------------------------------ loading


def is_program_dir(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in EVALUATOR_NAMES)


def list_programs() -> list[Path]:
    """The shipped program tasks (directories under ``tasks/programs``)."""
    if not PROGRAMS_DIR.is_dir():
        return []
    return sorted(p for p in PROGRAMS_DIR.iterdir() if is_program_dir(p))


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot read the {what} ({exc}); check the file") from exc


def _sidecar(directory: Path) -> dict[str, Any]:
    path = directory / SIDECAR
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(_read_text(path, "Daedalus settings"))
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path}: invalid TOML ({exc}); fix the syntax") from exc
    for key, value in data.items():
        expected = _SIDECAR_KEYS.get(key)
        if expected is None:
            valid = ", ".join(sorted(_SIDECAR_KEYS))
            raise TaskError(f"{path}: unknown key {key!r}; valid keys are: {valid}")
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise TaskError(f"{path}: {key} = {value!r} has the wrong type; see docs/program-tasks.md")
    for key, value in data.get("limits", {}).items():
        if key not in LIMIT_KEYS or isinstance(value, bool) or not isinstance(value, int | float):
            raise TaskError(f"{path}: [limits] {key} = {value!r}: limits are numbers, one of "
                            f"{', '.join(LIMIT_KEYS)}")
    if data.get("policy", "on") not in ("on", "off"):
        raise TaskError(f"{path}: policy must be \"on\" or \"off\", not {data['policy']!r}")
    return data


def _pick(directory: Path, given: str | None, names: tuple[str, ...], what: str) -> Path:
    if given:
        path = directory / given
        if not path.is_file():
            raise TaskError(f"{path}: the {what} named in {SIDECAR} does not exist; fix the name")
        return path
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise TaskError(
        f"{directory}: no {what} found (looked for {', '.join(names)}); add one, or name it "
        f"with `{what.split()[0]} = \"FILE\"` in {SIDECAR}"
    )


def _support_files(directory: Path, skip: set[str]) -> tuple[dict[str, str], list[str]]:
    files: dict[str, str] = {}
    skipped: list[str] = []
    total = 0
    for path in sorted(directory.iterdir()):
        if (path.name in skip or path.name.startswith(".") or not path.is_file()
                or path.suffix not in SUPPORT_SUFFIXES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            skipped.append(path.name)
            continue
        if total + len(text.encode()) > MAX_SUPPORT_BYTES:
            skipped.append(path.name)
            continue
        files[path.name] = text
        total += len(text.encode())
    return files, skipped


def _check_python(path: Path, source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise TaskError(f"{path}: syntax error at line {exc.lineno} in the {what}: {exc.msg}") from exc


def _has_function(tree: ast.Module, name: str) -> bool:
    """A module-level ``def name`` or ``name = ...`` (e.g. ``evaluate = make_evaluator()``)."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def load_program_dir(directory: Path, overrides: dict[str, Any] | None = None) -> Task:
    """Load a program task directory (see the module docstring). Executes nothing."""
    directory = directory.expanduser().resolve()
    if not directory.is_dir():
        raise TaskError(f"{directory}: not a directory; give a program task directory")
    if overrides:
        raise TaskError(
            f"{directory}: --set applies to kernel tasks only; a program task takes its "
            "settings from config.yaml or daedalus.toml"
        )
    meta = _sidecar(directory)
    program_path = _pick(directory, meta.get("program"), PROGRAM_NAMES, "program file")
    evaluator_path = _pick(directory, meta.get("evaluator"), EVALUATOR_NAMES, "evaluator file")
    source = _read_text(program_path, "initial program")
    evaluator = _read_text(evaluator_path, "evaluator")
    _check_python(program_path, source, "initial program")
    tree = _check_python(evaluator_path, evaluator, "evaluator")
    if not _has_function(tree, "evaluate") and not _has_function(tree, "evaluate_stage1"):
        raise TaskError(
            f"{evaluator_path}: defines no `evaluate(program_path)` function at module level; "
            "add one that returns a dict of metrics"
        )
    if split_blocks(source) is None:
        raise TaskError(
            f"{program_path}: EVOLVE-BLOCK markers are nested or unmatched; every "
            "'# EVOLVE-BLOCK-START' needs its own '# EVOLVE-BLOCK-END' after it"
        )
    config_path = directory / OPENEVOLVE_CONFIG
    translated = read_openevolve_config(config_path) if config_path.is_file() else None
    settings: dict[str, Any] = dict(translated.task) if translated else {}
    settings.update({k: meta[k] for k in ("score", "instructions", "show_evaluator", "policy",
                                          "allowed_imports", "cascade", "include_artifacts",
                                          "max_artifact_bytes") if k in meta})  # fmt: skip
    if "limits" in meta:
        settings["limits"] = {**settings.get("limits", {}), **meta["limits"]}
    if "cascade_thresholds" in meta:
        settings["cascade_thresholds"] = [float(x) for x in meta["cascade_thresholds"]]
    settings.setdefault("score", "combined_score")
    settings["score_explicit"] = "score" in meta or bool(translated and translated.score_explicit)
    files, skipped = _support_files(directory, {program_path.name, SIDECAR, OPENEVOLVE_CONFIG})
    files[evaluator_path.name] = evaluator
    settings.update(
        program_file=program_path.name, evaluator_file=evaluator_path.name,
        skipped_files=skipped, blocks=block_count(source),
        stages=[n for n in ("evaluate_stage1", "evaluate_stage2", "evaluate_stage3", "evaluate")
                if _has_function(tree, n)],
        run={**(translated.run if translated else {}), **meta.get("run", {})},
        honoured=translated.honoured if translated else [],
        ignored=translated.ignored if translated else [],
    )  # fmt: skip
    features = tuple(str(f) for f in meta.get("features", [])) or (
        translated.features if translated and translated.features else ("code_size",))
    features = tuple(settings["score"] if f == "score" else f for f in features)
    return Task(
        name=meta.get("name", directory.name),
        kind="program",
        path=directory,
        source=source,
        category=meta.get("category", "program"),
        description=meta.get("description", _first_doc_line(source)),
        objectives=(Objective(settings["score"], "max"),),
        features=features,
        seed=int(meta.get("seed", translated.seed if translated and translated.seed is not None else 42)),
        files=files,
        settings=settings,
        backends=("cpu",),
    )


def _first_doc_line(source: str) -> str:
    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except SyntaxError:
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def find_program(name: str) -> Path | None:
    """A shipped program task by directory name, or None."""
    path = PROGRAMS_DIR / name
    return path if is_program_dir(path) else None


def cascade_order(settings: dict[str, Any]) -> list[str]:
    """The evaluate functions a candidate meets, in order (as sandbox/program_harness.py)."""
    defined = settings.get("stages", [])
    if not (settings.get("cascade", True) and "evaluate_stage1" in defined):
        return ["evaluate"]
    second = "evaluate_stage2" if "evaluate_stage2" in defined else "evaluate"
    third = ["evaluate_stage3"] if "evaluate_stage3" in defined else []
    return ["evaluate_stage1", *([second] if second in defined else []), *third]


def describe(task: Task) -> list[str]:
    """What `daedalus run DIR` says before starting: the task, and config.yaml's fate."""
    s = task.settings
    cascade = " -> ".join(cascade_order(s))
    lines = [f"program task {task.name} ({task.path}): evaluator {s.get('evaluator_file')}, "
             f"score {s.get('score')}, stages {cascade}, {s.get('blocks', 0)} EVOLVE-BLOCK(s)"]
    if s.get("limits"):
        lines.append("limits: " + ", ".join(f"{k}={v}" for k, v in s["limits"].items()))
    if s.get("skipped_files"):
        lines.append(f"not sent to the sandbox (binary or over {MAX_SUPPORT_BYTES} bytes): "
                     + ", ".join(s["skipped_files"]))
    if s.get("honoured"):
        lines += ["config.yaml, honoured:", *(f"  {line}" for line in s["honoured"])]
    if s.get("ignored"):
        lines += ["config.yaml, ignored:", *(f"  {line}" for line in s["ignored"])]
    return lines
