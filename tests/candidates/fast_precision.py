import torch
import torch.nn as nn


class ModelNew(nn.Module):
    """Stay in float32: no conversions, half the bytes per element."""

    def __init__(self):
        super().__init__()

    def forward(self, x):
        return torch.sigmoid(x)
