# Hostile: a correct but no-faster candidate that freezes the clock so it would look
# infinitely fast. Rejected by the policy (monkeypatch); without it the harness's captured
# perf_counter measures honestly.
import time

import torch
import torch.nn as nn

time.perf_counter = lambda: 1.0
time.perf_counter_ns = lambda: 1
time.monotonic = lambda: 1.0


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        x = x * torch.sigmoid(x)
        x = x * self.scale_factor
        return x + self.bias
