# Hostile (lazy): returns zeros of the right shape. Incorrect.
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x)
