import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    """Same maths in fewer passes: silu is fused, then one addcmul-style op."""

    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        return torch.add(self.bias, F.silu(x), alpha=self.scale_factor)
