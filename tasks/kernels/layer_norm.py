import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Layer normalization over the last dimension, with learned affine parameters.
    """

    def __init__(self, normalized_shape):
        super(Model, self).__init__()
        self.ln = nn.LayerNorm(normalized_shape)
        with torch.no_grad():
            self.ln.weight.normal_(1.0, 0.1)
            self.ln.bias.normal_(0.0, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


batch_size = 32
seq_len = 128
features = 1024


def get_inputs():
    x = torch.randn(batch_size, seq_len, features) * 2.0 + 0.5
    return [x]


def get_init_inputs():
    return [(features,)]
