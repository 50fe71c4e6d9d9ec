# Hostile: allocates and touches memory until something stops it. RLIMIT_AS must turn this
# into a failed allocation (runtime_error) long before the machine runs out of memory.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        hoard = []
        while True:
            hoard.append(torch.ones(64 * 1024 * 1024))  # 256 MB, touched
