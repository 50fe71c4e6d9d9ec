"""Run configuration: defaults, config files and environment, validated with pydantic."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

ProposerName = Literal["builtin", "llm"]


class RunConfig(BaseModel):
    """Everything a discovery run needs to know; stored with the run so --resume can rebuild it."""

    task: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    iterations: int = Field(default=40, ge=1)
    workers: int = Field(default=2, ge=1, le=64)
    # Proposals prepared while every worker is busy, so the next LLM call overlaps the
    # evaluations in flight instead of waiting for them (0: strictly one after the other).
    lookahead: int = Field(default=1, ge=0, le=16)
    proposers: list[ProposerName] = Field(default_factory=lambda: list[ProposerName](["builtin"]))
    models: list[str] = Field(default_factory=list)
    api_base: str | None = None
    edit_format: Literal["full", "diff"] = "full"
    budget_usd: float | None = Field(default=None, ge=0)
    time_limit_s: float | None = Field(default=None, gt=0)
    device_seconds: float | None = Field(default=None, gt=0)
    target_score: float | None = None
    backend: str = "cpu"
    sandbox: str = "process"
    threads: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    compile_timeout_s: float = Field(default=180.0, gt=0)
    seed: int = 0
    islands: int = Field(default=2, ge=1)
    migration_every: int = Field(default=10, ge=1)
    reflect_every: int = Field(default=10, ge=1)
    exploit: float = Field(default=0.6, ge=0)
    explore: float = Field(default=0.3, ge=0)
    random: float = Field(default=0.1, ge=0)
    max_code_bytes: int = Field(default=200_000, ge=1000)
    # LLM sampling and credentials (an OpenEvolve config.yaml sets them); None: the gateway's
    # defaults and the provider's usual key variable.
    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    api_key_env: str | None = None
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # "auto" (this machine's cluster) or HOST:PORT; ray executor only

    @field_validator("proposers")
    @classmethod
    def _some_proposer(cls, value: list[ProposerName]) -> list[ProposerName]:
        if not value:
            raise ValueError("at least one proposer is needed: use --proposer builtin or llm")
        return value

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or value.startswith("ray://"):
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--ray-address {value!r} is not auto or HOST:PORT (e.g. 10.0.0.5:6379)")
        return value

    @property
    def default_model(self) -> str | None:
        return self.models[0] if self.models else os.environ.get("DAEDALUS_MODEL")


def daedalus_home() -> Path:
    """The per-project state directory (archive, checkpoints), beside the default archive."""
    home = Path.cwd() / ".daedalus"
    home.mkdir(parents=True, exist_ok=True)
    return home


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML run-config file; unknown keys are an error that lists the valid ones."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the config file ({exc}); fix or remove it") from exc
    section = data.get("run", data)
    unknown = set(section) - set(RunConfig.model_fields)
    if unknown:
        valid = ", ".join(sorted(RunConfig.model_fields))
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; valid keys are: {valid}")
    return dict(section)
