# Hostile: dereferences NULL. Rejected by the policy (ctypes); without it the child dies
# with SIGSEGV and the result says so.
import ctypes

import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        return ctypes.string_at(0)
