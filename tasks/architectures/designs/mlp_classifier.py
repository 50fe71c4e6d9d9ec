"""A two-layer perceptron on the flattened 8x8 image: the simplest reference classifier."""

import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
