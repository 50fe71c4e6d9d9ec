# Hostile: never returns. Expect timeout; the whole process group is killed.
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        while True:
            pass
