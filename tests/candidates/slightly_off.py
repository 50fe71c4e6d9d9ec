# Off by 1e-3 everywhere: outside the default fp32 tolerance (1e-4), inside 1e-2.
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        return torch.add(self.bias, F.silu(x), alpha=self.scale_factor) + 1e-3
