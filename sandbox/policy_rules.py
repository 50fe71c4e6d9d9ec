"""The static candidate policy's tables: what a kernel candidate may import and touch.

Data only; ``sandbox/static.py`` walks the AST against these. Each denial maps to the
rule id that ``Violation.rule`` reports.
"""

from __future__ import annotations

import re

# Top-level modules a kernel candidate may import (submodules included unless denied below).
ALLOWED_IMPORTS = frozenset(
    {
        "torch", "numpy", "triton", "math", "cmath", "functools", "itertools", "typing",
        "typing_extensions", "dataclasses", "collections", "operator", "enum", "abc",
        "numbers", "copy", "__future__",
    }
)  # fmt: skip

# Modules (or dotted prefixes) with a specific reason; matched on imports and attribute use.
DENIED_MODULES: dict[str, str] = {
    "threading": "threads",
    "_thread": "threads",
    "multiprocessing": "threads",
    "concurrent": "threads",
    "asyncio": "threads",
    "torch.multiprocessing": "threads",
    "torch.utils.data": "threads",
    "subprocess": "subprocess",
    "pty": "subprocess",
    "numpy.f2py": "subprocess",
    "numpy.distutils": "subprocess",
    "os": "file-access",
    "posix": "file-access",
    "io": "file-access",
    "pathlib": "file-access",
    "shutil": "file-access",
    "tempfile": "file-access",
    "glob": "file-access",
    "fcntl": "file-access",
    "mmap": "file-access",
    "pickle": "file-access",
    "marshal": "file-access",
    "torch.serialization": "file-access",
    "torch.package": "file-access",
    "socket": "network",
    "ssl": "network",
    "http": "network",
    "urllib": "network",
    "requests": "network",
    "ftplib": "network",
    "smtplib": "network",
    "torch.distributed": "network",
    "torch.hub": "network",
    "ctypes": "ctypes",
    "cffi": "ctypes",
    "numpy.ctypeslib": "ctypes",
    "gc": "introspection",
    "inspect": "introspection",
    "sys": "introspection",
    "traceback": "introspection",
    "types": "introspection",
    "weakref": "introspection",
    "importlib": "dynamic-code",
    "builtins": "dynamic-code",
    "runpy": "dynamic-code",
    "code": "dynamic-code",
    "codeop": "dynamic-code",
    "signal": "process-control",
    "resource": "process-control",
    "atexit": "process-control",
    "faulthandler": "process-control",
    "torch.library": "monkeypatch",
    "torch.overrides": "tensor-subclass",
    "torch.utils._python_dispatch": "tensor-subclass",
}

# Dotted names that may not be used even though their module is allowed.
DENIED_NAMES: dict[str, str] = {
    "torch.save": "file-access",
    "torch.load": "file-access",
    "torch.from_file": "file-access",
    "torch.utils.cpp_extension.load": "file-access",
    "torch.ops.load_library": "file-access",
    "torch.classes.load_library": "file-access",
    "numpy.save": "file-access",
    "numpy.savez": "file-access",
    "numpy.savez_compressed": "file-access",
    "numpy.load": "file-access",
    "numpy.fromfile": "file-access",
    "numpy.memmap": "file-access",
    "numpy.savetxt": "file-access",
    "numpy.loadtxt": "file-access",
    "numpy.genfromtxt": "file-access",
    "numpy.fromregex": "file-access",
    "numpy.DataSource": "file-access",
    "torch.set_num_threads": "threads",
    "torch.set_num_interop_threads": "threads",
    "torch.Tensor._make_subclass": "tensor-subclass",
    "torch.Tensor._make_wrapper_subclass": "tensor-subclass",
    "torch.Tensor.as_subclass": "tensor-subclass",
}

BUILTIN_CALLS: dict[str, str] = {
    "open": "file-access",
    "exec": "dynamic-code",
    "eval": "dynamic-code",
    "compile": "dynamic-code",
    "__import__": "dynamic-code",
    "globals": "introspection",
    "locals": "introspection",
    "vars": "introspection",
    "breakpoint": "introspection",
    "input": "file-access",
    "help": "introspection",
    "exit": "process-control",
    "quit": "process-control",
}

# Attribute names that reach interpreter internals (frames, globals, class graphs).
ESCAPE_ATTRS = frozenset(
    {
        "__globals__", "__subclasses__", "__builtins__", "__code__", "__closure__", "__dict__",
        "__class__", "__bases__", "__base__", "__mro__", "__getattribute__", "__setattr__",
        "__delattr__", "__reduce__", "__reduce_ex__", "__self__", "__func__", "__loader__",
        "__spec__", "__import__", "__kwdefaults__", "__defaults__", "__traceback__",
        "f_globals", "f_locals", "f_back", "f_builtins", "f_code", "gi_frame", "cr_frame",
        "ag_frame", "tb_frame", "tb_next", "co_code", "mro",
    }
)  # fmt: skip
ESCAPE_NAMES = frozenset({"__builtins__", "__import__", "__loader__", "__spec__"})
TENSOR_TYPES = frozenset(
    {
        "torch.Tensor", "torch.nn.Parameter", "torch.nn.parameter.Parameter", "torch.nn.Buffer",
        "torch._C.TensorBase", "torch._C._TensorBase", "torch._tensor.Tensor",
    }
)  # fmt: skip
TENSOR_HOOKS = frozenset({"__torch_function__", "__torch_dispatch__"})
FILE_ATTRS = frozenset({"tofile"})

# C++ source handed to load_inline runs unsandboxed by the Python policy, so scan it too.
CPP_DENIED = re.compile(
    r"\b(system|popen|fork|vfork|execv\w*|execl\w*|socket|connect|fopen|freopen|ofstream|"
    r"ifstream|fstream|dlopen|dlsym|syscall|kill|ptrace|mmap|mprotect|unlink|remove|rename|"
    r"setenv|putenv|pthread_create|PyRun_\w+|PyImport_\w+|PyEval_\w+|Py_Initialize|"
    r"__asm__|asm)\b\s*[(<]?"
    r"|std::thread|std::async|std::filesystem|<fstream>|<thread>|<unistd\.h>|<sys/|<dlfcn\.h>|"
    r"py::module_?::import|py::exec|py::eval|pybind11::exec|pybind11::eval|#\s*include\s*\""
)
