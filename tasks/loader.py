"""Load tasks by shipped name or by path, without executing any task code.

``load_task("swish_scale")`` finds a task in the shipped library (``tasks/kernels``);
``load_task("path/to/19_ReLU.py")`` loads any KernelBench / MultiKernelBench problem file
as it is. Size overrides (``--set dim=1024``) are validated against the file's
module-level constants here and applied when the sandbox executes the task.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from daedalus.tasks.metadata import SidecarProblem, guess_category, read_sidecar
from daedalus.tasks.model import Task, TaskError
from daedalus.tasks.source import (
    OverrideValue,
    SourceInfo,
    SourceProblem,
    analyse,
    coerce_override,
    is_identifier,
    parse_value,
)

# resolve(): the strict editable install links this file from build/, the library stays here.
LIBRARY_DIR = Path(__file__).resolve().parent / "kernels"


def parse_overrides(items: list[str]) -> dict[str, OverrideValue]:
    """``["dim=1024", "training=false"]`` -> ``{"dim": 1024, "training": False}``.

    Values are typed as bool, int, float, else str. Whether each name is a constant of
    the task file is checked by ``load_task``, which knows the file.
    """
    parsed: dict[str, OverrideValue] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not is_identifier(name):
            raise TaskError(
                f"--set {item!r}: expected NAME=VALUE with NAME a Python identifier, "
                "e.g. --set batch_size=8"
            )
        parsed[name] = parse_value(value)
    return parsed


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".py") or "/" in name_or_path or Path(name_or_path).is_file()


def _library_files() -> list[Path]:
    return sorted(p for p in LIBRARY_DIR.glob("*.py") if not p.name.startswith("_"))


def _read(path: Path) -> tuple[str, SourceInfo]:
    if not path.is_file():
        if path.is_dir():
            raise TaskError(f"{path}: is a directory without an evaluator.py; give a .py kernel "
                            "task file, or a program task directory (initial_program.py and "
                            "evaluator.py, see docs/program-tasks.md)")
        raise TaskError(f"{path}: task file does not exist; check the path")
    if path.suffix != ".py":
        raise TaskError(
            f"{path}: a kernel task is a KernelBench-format .py file; give the path to one"
        )
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(
            f"{path}: cannot be read ({exc}); check the file and its permissions"
        ) from exc
    try:
        return source, analyse(source, str(path))
    except SourceProblem as exc:
        raise TaskError(f"{path}: {exc}") from exc


def _validated_overrides(
    path: Path, info: SourceInfo, overrides: dict[str, Any]
) -> dict[str, OverrideValue]:
    unknown = sorted(set(overrides) - set(info.constants))
    if unknown:
        valid = (
            ", ".join(f"{c.name}={c.text}" for c in info.constants.values())
            or "none: the file has no module-level constants"
        )
        raise TaskError(
            f"{path}: cannot override {', '.join(unknown)}: not a module-level constant of "
            f"this task file; the constants you can --set are: {valid}"
        )
    result: dict[str, OverrideValue] = {}
    for name, value in overrides.items():
        if not isinstance(value, bool | int | float | str):
            raise TaskError(f"{path}: override {name}={value!r} must be an int, float, bool or str")
        try:
            result[name] = coerce_override(info.constants[name], value)
        except SourceProblem as exc:
            raise TaskError(f"{path}: cannot override {exc}") from exc
    return result


def load_path(path: Path, overrides: dict[str, Any] | None = None) -> Task:
    """Load the task file at ``path`` (and its ``.toml`` sidecar, if present)."""
    path = path.expanduser().resolve()
    source, info = _read(path)
    sidecar = path.with_suffix(".toml")
    try:
        meta = read_sidecar(sidecar)
    except SidecarProblem as exc:
        raise TaskError(f"{sidecar}: {exc}") from exc
    meta.setdefault("name", path.stem)
    meta.setdefault("category", guess_category(path))
    meta.setdefault("description", info.model_doc)
    return Task(
        kind="kernel",
        path=path,
        source=source,
        overrides=_validated_overrides(path, info, overrides or {}),
        **meta,
    )


def constants_of(task: Task) -> dict[str, str]:
    """The task's overridable constants as written, e.g. ``{"dim": "16384"}``."""
    if task.kind == "architecture":
        from daedalus.tasks.architecture import overridable

        return overridable(task)
    if task.kind != "kernel":
        return {}  # program tasks take their settings from their own files
    try:
        info = analyse(task.source, str(task.path))
    except SourceProblem as exc:
        raise TaskError(f"{task.path}: {exc}") from exc
    return {c.name: c.text for c in info.constants.values()}


def list_tasks() -> list[Task]:
    """Every task in the shipped library, sorted by category then name."""
    tasks = [load_path(path) for path in _library_files()]
    return sorted(tasks, key=lambda t: (t.category, t.name))


def list_all_tasks(kinds: tuple[str, ...] = ("kernel", "architecture", "program")) -> list[Task]:
    """The shipped tasks of the given kinds: kernels, then architecture and program folders."""
    from daedalus.tasks.architecture import list_architectures, load_architecture_dir
    from daedalus.tasks.program import list_programs, load_program_dir

    tasks = list_tasks() if "kernel" in kinds else []
    if "architecture" in kinds:
        tasks += sorted((load_architecture_dir(p) for p in list_architectures()),
                        key=lambda t: (t.category, t.name))
    if "program" in kinds:
        tasks += sorted((load_program_dir(p) for p in list_programs()), key=lambda t: t.name)
    return tasks


def load_task(name_or_path: str, overrides: dict[str, Any] | None = None) -> Task:
    """A shipped task by name, or any KernelBench-format file by path, with size overrides."""
    if not name_or_path.strip():
        raise TaskError(
            "no task given; name a shipped task (see `daedalus tasks list`) or a .py path"
        )
    from daedalus.tasks.program import find_program, is_program_dir, load_program_dir

    if Path(name_or_path).is_dir() and is_program_dir(Path(name_or_path)):
        return load_program_dir(Path(name_or_path), overrides)  # bring-your-own-evaluator
    from daedalus.tasks.architecture import (
        TASK_FILE,
        find_architecture,
        is_architecture_dir,
        load_architecture_dir,
    )

    given = Path(name_or_path).expanduser()
    if given.name == TASK_FILE and given.is_file():
        given = given.parent
    if is_architecture_dir(given):
        return load_architecture_dir(given, overrides)  # an architecture task folder
    if _looks_like_path(name_or_path):
        return load_path(Path(name_or_path), overrides)
    candidate = LIBRARY_DIR / f"{name_or_path}.py"
    if candidate.is_file():
        return load_path(candidate, overrides)
    if (architecture := find_architecture(name_or_path)) is not None:
        return load_architecture_dir(architecture, overrides)
    if (program := find_program(name_or_path)) is not None:
        return load_program_dir(program, overrides)
    # A sidecar may rename a task; only then do we need to read every sidecar.
    names: dict[str, Path] = {}
    for path in _library_files():
        try:
            meta = read_sidecar(path.with_suffix(".toml"))
        except SidecarProblem as exc:
            raise TaskError(f"{path.with_suffix('.toml')}: {exc}") from exc
        names[str(meta.get("name", path.stem))] = path
    if name_or_path in names:
        return load_path(names[name_or_path], overrides)
    close = difflib.get_close_matches(name_or_path, list(names), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise TaskError(
        f"no shipped task named {name_or_path!r}; {hint}run `daedalus tasks list` for the "
        "library, or give a path to a KernelBench-format .py file"
    )
