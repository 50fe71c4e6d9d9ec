import torch
import torch.nn as nn


class Model(nn.Module):
    """A broken task: get_inputs raises."""

    def forward(self, x):
        return x


def get_inputs():
    raise ValueError("no data today")


def get_init_inputs():
    return []
