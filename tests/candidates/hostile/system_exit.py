# Hostile: raises SystemExit from forward to end the harness early. Runtime error.
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        raise SystemExit(0)
