# Hostile: computes once, then returns the cached output. Incorrect: every trial's inputs
# differ.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))
        self.cached = None

    def forward(self, x):
        if self.cached is None:
            self.cached = x * torch.sigmoid(x) * self.scale_factor + self.bias
        return self.cached
