import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Performs a depthwise 2D convolution: one square kernel per channel (groups = channels).
    """

    def __init__(self, channels: int, kernel_size: int, padding: int = 0):
        super(Model, self).__init__()
        self.conv2d = nn.Conv2d(channels, channels, kernel_size, padding=padding, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)


batch_size = 8
channels = 64
kernel_size = 5
padding = 2
height = 64
width = 64


def get_inputs():
    x = torch.randn(batch_size, channels, height, width)
    return [x]


def get_init_inputs():
    return [channels, kernel_size, padding]
