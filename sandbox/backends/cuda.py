"""The CUDA backend: candidates run on an NVIDIA GPU through torch, including CUDA
extensions built with ``torch.utils.cpp_extension.load_inline``.

Correctness is the CPU backend's protocol; timing is ``device.AcceleratorBackend``'s
(CUDA events, device-wide synchronisation, L2 flush, warm-up, interleaving). Before a
candidate reaches a GPU, ``nvcc.check_candidate`` can compile-check its CUDA sources on any
machine with nvcc (the evaluator does this for ``--backend cuda``).
"""

from __future__ import annotations

from typing import Any

import torch

from daedalus.sandbox.backends import detect
from daedalus.sandbox.backends.device import AcceleratorBackend

# Captured before any candidate is imported.
_synchronize = torch.cuda.synchronize
_Event = torch.cuda.Event
_is_available = torch.cuda.is_available
DEFAULT_L2_BYTES = 50 * 1024 * 1024  # an H100's L2; used when the driver does not say


class CudaBackend(AcceleratorBackend):
    name = "cuda"
    device_type = "cuda"

    def available(self) -> bool:
        return detect.cuda_problem() is None and bool(_is_available())

    def synchronize(self) -> None:
        _synchronize()

    def event(self) -> Any:
        return _Event(enable_timing=True)

    def l2_bytes(self) -> int:
        props = torch.cuda.get_device_properties(0)
        return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)

    def fingerprint(self) -> dict[str, str]:
        found = {**super().fingerprint(), **detect.cuda_fingerprint()}
        found.update(backend=self.name, device=found.get("gpu", "none"))
        return found
