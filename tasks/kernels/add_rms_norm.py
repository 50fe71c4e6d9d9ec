import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Residual add followed by RMSNorm with a learned scale, as in a transformer block.
    """

    def __init__(self, hidden_size, eps=1e-6):
        super(Model, self).__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(hidden_size))
        self.eps = eps

    def forward(self, x, residual):
        h = x + residual
        variance = h.pow(2).mean(dim=-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.eps)
        return self.weight * h


batch_size = 16
seq_len = 256
hidden_size = 1024


def get_inputs():
    x = torch.randn(batch_size, seq_len, hidden_size)
    residual = torch.randn(batch_size, seq_len, hidden_size) * 2.0
    return [x, residual]


def get_init_inputs():
    return [hidden_size]
