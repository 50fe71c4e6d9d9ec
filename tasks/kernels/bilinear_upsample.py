import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    """
    Upsamples a feature map by an integer factor with bilinear interpolation.
    """

    def __init__(self, scale_factor: int):
        super(Model, self).__init__()
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)


batch_size = 8
channels = 16
height = 128
width = 128
scale_factor = 2


def get_inputs():
    x = torch.randn(batch_size, channels, height, width)
    return [x]


def get_init_inputs():
    return [scale_factor]
