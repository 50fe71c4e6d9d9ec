"""Compile-checking CUDA candidates with `nvcc`, without a GPU and without importing torch.

A candidate that builds a CUDA extension with ``load_inline(cuda_sources=...)`` is checked
here before it is sent to a GPU machine or container: the CUDA strings are pulled out of the
source statically (module constants, concatenations, lists, ``textwrap.dedent``) and compiled
with ``nvcc -c`` exactly as ``load_inline`` would (same implicit headers, flags, includes).
Results are cached by the hash of what nvcc sees, because torch's headers make every
compile cost tens of seconds.

The source is untrusted and nvcc runs on this host, so includes must be system headers or
plain relative names (an ``#include "/etc/passwd"`` would otherwise paste a host file into
the error log that goes back to the model), and only known-harmless flags are passed on.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ARCH = "sm_80"
IMPLICIT_HEADERS = ("#include <torch/types.h>", "#include <cuda.h>", "#include <cuda_runtime.h>")
COMMON_FLAGS = (
    "-D__CUDA_NO_HALF_OPERATORS__",
    "-D__CUDA_NO_HALF_CONVERSIONS__",
    "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__",
    "--expt-relaxed-constexpr",
    "-DTORCH_API_INCLUDE_EXTENSION_H",
    "-D_GLIBCXX_USE_CXX11_ABI=1",
)
_SAFE_FLAG = re.compile(
    r"^(-O[0-3s]?|--use_fast_math|-use_fast_math|-lineinfo|--extended-lambda|"
    r"--expt-[a-z-]+|-std=c\+\+(17|20)|-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.]*)?|"
    r"-U[A-Za-z_][A-Za-z0-9_]*|--maxrregcount=\d+|-maxrregcount=\d+|-Xptxas=-v|"
    r"--ptxas-options=-v|-arch=(sm|compute)_\d+a?|--gpu-architecture=(sm|compute)_\d+a?|"
    r"-ftz=(true|false)|-prec-div=(true|false)|-prec-sqrt=(true|false)|-fmad=(true|false))$"
)
_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]*)[>"]', re.MULTILINE)


class NvccUnavailable(RuntimeError):
    """nvcc or torch's headers are missing; the message says what to install."""


@dataclass
class CudaExtension:
    """One ``load_inline`` call: its name and the sources nvcc and the C++ compiler get."""

    name: str
    cuda_sources: list[str]
    cpp_sources: list[str] = field(default_factory=list)
    extra_cuda_cflags: list[str] = field(default_factory=list)
    line: int = 0
    implicit_headers: bool = True  # load_inline(no_implicit_headers=True) turns them off


@dataclass
class CheckResult:
    ok: bool
    log: str
    seconds: float
    cached: bool
    command: list[str] = field(default_factory=list)


def find_nvcc() -> Path | None:
    """nvcc from CUDA_HOME/CUDA_PATH, then PATH, then /usr/local/cuda."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidate = Path(os.environ[var]) / "bin" / "nvcc"
            if candidate.exists():
                return candidate
    found = shutil.which("nvcc")
    if found:
        return Path(found)
    default = Path("/usr/local/cuda/bin/nvcc")
    return default if default.exists() else None


def nvcc_version(nvcc: Path | None = None) -> str | None:
    """The CUDA release nvcc reports, e.g. ``"13.0"`` (None when there is no nvcc)."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        return None
    run = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"release (\d+\.\d+)", run.stdout)
    return match.group(1) if match else None


def torch_include_dirs() -> list[str]:
    """torch's C++ headers and Python's, located without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        raise NvccUnavailable("torch is not installed, so its C++ headers are missing.")
    include = Path(spec.origin).parent / "include"
    if not (include / "torch" / "extension.h").exists():
        raise NvccUnavailable(f"torch's C++ headers are missing under {include}.")
    dirs = [str(include), str(include / "torch" / "csrc" / "api" / "include")]
    python_include = sysconfig.get_path("include", scheme="posix_prefix")
    if python_include:
        dirs.append(python_include)
    return dirs


# --- static extraction -------------------------------------------------------------------


class _Resolver:
    """Best-effort constant folding of string expressions over the module's assignments."""

    def __init__(self, tree: ast.Module) -> None:
        self.names: dict[str, ast.expr] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.names[target.id] = node.value
            elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                  and node.value is not None):  # fmt: skip
                self.names[node.target.id] = node.value

    def value(self, node: ast.expr | None, depth: int = 0) -> str | list[str] | None:
        if node is None or depth > 20:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and node.id in self.names:
            return self.value(self.names[node.id], depth + 1)
        if isinstance(node, ast.FormattedValue) and node.format_spec is None:
            inner = self.value(node.value, depth + 1)
            return inner if isinstance(inner, str) and node.conversion in (-1, 115) else None
        if isinstance(node, ast.JoinedStr):
            parts = [self.value(v, depth + 1) for v in node.values]
            return "".join(p for p in parts if isinstance(p, str)) if all(
                isinstance(p, str) for p in parts
            ) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.value(node.left, depth + 1), self.value(node.right, depth + 1)
            if isinstance(left, str) and isinstance(right, str):
                return left + right
            if isinstance(left, list) and isinstance(right, list):
                return left + right
            return None
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.value(e, depth + 1) for e in node.elts]
            return [i for i in items if isinstance(i, str)] if all(
                isinstance(i, str) for i in items
            ) else None
        if isinstance(node, ast.Call) and len(node.args) == 1:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            inner = self.value(node.args[0], depth + 1)
            if name == "dedent" and isinstance(inner, str):
                return textwrap.dedent(inner)
            if name == "join" and isinstance(func, ast.Attribute) and isinstance(inner, list):
                sep = self.value(func.value, depth + 1)
                return sep.join(inner) if isinstance(sep, str) else None
        return None

    def strings(self, node: ast.expr | None) -> list[str] | None:
        got = self.value(node)
        if isinstance(got, str):
            return [got]
        return got


def _arg(call: ast.Call, index: int, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return call.args[index] if len(call.args) > index else None


def extract_extensions(code: str) -> tuple[list[CudaExtension], list[str]]:
    """Every ``load_inline`` call with CUDA sources, and notes on calls that could not be read.

    A note means the check cannot vouch for that call; the GPU machine will compile it.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [], [f"the candidate does not parse: {exc}"]
    resolver = _Resolver(tree)
    found: list[CudaExtension] = []
    notes: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called != "load_inline":
            continue
        cuda_node = _arg(node, 2, "cuda_sources")
        if cuda_node is None or (isinstance(cuda_node, ast.Constant) and cuda_node.value is None):
            continue
        cuda = resolver.strings(cuda_node)
        if cuda is None:
            notes.append(f"line {node.lineno}: cuda_sources is computed at run time; not checked")
            continue
        name = resolver.value(_arg(node, 0, "name"))
        flags = resolver.strings(_arg(node, 99, "extra_cuda_cflags")) or []
        no_implicit = _arg(node, 99, "no_implicit_headers")
        implicit = not (isinstance(no_implicit, ast.Constant) and no_implicit.value is True)
        found.append(
            CudaExtension(
                name=name if isinstance(name, str) else f"ext_line{node.lineno}",
                cuda_sources=cuda,
                cpp_sources=resolver.strings(_arg(node, 1, "cpp_sources")) or [],
                extra_cuda_cflags=flags,
                line=node.lineno,
                implicit_headers=implicit,
            )
        )
    return found, notes


# --- policy and compilation ----------------------------------------------------------------


def unsafe_includes(source: str) -> list[str]:
    """Includes that could read host files into the compiler's log: absolute or ``..`` paths."""
    bad = []
    for _, path in _INCLUDE.findall(source):
        if path.startswith(("/", "~")) or ".." in Path(path).parts:
            bad.append(path)
    return bad


def split_flags(flags: list[str]) -> tuple[list[str], list[str]]:
    """(flags passed to nvcc, flags dropped because they are not on the safe list)."""
    kept = [f for f in flags if _SAFE_FLAG.match(f)]
    return kept, [f for f in flags if not _SAFE_FLAG.match(f)]


def cache_dir() -> Path:
    root = os.environ.get("DAEDALUS_CACHE_DIR") or Path.home() / ".cache" / "daedalus"
    return Path(root) / "nvcc"


def nvcc_command(nvcc: Path, source: Path, output: Path, *, arch: str, flags: list[str]) -> list[str]:
    includes = [arg for d in torch_include_dirs() for arg in ("-isystem", d)]
    arch_flags = [] if any(f.startswith(("-arch", "--gpu-architecture")) for f in flags) else [
        f"-arch={arch}"
    ]
    std = [] if any(f.startswith("-std=") for f in flags) else ["-std=c++20"]
    return [
        str(nvcc), "-c", str(source), "-o", str(output), *COMMON_FLAGS, *arch_flags, *std,
        "--compiler-options", "-fPIC", *includes, *flags,
    ]  # fmt: skip


def compile_check(
    ext: CudaExtension, *, arch: str = DEFAULT_ARCH, timeout_s: float = 300.0,
    use_cache: bool = True,
) -> CheckResult:  # fmt: skip
    """Compile one extension's CUDA translation unit with ``nvcc -c``; never raises for the
    candidate's own errors (they come back as ``ok=False`` with nvcc's log)."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise NvccUnavailable(
            "nvcc was not found (CUDA_HOME, PATH, /usr/local/cuda/bin); install the CUDA "
            "toolkit or set CUDA_HOME to check CUDA candidates without a GPU."
        )
    headers = list(IMPLICIT_HEADERS) if ext.implicit_headers else []
    text = "\n".join([*headers, *ext.cuda_sources])
    bad = unsafe_includes(text)
    if bad:
        return CheckResult(
            False,
            f"rejected #include of {', '.join(bad)}: only system headers and plain relative "
            "names may be included",
            0.0,
            False,
        )
    flags, dropped = split_flags(ext.extra_cuda_cflags)
    note = f"[daedalus] dropped unsupported nvcc flags: {' '.join(dropped)}\n" if dropped else ""
    key = hashlib.sha256(
        json.dumps([text, flags, arch, str(nvcc), nvcc_version(nvcc), sys.version]).encode()
    ).hexdigest()[:32]
    cached = cache_dir() / f"{key}.json"
    if use_cache and cached.exists():
        data = json.loads(cached.read_text())
        return CheckResult(bool(data["ok"]), note + str(data["log"]), 0.0, True, data["command"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="daedalus-nvcc-") as tmp:
        source = Path(tmp) / "cuda.cu"
        source.write_text(text)
        command = nvcc_command(nvcc, source, Path(tmp) / "cuda.o", arch=arch, flags=flags)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "CUDA_HOME", "LANG", "HOME")}
        try:
            run = subprocess.run(
                command, cwd=tmp, env=env, capture_output=True, text=True,
                timeout=timeout_s, check=False,
            )  # fmt: skip
            ok, log = run.returncode == 0, (run.stdout + run.stderr).replace(tmp + "/", "")
        except subprocess.TimeoutExpired:
            ok, log = False, f"nvcc did not finish within {timeout_s:.0f} s"
    seconds = time.perf_counter() - start
    log = log[-20_000:]
    if use_cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"ok": ok, "log": log, "command": command}))
    return CheckResult(ok, note + log, seconds, False, command)


def check_candidate(
    code: str, *, arch: str = DEFAULT_ARCH, timeout_s: float = 300.0
) -> tuple[bool, str]:
    """(all CUDA sources compile, a report). A candidate without CUDA sources passes."""
    extensions, notes = extract_extensions(code)
    lines = [f"note: {n}" for n in notes]
    ok = True
    for ext in extensions:
        result = compile_check(ext, arch=arch, timeout_s=timeout_s)
        state = "ok" if result.ok else "FAILED"
        lines.append(f"{ext.name} (line {ext.line}): nvcc -c {state}" + (
            " (cached)" if result.cached else f" in {result.seconds:.1f} s"
        ))  # fmt: skip
        if not result.ok:
            ok = False
            lines.append(result.log.strip())
        elif result.log.startswith("[daedalus]"):
            lines.append(result.log.splitlines()[0])
    return ok, "\n".join(lines)


def precheck(code: str, *, arch: str = DEFAULT_ARCH) -> str | None:
    """The parent-side gate for ``--backend cuda``: nvcc's report when the candidate's CUDA
    sources do not compile, else None. Skipped (None) when the candidate has no CUDA
    sources, when nvcc is missing, or when DAEDALUS_NVCC_PRECHECK=0."""
    if os.environ.get("DAEDALUS_NVCC_PRECHECK", "1") == "0" or "load_inline" not in code:
        return None
    if find_nvcc() is None:
        return None
    try:
        ok, report = check_candidate(code, arch=os.environ.get("DAEDALUS_NVCC_ARCH", arch))
    except NvccUnavailable:
        return None
    return None if ok else f"nvcc rejected the CUDA sources before any GPU ran them:\n{report}"
