# Hostile: reaches os through eval and the builtins. Rejected by the policy (dynamic-code).
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        return eval("__import__('os').system('true')")
