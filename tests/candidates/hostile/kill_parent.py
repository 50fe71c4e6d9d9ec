# Hostile: tries to SIGKILL its parent and anything that looks like the evaluator.
# Rejected by the policy (os, signal); without it the PID namespace and the dropped uid
# leave it nothing to kill, and it reports what it tried.
import os
import signal

import torch.nn as nn


def _targets():
    found = [os.getppid()]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"forkserver" in cmd or b"pytest" in cmd or b"daedalus" in cmd:
            found.append(int(entry))
    return found


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        attempts = {}
        for pid in _targets():
            try:
                os.kill(pid, signal.SIGKILL)
                attempts[pid] = "sent"
            except OSError as exc:
                attempts[pid] = type(exc).__name__
        raise RuntimeError(f"kill attempts: {attempts}")
