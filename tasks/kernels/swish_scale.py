import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Swish activation followed by a scale and a bias add: x * sigmoid(x) * scale + bias.
    """

    def __init__(self, scale_factor, bias_shape):
        super(Model, self).__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        x = x * torch.sigmoid(x)
        x = x * self.scale_factor
        x = x + self.bias
        return x


batch_size = 128
dim = 32768
scale_factor = 2.0


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return [scale_factor, (dim,)]
