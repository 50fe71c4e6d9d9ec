import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    """
    LayerNorm over the hidden dimension followed by a tanh-approximated GELU.
    """

    def __init__(self, hidden_size):
        super(Model, self).__init__()
        self.norm = nn.LayerNorm(hidden_size)
        with torch.no_grad():
            self.norm.weight.normal_(1.0, 0.1)
            self.norm.bias.normal_(0.0, 0.1)

    def forward(self, x):
        x = self.norm(x)
        x = F.gelu(x, approximate="tanh")
        return x


batch_size = 16
seq_len = 256
hidden_size = 768


def get_inputs():
    return [torch.randn(batch_size, seq_len, hidden_size) * 2.0 + 0.5]


def get_init_inputs():
    return [hidden_size]
