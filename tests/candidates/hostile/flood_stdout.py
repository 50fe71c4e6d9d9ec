# Hostile: prints without end. The captured output is capped and the flood is killed.
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        line = "flood " * 20_000
        while True:
            print(line)
