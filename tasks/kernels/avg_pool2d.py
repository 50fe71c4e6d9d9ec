import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Simple model that performs 2D average pooling.
    """

    def __init__(self, kernel_size: int, stride: int):
        super(Model, self).__init__()
        self.avgpool = nn.AvgPool2d(kernel_size=kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(x)


batch_size = 16
channels = 32
height = 128
width = 128
kernel_size = 4
stride = 4


def get_inputs():
    x = torch.randn(batch_size, channels, height, width)
    return [x]


def get_init_inputs():
    return [kernel_size, stride]
