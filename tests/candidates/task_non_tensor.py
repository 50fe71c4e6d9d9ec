import torch
import torch.nn as nn


class Model(nn.Module):
    """A broken task: forward returns a Python float, not a tensor."""

    def forward(self, x):
        return float(x.sum())


def get_inputs():
    return [torch.randn(4, 4)]


def get_init_inputs():
    return []
