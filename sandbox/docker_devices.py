"""Accelerators for sandbox containers: NVIDIA GPUs by device request, Ascend NPUs by nodes.

GPUs go through the engine's device requests (what ``docker run --gpus`` does), which the
NVIDIA Container Toolkit turns into device nodes and driver libraries. Ascend NPUs have no
such plugin in a stock engine, so the container gets the device nodes and read-only mounts
of the host's driver that Ascend's container guide lists: ``/dev/davinciN``,
``/dev/davinci_manager``, ``/dev/devmm_svm``, ``/dev/hisi_hdc``, the driver directory,
``dcmi`` and ``npu-smi``. Never ``--privileged``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NPU_CONTROL_NODES = ("davinci_manager", "devmm_svm", "hisi_hdc")
NPU_DRIVER_MOUNTS = (
    "/usr/local/Ascend/driver",
    "/usr/local/dcmi",
    "/usr/local/bin/npu-smi",
    "/usr/local/sbin/npu-smi",
    "/etc/ascend_install.info",
    "/etc/hdcBasic.cfg",
    "/etc/sys_version.conf",
)
_DAVINCI = re.compile(r"^davinci(\d+)$")


class DeviceError(ValueError):
    """A device selection that cannot be honoured; the message names the fix."""


@dataclass
class DeviceConfig:
    """What ``containers.create`` needs for the chosen accelerators."""

    device_requests: list[Any] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (host path, container path)
    group_add: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    description: str = "none"

    def merge(self, other: DeviceConfig) -> DeviceConfig:
        return DeviceConfig(
            self.device_requests + other.device_requests,
            self.devices + other.devices,
            self.mounts + other.mounts,
            sorted({*self.group_add, *other.group_add}),
            {**self.environment, **other.environment},
            ", ".join(d for d in (self.description, other.description) if d != "none") or "none",
        )


def parse_selection(spec: str | None) -> tuple[str, int | list[str]] | None:
    """``None``/``""``/``"none"`` → None; ``"all"``; ``"2"`` (a count); ``"0,3"`` (ids)."""
    if spec is None or spec.strip().lower() in ("", "none", "0"):
        return None
    text = spec.strip().lower()
    if text == "all":
        return ("all", -1)
    if text.startswith("count="):
        text = text.removeprefix("count=")
        if text.isdigit():
            return ("count", int(text))
    if text.startswith(("device=", "ids=")):
        text = text.split("=", 1)[1]
        ids = [part.strip() for part in text.split(",") if part.strip()]
        if ids:
            return ("ids", ids)
    if text.isdigit():
        return ("count", int(text))
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if ids and all(re.fullmatch(r"[0-9]+|GPU-[0-9a-f-]+", i, re.IGNORECASE) for i in ids):
        return ("ids", ids)
    raise DeviceError(
        f"Cannot read the device selection {spec!r}: use 'all', a count such as '2' or "
        "'count=2', or ids such as 'device=0,3'."
    )


def gpu_config(spec: str | None) -> DeviceConfig:
    """NVIDIA GPUs through a device request: all, a count, or given ids (or UUIDs)."""
    from docker.types import DeviceRequest

    selection = parse_selection(spec)
    if selection is None:
        return DeviceConfig()
    kind, value = selection
    if kind == "ids":
        assert isinstance(value, list)
        request = DeviceRequest(device_ids=value, capabilities=[["gpu"]])
        text = f"gpus {','.join(value)}"
    else:
        assert isinstance(value, int)
        request = DeviceRequest(count=value, capabilities=[["gpu"]])
        text = "all gpus" if value == -1 else f"{value} gpu(s)"
    return DeviceConfig(
        device_requests=[request],
        environment={"NVIDIA_DRIVER_CAPABILITIES": "compute,utility"},
        description=text,
    )


def npu_config(spec: str | None, dev: Path = Path("/dev"), root: Path = Path("/")) -> DeviceConfig:
    """Ascend NPUs: their ``/dev/davinciN`` nodes, the control nodes and the driver mounts.

    ``dev`` and ``root`` exist for tests; they default to the real host.
    """
    selection = parse_selection(spec)
    if selection is None:
        return DeviceConfig()
    present = sorted(
        (int(m.group(1)) for p in dev.glob("davinci*") if (m := _DAVINCI.match(p.name))),
    )
    if not present:
        raise DeviceError(
            f"No Ascend NPU device nodes ({dev}/davinci0, ...) on this host. Install the "
            "Ascend driver (npu-smi info must list the NPUs) or run without --npus."
        )
    kind, value = selection
    if kind == "all":
        chosen = present
    elif kind == "count":
        assert isinstance(value, int)
        if value > len(present):
            raise DeviceError(f"Asked for {value} NPUs but this host has {len(present)}.")
        chosen = present[:value]
    else:
        assert isinstance(value, list)
        wanted = [int(v) for v in value if v.isdigit()]
        missing = sorted(set(wanted) - set(present))
        if missing or len(wanted) != len(value):
            raise DeviceError(
                f"NPU ids {value} do not all exist; this host has davinci{present} "
                "(ids are the N in /dev/davinciN)."
            )
        chosen = wanted
    missing_nodes = [n for n in NPU_CONTROL_NODES if not (dev / n).exists()]
    if missing_nodes:
        raise DeviceError(
            f"The Ascend control nodes {', '.join(missing_nodes)} are missing under {dev}; the "
            "driver is not fully installed (reinstall it, then check `npu-smi info`)."
        )
    nodes = [str(dev / f"davinci{i}") for i in chosen] + [str(dev / n) for n in NPU_CONTROL_NODES]
    mounts = []
    for path in NPU_DRIVER_MOUNTS:
        host = root / path.lstrip("/")
        if host.exists():
            mounts.append((str(host), path))
    if not any(target == "/usr/local/Ascend/driver" for _, target in mounts):
        raise DeviceError(
            "The Ascend driver directory /usr/local/Ascend/driver is missing on this host; "
            "the container would see the NPUs but could not drive them."
        )
    # The nodes are usually 0660 root:HwHiAiUser; the sandbox user needs that group.
    groups = sorted({str((dev / "davinci_manager").stat().st_gid)})
    return DeviceConfig(
        devices=[f"{node}:{node}:rwm" for node in nodes],
        mounts=mounts,
        group_add=groups,
        description=f"npus {','.join(str(i) for i in chosen)}",
    )


def explain_start_error(message: str, config: DeviceConfig) -> str | None:
    """Turn an engine's device error into what to install, or None when it is not one."""
    lowered = message.lower()
    if config.device_requests and ("device driver" in lowered or "capabilities" in lowered):
        return (
            f"The Docker engine cannot hand GPUs to containers ({message.strip()}). Install the "
            "NVIDIA Container Toolkit and restart the engine (`nvidia-ctk runtime configure "
            "--runtime=docker`), or run without --gpus."
        )
    if config.devices and ("no such file" in lowered or "error gathering device" in lowered):
        return (
            f"The Docker engine could not pass the NPU device nodes ({message.strip()}); check "
            "`ls -l /dev/davinci*` and the Ascend driver installation."
        )
    return None
