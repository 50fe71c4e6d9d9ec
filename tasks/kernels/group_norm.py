import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Group normalization of a feature map, with learned affine parameters.
    """

    def __init__(self, num_features: int, num_groups: int):
        super(Model, self).__init__()
        self.gn = nn.GroupNorm(num_groups=num_groups, num_channels=num_features)
        with torch.no_grad():
            self.gn.weight.normal_(1.0, 0.1)
            self.gn.bias.normal_(0.0, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gn(x)


batch_size = 16
features = 64
num_groups = 8
dim1 = 64
dim2 = 64


def get_inputs():
    x = torch.randn(batch_size, features, dim1, dim2) * 2.0 + 0.5
    return [x]


def get_init_inputs():
    return [features, num_groups]
