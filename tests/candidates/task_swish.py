import torch
import torch.nn as nn


class Model(nn.Module):
    """Swish, scale and bias: x * sigmoid(x) * scale + bias (a small task for sandbox tests)."""

    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        x = x * torch.sigmoid(x)
        x = x * self.scale_factor
        return x + self.bias


batch_size = 64
dim = 4096
scale_factor = 2.0


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return [scale_factor, (dim,)]
