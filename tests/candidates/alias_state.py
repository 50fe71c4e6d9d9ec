import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return x + 1, torch.ones(16), torch.arange(16.0)
