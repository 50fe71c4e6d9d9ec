import torch
import torch.nn as nn


class Model(nn.Module):
    """Row-by-row softmax in a Python loop: one vectorised call is far (>10x) faster."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.stack([torch.softmax(row, dim=-1) for row in x])


rows = 512
cols = 32


def get_inputs():
    return [torch.randn(rows, cols)]


def get_init_inputs():
    return []
