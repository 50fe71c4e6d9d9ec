# Hostile: makes every comparison pass, then returns zeros. Rejected by the policy
# (monkeypatch); without it the harness still uses the functions it captured at start.
import torch
import torch.nn as nn

torch.allclose = lambda *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.equal = lambda *args, **kwargs: True


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x)
