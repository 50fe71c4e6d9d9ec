"""Optional metadata beside a task file (``NAME.toml`` next to ``NAME.py``) and defaults.

Without a sidecar a task still loads: its name is the file stem and its category is
guessed from KernelBench / MultiKernelBench naming, else ``"uncategorised"``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from daedalus.tasks.model import Objective

SIDECAR_KEYS = (
    "name",
    "category",
    "description",
    "atol",
    "rtol",
    "backends",
    "objectives",
    "features",
    "seed",
)

# MultiKernelBench folder names and KernelBench levels, mapped to our category words.
_FOLDER_CATEGORIES = {
    "activation": "activation",
    "broadcast": "broadcast",
    "convolution": "convolution",
    "fuse": "fusion",
    "fusion": "fusion",
    "index": "indexing",
    "indexing": "indexing",
    "loss": "loss",
    "math": "math",
    "matmul": "matmul",
    "normalization": "normalization",
    "optimizer": "optimizer",
    "pooling": "pooling",
    "reduce": "reduction",
    "reduction": "reduction",
    "resize": "resize",
    "attention": "attention",
    "arch": "architecture",
    "level2": "fusion",
    "level3": "architecture",
}

# Checked in order; the first three win outright because their names often contain other
# op words ("CrossEntropyLoss", "relu_self_attention").
_DOMINANT = (
    ("loss", ("loss",)),
    ("attention", ("attention",)),
    ("optimizer", ("adam", "sgd", "rmsprop", "adagrad", "lamb")),
)
_OPS = (
    ("convolution", ("conv",)),
    ("pooling", ("pool",)),
    ("normalization", ("norm",)),
    ("matmul", ("matmul", "matrix_multiplication", "gemm", "bmm", "matrix_vector", "matvec")),
    ("resize", ("upsample", "downsample", "interpolate", "resize", "grid_sample")),
    (
        "indexing",
        (
            "argmax",
            "argmin",
            "gather",
            "scatter",
            "index",
            "embedding",
            "masked_fill",
            "take_along",
        ),
    ),
    ("math", ("cumsum", "cumprod", "scalar_multiplication")),
    ("reduction", ("reduction", "reduce", "logsumexp", "log_sum_exp")),
    ("broadcast", ("broadcast",)),
    (
        "activation",
        (
            "relu",
            "gelu",
            "elu",
            "sigmoid",
            "tanh",
            "softmax",
            "swish",
            "softplus",
            "softsign",
            "mish",
        ),
    ),
)


def guess_category(path: Path) -> str:
    """Best guess from the folder (MultiKernelBench, KernelBench level) and the file name."""
    folder = _FOLDER_CATEGORIES.get(path.parent.name.lower())
    if folder:
        return folder
    stem = path.stem.lower()
    for category, words in _DOMINANT:
        if any(word in stem for word in words):
            return category
    found = {category for category, words in _OPS if any(word in stem for word in words)}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        return "fusion"  # e.g. "12_Gemm_Multiply_LeakyReLU": several ops in one name
    return "uncategorised"


class SidecarProblem(Exception):
    """A problem in a sidecar file; the loader turns it into a ``TaskError``."""


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SidecarProblem(f'`{key}` must be a list of strings, e.g. {key} = ["cpu"]')
    return tuple(value)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SidecarProblem(f"`{key}` must be a non-negative number, e.g. {key} = 1e-4")
    return float(value)


def _objective(item: Any) -> Objective:
    # Accept "speedup", "latency_ms:min" or {name = "speedup", direction = "max"}.
    if isinstance(item, str):
        name, _, direction = item.partition(":")
        table: dict[str, Any] = {"name": name, "direction": direction or "max"}
    elif isinstance(item, dict):
        table = {"direction": "max", **item}
    else:
        raise SidecarProblem(
            'each objective is "name", "name:min" or {name = ..., direction = ...}'
        )
    if (
        set(table) - {"name", "direction"}
        or not isinstance(table.get("name"), str)
        or not table["name"]
    ):
        raise SidecarProblem("an objective table has exactly `name` and optional `direction`")
    if table["direction"] not in ("max", "min"):
        raise SidecarProblem(f'objective {table["name"]!r}: direction must be "max" or "min"')
    return Objective(table["name"], table["direction"])


def read_sidecar(path: Path) -> dict[str, Any]:
    """Validated ``Task`` keyword arguments from ``path`` (a ``.toml``); ``{}`` if absent."""
    if not path.is_file():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SidecarProblem(f"is not valid TOML ({exc}); fix the file") from exc
    unknown = sorted(set(raw) - set(SIDECAR_KEYS))
    if unknown:
        raise SidecarProblem(
            f"unknown key(s) {', '.join(unknown)}; valid keys are {', '.join(SIDECAR_KEYS)}"
        )
    meta: dict[str, Any] = {}
    for key in ("name", "category", "description"):
        if key in raw:
            if not isinstance(raw[key], str) or (key != "description" and not raw[key].strip()):
                raise SidecarProblem(f"`{key}` must be a non-empty string")
            meta[key] = raw[key].strip()
    for key in ("atol", "rtol"):
        if key in raw:
            meta[key] = _number(key, raw[key])
    for key in ("backends", "features"):
        if key in raw:
            meta[key] = _strings(key, raw[key])
    if "objectives" in raw:
        if not isinstance(raw["objectives"], list) or not raw["objectives"]:
            raise SidecarProblem('`objectives` must be a non-empty list, e.g. ["speedup"]')
        meta["objectives"] = tuple(_objective(item) for item in raw["objectives"])
    if "seed" in raw:
        if isinstance(raw["seed"], bool) or not isinstance(raw["seed"], int):
            raise SidecarProblem("`seed` must be an integer")
        meta["seed"] = raw["seed"]
    return meta
