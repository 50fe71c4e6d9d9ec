"""AscendC custom operators, built the way MultiKernelBench builds them.

A candidate in this format is a Python file defining six strings:
``project_json_src`` (the msopgen operator description), ``host_tiling_src``,
``host_operator_src``, ``kernel_src``, ``python_bind_src`` (a torch extension calling the
operator through ``EXEC_NPU_CMD``) and ``model_src`` (the ``ModelNew`` that imports
``custom_ops_lib``). The build: ``msopgen gen`` creates the operator project, the sources
are written into it, ``build.sh`` compiles it, the resulting ``custom_opp_*.run`` installs
into the candidate's own work directory (never the shared CANN tree), and the binding is
compiled as the ``custom_ops_lib`` extension against torch_npu.

``plan`` is pure (files and commands) so it can be checked on any machine; ``build``
runs it and needs CANN (msopgen, the AscendC compiler) and torch_npu.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from daedalus.sandbox.backends.base import BackendUnavailable, CandidateFailure
from daedalus.sandbox.result import Status

FIELDS = ("project_json_src", "host_tiling_src", "host_operator_src", "kernel_src",
          "python_bind_src", "model_src")  # fmt: skip
HELPER = "pytorch_npu_helper.hpp"
EXTENSION = "custom_ops_lib"


def snake(name: str) -> str:
    """``AddCustom`` -> ``add_custom`` (msopgen's file naming)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def extract(code: str) -> dict[str, str] | None:
    """The six source strings when the candidate uses this format, else None. Read from the
    module's top-level constant assignments, without executing the candidate."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    found[target.id] = node.value.value
    if not all(name in found for name in FIELDS):
        return None
    return {name: found[name] for name in FIELDS}


@dataclass
class Plan:
    """What building one AscendC candidate writes and runs, in order."""

    op: str  # e.g. AddCustom
    root: Path
    files: dict[Path, str] = field(default_factory=dict)  # written after msopgen
    commands: list[tuple[Path, list[str]]] = field(default_factory=list)

    @property
    def project(self) -> Path:
        return self.root / self.op

    @property
    def install(self) -> Path:
        return self.root / "opp"

    @property
    def vendor(self) -> Path:
        return self.install / "vendors" / "customize"


def plan(sources: dict[str, str], root: Path, soc: str) -> Plan:
    """The files and commands for one candidate; raises CandidateFailure(compile_error) for
    an operator description msopgen could not use."""
    try:
        spec = json.loads(sources["project_json_src"])
        op = spec[0]["op"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise CandidateFailure(Status.COMPILE_ERROR, "compile", "project_json_src must be a "
                               f"JSON list whose first entry names the operator ('op'): {exc}"
                               ) from None  # fmt: skip
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", str(op)):
        raise CandidateFailure(Status.COMPILE_ERROR, "compile", f"operator name {op!r} must "
                               "be CamelCase letters and digits (msopgen's rule).")
    result = Plan(op=op, root=root)
    base = snake(op)
    result.files[root / f"{base}.json"] = sources["project_json_src"]
    result.commands.append(
        (root, ["msopgen", "gen", "-i", f"{base}.json", "-c", f"ai_core-{soc}", "-lan", "cpp",
                "-out", op])
    )
    project = result.project
    result.files[project / "op_host" / f"{base}_tiling.h"] = sources["host_tiling_src"]
    result.files[project / "op_host" / f"{base}.cpp"] = sources["host_operator_src"]
    result.files[project / "op_kernel" / f"{base}.cpp"] = sources["kernel_src"]
    result.files[root / "pybind" / "op.cpp"] = sources["python_bind_src"]
    result.commands.append((project, ["bash", "build.sh"]))
    result.commands.append((project / "build_out", ["bash", "-c",
                            f"./custom_opp_*.run --quiet --install-path={result.install}"]))
    return result


def default_soc() -> str:
    """The chip msopgen targets: DAEDALUS_ASCEND_SOC, else what npu-smi reports."""
    if os.environ.get("DAEDALUS_ASCEND_SOC"):
        return os.environ["DAEDALUS_ASCEND_SOC"]
    try:
        out = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=15,
                             check=False).stdout  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    match = re.search(r"\b(910[A-Z0-9]*|310[A-Z0-9]*)\b", out)
    if match is None:
        raise BackendUnavailable("cannot tell which Ascend chip to build for (npu-smi info "
                                 "gave no chip name); set DAEDALUS_ASCEND_SOC, e.g. Ascend910B2.")
    return f"Ascend{match.group(1)}"


def helper_dir() -> Path:
    """Where ``pytorch_npu_helper.hpp`` lives (it ships with Ascend's samples, not CANN)."""
    for candidate in (os.environ.get("DAEDALUS_ASCEND_HELPER_DIR"),
                      str(Path.home() / ".cache" / "daedalus" / "ascend")):  # fmt: skip
        if candidate and (Path(candidate) / HELPER).exists():
            return Path(candidate)
    raise BackendUnavailable(
        f"AscendC candidates include {HELPER} (EXEC_NPU_CMD), which comes with Ascend's "
        "samples (the CppExtension folder of an operator sample) rather than with CANN; "
        "put it in a directory and set DAEDALUS_ASCEND_HELPER_DIR to it."
    )


def _run(cwd: Path, argv: list[str], timeout_s: float) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ASCEND_CUSTOM_OPP_PATH"}
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)  # fmt: skip
    except FileNotFoundError as exc:
        raise BackendUnavailable(f"{argv[0]} is missing: install the CANN toolkit and "
                                 f"`source set_env.sh` ({exc}).") from None  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CandidateFailure(Status.TIMEOUT, "compile", f"{' '.join(argv)} did not finish "
                               f"within {timeout_s:.0f} s") from None  # fmt: skip
    if done.returncode != 0:
        log = (done.stdout + done.stderr)[-8000:]
        raise CandidateFailure(Status.COMPILE_ERROR, "compile", f"{' '.join(argv)} failed "
                               f"(exit {done.returncode}):\n{log}")  # fmt: skip


def build(sources: dict[str, str], workdir: Path, *, timeout_s: float = 900.0) -> ModuleType:
    """Build and install the operator, compile the binding, and return ``custom_ops_lib``."""
    if shutil.which("msopgen") is None:
        raise BackendUnavailable("msopgen is not on PATH: install the CANN toolkit and "
                                 "`source /usr/local/Ascend/ascend-toolkit/set_env.sh`.")
    steps = plan(sources, workdir / "ascendc", default_soc())
    steps.root.mkdir(parents=True, exist_ok=True)
    first, *rest = steps.commands
    (steps.root / f"{snake(steps.op)}.json").write_text(sources["project_json_src"])
    _run(first[0], first[1], timeout_s)
    for path, text in steps.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for cwd, argv in rest:
        _run(cwd, argv, timeout_s)
    os.environ["ASCEND_CUSTOM_OPP_PATH"] = str(steps.vendor)
    return _bind(steps)


def _bind(steps: Plan) -> ModuleType:
    import torch_npu
    from torch.utils.cpp_extension import load

    from daedalus.sandbox.backends.detect import ascend_home

    home = ascend_home()
    npu_root = Path(torch_npu.__file__).parent
    lib = steps.vendor / "op_api" / "lib"
    try:
        module = load(
            name=EXTENSION,
            sources=[str(steps.root / "pybind" / "op.cpp")],
            extra_include_paths=[str(helper_dir()), str(npu_root / "include"),
                                 *([str(home / "include")] if home else [])],
            extra_ldflags=[f"-L{lib}", "-lcust_opapi", f"-Wl,-rpath,{lib}",
                           f"-L{npu_root / 'lib'}", "-ltorch_npu",
                           *([f"-L{home / 'lib64'}", "-lascendcl"] if home else [])],
            build_directory=str(steps.root / "pybind"),
            verbose=False,
        )  # fmt: skip
    except Exception as exc:
        raise CandidateFailure(Status.COMPILE_ERROR, "compile", "building custom_ops_lib from "
                               f"python_bind_src failed: {exc}") from None  # fmt: skip
    sys.modules[EXTENSION] = module
    return module
