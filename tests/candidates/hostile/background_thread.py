# Hostile: returns an empty tensor at once and fills it on a background thread, so a timer
# would see no work. Rejected by the policy (threads); without it the harness sees the
# thread still running when forward returns.
import threading
import time

import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        out = torch.empty_like(x)

        def work():
            time.sleep(0.2)
            torch.mul(x * torch.sigmoid(x), self.scale_factor, out=out).add_(self.bias)

        threading.Thread(target=work).start()
        return out
