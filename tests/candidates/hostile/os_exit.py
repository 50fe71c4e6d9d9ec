# Hostile: leaves the interpreter without reporting. Rejected by the policy (os).
import os

import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        os._exit(3)
