import torch
import torch.nn as nn


class Model(nn.Module):
    """
    RMS normalization over the feature (channel) dimension of a 4D tensor.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super(Model, self).__init__()
        self.num_features = num_features
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + self.eps)
        return x / rms


batch_size = 16
features = 64
dim1 = 64
dim2 = 64


def get_inputs():
    x = torch.randn(batch_size, features, dim1, dim2) * 3.0 + 1.0
    return [x]


def get_init_inputs():
    return [features]
