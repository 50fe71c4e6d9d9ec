# Hostile: writes files outside its work dir (TARGETS are world-writable places such as
# /tmp and /dev/shm, so only the read-only mount namespace can stop it).
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        blocked = []
        for target in TARGETS:
            try:
                with open(target, "w") as f:
                    f.write("escaped")
            except OSError as exc:
                blocked.append(f"{target}: {exc}")
        raise RuntimeError("writes blocked: " + "; ".join(blocked))
