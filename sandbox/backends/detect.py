"""What accelerators and toolkits this machine has, found without importing torch.

Everything here is safe in the agent's process and in the fork server *before* it forks:
it reads files and runs the vendors' command-line tools, and never initialises CUDA or
the Ascend runtime (a forked child cannot use a runtime its parent initialised). Each
``*_problem`` function returns None when the backend can run, else a sentence naming
what is missing and the fix.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from daedalus.sandbox.backends.nvcc import find_nvcc, nvcc_version

ASCEND_HOME_DEFAULTS = (
    "/usr/local/Ascend/ascend-toolkit/latest",
    "/usr/local/Ascend/cann",
)


def _run(command: list[str], timeout: float = 15.0) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@cache
def torch_build() -> dict[str, str | None]:
    """torch's version and the CUDA it was built for, read from ``torch/version.py``."""
    root = _package_dir("torch")
    found: dict[str, str | None] = {"version": None, "cuda": None}
    if root is None:
        return found
    text = (root / "version.py").read_text() if (root / "version.py").exists() else ""
    for key in found:
        match = re.search(rf"^(?:__)?{key}(?:__)?\s*(?::[^=]*)?=\s*'([^']*)'", text, re.MULTILINE)
        found[key] = match.group(1) if match else None
    return found


# --- NVIDIA ----------------------------------------------------------------------------


@cache
def nvidia_gpus() -> list[dict[str, str]]:
    """Name, driver and memory of each NVIDIA GPU (``nvidia-smi``, else /proc)."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                "--format=csv,noheader"])  # fmt: skip
    gpus: list[dict[str, str]] = []
    if out:
        for line in out.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3:
                gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2],
                             "compute_capability": parts[3] if len(parts) > 3 else "?"})
        return gpus
    for info in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        text = Path(info).read_text(errors="replace")
        model = re.search(r"^Model:\s*(.+)$", text, re.MULTILINE)
        gpus.append({"name": model.group(1).strip() if model else "NVIDIA GPU", "driver": "?",
                     "memory": "?", "compute_capability": "?"})
    return gpus


def cuda_problem() -> str | None:
    """Why the cuda backend cannot run here (None when it can)."""
    torch_cuda = torch_build()["cuda"]
    if torch_build()["version"] is None:
        return "torch is not installed in this environment; run `make install`."
    if not nvidia_gpus() and not Path("/dev/nvidiactl").exists():
        return (
            "no NVIDIA GPU is visible (no /dev/nvidiactl, nvidia-smi lists none). Run on a GPU "
            "machine, or use --backend cpu; `daedalus sandbox check-cuda CANDIDATE.py` "
            "compile-checks CUDA sources with nvcc without a GPU."
        )
    if torch_cuda is None:
        return (
            f"torch {torch_build()['version']} was built without CUDA. Install a CUDA build "
            "(pip install torch==<version> --index-url https://download.pytorch.org/whl/cu128)."
        )
    return None


def triton_version() -> str:
    return _version("triton") or "not installed"


def triton_problem(*, need_gpu: bool) -> str | None:
    if _package_dir("triton") is None:
        return "Triton is not installed; `pip install triton` (or `make install`)."
    if need_gpu:
        return cuda_problem()
    return None


# --- Ascend ----------------------------------------------------------------------------


def ascend_home() -> Path | None:
    """The CANN toolkit: ASCEND_TOOLKIT_HOME / ASCEND_HOME_PATH, else the default paths."""
    for var in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH"):
        if os.environ.get(var) and Path(os.environ[var]).is_dir():
            return Path(os.environ[var])
    for path in ASCEND_HOME_DEFAULTS:
        if Path(path).is_dir():
            return Path(path)
    return None


def ascend_npus() -> list[str]:
    return sorted(p.name for p in Path("/dev").glob("davinci[0-9]*"))


def cann_version(home: Path | None = None) -> str | None:
    home = home or ascend_home()
    if home is None:
        return None
    for name in ("version.cfg", "version.info", "ascend_toolkit_install.info"):
        for path in (home / name, home.parent / name, home / "compiler" / name):
            if path.exists():
                match = re.search(r"version\s*[=:]\s*([\w.\-]+)", path.read_text(errors="replace"),
                                  re.IGNORECASE)  # fmt: skip
                if match:
                    return match.group(1)
    return home.resolve().name


def npu_problem() -> str | None:
    """Why the npu backend cannot run here (None when it can)."""
    if not ascend_npus():
        return (
            "no Ascend NPU is visible (no /dev/davinci0, ...). Run on an Ascend machine with "
            "the driver installed (`npu-smi info` lists the NPUs), or use --backend cpu."
        )
    if _package_dir("torch_npu") is None:
        return (
            "torch_npu is not installed; install the torch_npu release matching torch "
            f"{torch_build()['version']} and your CANN version."
        )
    if ascend_home() is None:
        return (
            "the CANN toolkit is missing (no /usr/local/Ascend/ascend-toolkit/latest); install "
            "it and `source set_env.sh`, or set ASCEND_TOOLKIT_HOME."
        )
    return None


def ascend_fingerprint() -> dict[str, str]:
    smi = _run(["npu-smi", "info"]) or ""
    chip = re.search(r"\|\s*\d+\s+(\S*910\S*|\S*310\S*)", smi)
    driver = re.search(r"Version:\s*([\w.\-]+)", smi)
    return {
        "npu": chip.group(1) if chip else (", ".join(ascend_npus()) or "none"),
        "npu_count": str(len(ascend_npus())),
        "driver": driver.group(1) if driver else "unknown",
        "cann": cann_version() or "not installed",
        "torch_npu": _version("torch_npu") or "not installed",
    }


# --- choosing ----------------------------------------------------------------------------


def best_backend() -> str:
    """``--backend auto``: a GPU if usable, else an Ascend NPU, else the CPU."""
    if cuda_problem() is None:
        return "cuda"
    if npu_problem() is None:
        return "npu"
    return "cpu"


def cuda_fingerprint() -> dict[str, str]:
    gpus = nvidia_gpus()
    return {
        "gpu": gpus[0]["name"] if gpus else "none",
        "gpu_count": str(len(gpus)),
        "driver": gpus[0]["driver"] if gpus else "none",
        "compute_capability": gpus[0]["compute_capability"] if gpus else "none",
        "cuda_torch": torch_build()["cuda"] or "none (CPU build)",
        "nvcc": nvcc_version() or ("not found" if find_nvcc() is None else "unknown"),
        "triton": triton_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str:
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def cpu_fingerprint() -> dict[str, str]:
    """The CPU backend's hardware and toolchain fingerprint, without importing torch."""
    return {
        "backend": "cpu",
        "device": _cpu_model(),
        "cpu_model": _cpu_model(),
        "cores": str(os.cpu_count() or 0),
        "cores_usable": str(len(os.sched_getaffinity(0))),
        "torch": torch_build()["version"] or "not installed",
        "python": platform.python_version(),
        "compiler": _compiler(),
        "os": platform.platform(),
    }
