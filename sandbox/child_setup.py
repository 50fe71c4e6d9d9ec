"""What a fork-server child inherits or sets up before it runs anything: torch and the
harnesses (imported once in the server), numpy warmed in the server and reseeded in each
child, and the child's environment. Kept apart from the server's event loop."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from daedalus.sandbox.result import Limits

_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "CC", "CXX", "LD_LIBRARY_PATH", "CPATH")
_ENV_KEEP_PREFIXES = ("CUDA_", "NVIDIA_", "ASCEND_", "TRITON_")  # device selection, not secrets


def torch_side() -> tuple[ModuleType, ModuleType]:
    """torch and the kernel and architecture harnesses, imported once, torch pinned to one
    thread first. A lean server (``--lean``, program tasks) never imports them unless a
    kernel or architecture request arrives (it saves the server's memory and start-up)."""
    import torch

    if "daedalus.sandbox.harness" not in sys.modules:
        torch.set_num_threads(1)
        from daedalus.sandbox.functional import warm_up

        warm_up()
    from daedalus.sandbox import arch_harness, harness

    return harness, arch_harness


def warm_numpy() -> None:
    """numpy is what program evaluators import most (178 ms in each child otherwise), and its
    global random state initialises on first use (~17 ms): both here, once. Each program
    child reseeds the global state from the OS (``reseed_numpy``), as a fresh interpreter
    would."""
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.uniform()
        numpy.sin(numpy.arange(4.0)).mean()


def reseed_numpy() -> None:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def child_environment(workdir: Path, ext: Path, limits: Limits, shared_caches: list[Path]) -> None:
    """The candidate's environment: only device-selection variables of the server's, and
    every cache and temporary directory inside what the sandbox lets it write."""
    keep = {k: v for k, v in os.environ.items()
            if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)}
    os.environ.clear()
    os.environ.update(keep)
    os.environ.update({
        "HOME": str(workdir), "TMPDIR": str(workdir / "tmp"),
        "XDG_CACHE_HOME": str(workdir / ".cache"), "PYTHONDONTWRITEBYTECODE": "1",
        "TORCH_EXTENSIONS_DIR": str(ext), "MAX_JOBS": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(shared_caches[0]),
        "TORCHINDUCTOR_COMPILE_THREADS": "1",
        "TRITON_CACHE_DIR": str(shared_caches[1]),
        "OMP_NUM_THREADS": str(limits.threads),
    })  # fmt: skip
    tempfile.tempdir = None  # the server cached /tmp, which is read-only in here
    sys.dont_write_bytecode = True
