"""Architecture tasks: a folder with an ``architecture.toml`` (the format is in docs/architectures.md).

The TOML names the interface the candidate implements (``sequence_mixer``: a causal token
mixer ``ModelNew(d_model)`` mapping ``[B, T, D] -> [B, T, D]``; ``classifier``: an image
classifier ``ModelNew(num_classes)``), the data generator, the fixed backbone, the training
budget (proxy steps, threshold, full steps, early stopping), the programmatic checks, the
objectives and how the scalar score is made of them, the seed design and the reference
designs. Loading reads text only; training happens in the sandbox
(``sandbox/arch_harness.py``).

Numeric settings can be overridden like kernel sizes: ``--set full_steps=200`` (the bare
key, from any section); the overrides are part of the task's archive key.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from daedalus.tasks.model import Objective, Task, TaskError

# resolve(): the strict editable install links this file from build/, the library stays here.
ARCHITECTURES_DIR = Path(__file__).resolve().parent / "architectures"
TASK_FILE = "architecture.toml"
INTERFACES = ("sequence_mixer", "classifier")
GENERATORS = ("mqar", "selective_copy", "digits", "char_lm")
# The primary metric of each interface and its direction; params and latency_ms follow it.
METRICS = {"accuracy": "max", "bpc": "min"}

_TOP: dict[str, type | tuple[type, ...]] = {
    "name": str, "description": str, "category": str, "interface": str, "seed_design": str,
    "seed": int, "instructions": str, "features": list, "references": dict, "data": dict,
    "model": dict, "budget": dict, "checks": dict, "score": dict,
}  # fmt: skip
_NUM = (int, float)
_SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "model": {"d_model": int, "layers": int, "mlp_ratio": int, "num_classes": int},
    "budget": {
        "batch_size": int, "lr": _NUM, "weight_decay": _NUM, "proxy_steps": int,
        "proxy_threshold": _NUM, "full_steps": int, "eval_every": int, "patience": int,
        "min_delta": _NUM, "target": _NUM, "time_limit_s": _NUM, "latency_batch": int,
        "warmup_steps": int,
    },
    "checks": {
        "causal": bool, "batch_independent": bool, "length_independent": bool,
        "max_params": int, "subquadratic": bool, "complexity_length": int,
        "max_exponent": _NUM, "tolerance": _NUM,
    },
    "score": {
        "metric": str, "params_ref": int, "params_weight": _NUM, "latency_weight": _NUM,
        "latency_reference": str,
    },
}  # fmt: skip
_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"d_model": 32, "layers": 2, "mlp_ratio": 2, "num_classes": 10},
    "budget": {
        "batch_size": 32, "lr": 3e-3, "weight_decay": 0.01, "proxy_steps": 100,
        "proxy_threshold": 0.0, "full_steps": 1000, "eval_every": 100, "patience": 3,
        "min_delta": 0.002, "target": 1.0, "time_limit_s": 120.0, "latency_batch": 16,
        "warmup_steps": 50,
    },
    "checks": {
        "causal": False, "batch_independent": True, "length_independent": False,
        "max_params": 1_000_000, "subquadratic": False, "complexity_length": 256,
        "max_exponent": 1.5, "tolerance": 1e-4,
    },
    "score": {"metric": "accuracy", "params_ref": 0, "params_weight": 0.0,
              "latency_weight": 0.0, "latency_reference": ""},
}  # fmt: skip


def is_architecture_dir(path: Path) -> bool:
    return path.is_dir() and (path / TASK_FILE).is_file()


def list_architectures() -> list[Path]:
    """The shipped architecture task folders."""
    if not ARCHITECTURES_DIR.is_dir():
        return []
    return sorted(p for p in ARCHITECTURES_DIR.iterdir() if is_architecture_dir(p))


def find_architecture(name: str) -> Path | None:
    """A shipped architecture task by folder name, or None."""
    path = ARCHITECTURES_DIR / name
    return path if is_architecture_dir(path) else None


def _fail(path: Path, message: str) -> TaskError:
    return TaskError(f"{path}: {message}")


def _typed(path: Path, where: str, key: str, value: Any, expected: type | tuple[type, ...]) -> None:
    bad_bool = isinstance(value, bool) and expected is not bool and bool not in (
        expected if isinstance(expected, tuple) else (expected,))
    if not isinstance(value, expected) or bad_bool:
        names = expected.__name__ if isinstance(expected, type) else " or ".join(
            t.__name__ for t in expected)
        raise _fail(path, f"{where}{key} = {value!r} must be a {names}; see docs/architectures.md")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"invalid TOML ({exc}); fix the syntax") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read ({exc}); check the file") from exc
    for key, value in data.items():
        if key not in _TOP:
            raise _fail(path, f"unknown key {key!r}; valid keys are: {', '.join(sorted(_TOP))}")
        _typed(path, "", key, value, _TOP[key])
    for section, schema in _SECTIONS.items():
        for key, value in data.get(section, {}).items():
            if key not in schema:
                raise _fail(path, f"unknown key [{section}] {key!r}; valid keys are: "
                            f"{', '.join(sorted(schema))}")
            _typed(path, f"[{section}] ", key, value, schema[key])
    return data


def _design(directory: Path, relative: str, what: str) -> tuple[str, str]:
    """(file name relative to the tasks folder, source) of a design file the TOML names."""
    path = (directory / relative).resolve()
    if not path.is_file():
        raise _fail(directory / TASK_FILE, f"the {what} {relative!r} does not exist; fix the path "
                    "(relative to the task folder)")
    try:
        source = path.read_text(encoding="utf-8")
        compile(source, str(path), "exec", dont_inherit=True, flags=0x400)  # PyCF_ONLY_AST
    except SyntaxError as exc:
        raise _fail(path, f"syntax error at line {exc.lineno}: {exc.msg}; fix the design") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read ({exc}); check the file") from exc
    if "class ModelNew" not in source:
        raise _fail(path, "a design must define `class ModelNew(nn.Module)`; rename its class")
    return path.name, source


def _apply_overrides(path: Path, settings: dict[str, Any],
                     overrides: dict[str, Any]) -> dict[str, int | float | str | bool]:
    """Set each ``name=value`` on the one section key of that name, typed like the default."""
    where: dict[str, list[str]] = {}
    for section in ("data", *_SECTIONS):
        for key, value in settings[section].items():
            if isinstance(value, bool | int | float):
                where.setdefault(key, []).append(section)
    applied: dict[str, int | float | str | bool] = {}
    for name, value in overrides.items():
        sections = where.get(name)
        if not sections:
            valid = ", ".join(sorted(where))
            raise _fail(path, f"cannot override {name}: not a numeric setting of this task; the "
                        f"settings you can --set are: {valid}")
        if len(sections) > 1:
            raise _fail(path, f"cannot override {name}: it is set in several sections "
                        f"({', '.join(sections)}); rename one of them in {TASK_FILE}")
        old = settings[sections[0]][name]
        try:
            if isinstance(old, bool):
                new: int | float | bool = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            elif isinstance(old, int):
                if isinstance(value, bool) or float(value) != int(float(value)):
                    raise ValueError
                new = int(float(value))
            else:
                new = float(value)
        except (TypeError, ValueError):
            raise _fail(path, f"cannot override {name}={value!r}: it must be a "
                        f"{type(old).__name__} like {old!r}") from None
        settings[sections[0]][name] = new
        applied[name] = new
    return applied


def _objectives(path: Path, metric: str) -> tuple[Objective, ...]:
    if metric not in METRICS:
        raise _fail(path, f"[score] metric = {metric!r} is not one of {', '.join(METRICS)}")
    return (Objective(metric, METRICS[metric]),  # type: ignore[arg-type]
            Objective("params", "min"), Objective("latency_ms", "min"))


def load_architecture_dir(directory: Path, overrides: dict[str, Any] | None = None) -> Task:
    """Load an architecture task folder (see the module docstring). Executes nothing."""
    directory = directory.expanduser().resolve()
    path = directory / TASK_FILE
    if not path.is_file():
        raise _fail(directory, f"no {TASK_FILE} here; an architecture task is a folder with one")
    data = _read_toml(path)
    interface = data.get("interface", "")
    if interface not in INTERFACES:
        raise _fail(path, f"interface = {interface!r} is not one of {', '.join(INTERFACES)}")
    settings: dict[str, Any] = {s: {**_DEFAULTS[s], **data.get(s, {})} for s in _SECTIONS}
    settings["data"] = copy.deepcopy(data.get("data", {}))
    generator = settings["data"].pop("generator", None)
    if generator not in GENERATORS:
        raise _fail(path, f"[data] generator = {generator!r} is not one of {', '.join(GENERATORS)}")
    if "seed_design" not in data:
        raise _fail(path, "no seed_design: name the design file the first candidate starts from")
    seed_name, source = _design(directory, data["seed_design"], "seed design")
    files = {seed_name: source}
    references: dict[str, str] = {}
    for ref_name, relative in data.get("references", {}).items():
        _typed(path, "[references] ", ref_name, relative, str)
        file_name, text = _design(directory, relative, f"reference design {ref_name!r}")
        files[file_name] = text
        references[ref_name] = file_name
    latency_ref = settings["score"]["latency_reference"]
    if latency_ref and latency_ref not in references:
        raise _fail(path, f"[score] latency_reference = {latency_ref!r} is not a reference "
                    f"design; name one of: {', '.join(references) or 'none given'}")
    applied = _apply_overrides(path, settings, overrides or {})
    budget = settings["budget"]
    if budget["proxy_steps"] > budget["full_steps"] or budget["batch_size"] < 1:
        raise _fail(path, f"proxy_steps ({budget['proxy_steps']}) must not exceed full_steps "
                    f"({budget['full_steps']}) and batch_size must be at least 1")
    settings.update(interface=interface, generator=generator, seed_file=seed_name,
                    references=references, instructions=data.get("instructions", "").strip())
    return Task(
        name=data.get("name", directory.name),
        kind="architecture",
        path=directory,
        source=source,
        category=data.get("category", interface),
        description=data.get("description", ""),
        objectives=_objectives(path, settings["score"]["metric"]),
        overrides=applied,
        features=tuple(str(f) for f in data.get("features", ["params", "code_size"])),
        seed=int(data.get("seed", 42)),
        files=files,
        settings=settings,
        backends=("cpu",),
    )


def overridable(task: Task) -> dict[str, str]:
    """The settings ``--set`` can change, with their current values (``tasks show``)."""
    settings = task.settings
    return {key: repr(value) for section in ("data", *_SECTIONS)
            for key, value in settings.get(section, {}).items()
            if isinstance(value, bool | int | float)}  # fmt: skip
