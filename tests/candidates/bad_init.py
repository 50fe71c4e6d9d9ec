import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        raise ValueError("refusing to build")

    def forward(self, x):
        return x
