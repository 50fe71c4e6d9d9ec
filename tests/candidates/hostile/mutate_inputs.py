# Hostile: computes the right values in place, destroying its input. Incorrect.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        x.mul_(torch.sigmoid(x)).mul_(self.scale_factor).add_(self.bias)
        return x
