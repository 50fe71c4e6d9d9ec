import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    """
    Simple model that performs a Softplus activation, log(1 + exp(beta * x)) / beta.
    """

    def __init__(self, beta):
        super(Model, self).__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x, beta=self.beta)


batch_size = 64
dim = 32768
beta = 1.0


def get_inputs():
    x = torch.randn(batch_size, dim) * 3.0
    return [x]


def get_init_inputs():
    return [beta]
