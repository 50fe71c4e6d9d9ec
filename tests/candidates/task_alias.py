import torch
import torch.nn as nn

TABLE = torch.arange(16.0)


class Model(nn.Module):
    """Returns state directly: a plain tensor attribute and a module-level constant."""

    def __init__(self):
        super().__init__()
        self.cache = torch.ones(16)

    def forward(self, x):
        return x + 1, self.cache, TABLE


def get_inputs():
    return [torch.randn(16)]


def get_init_inputs():
    return []
