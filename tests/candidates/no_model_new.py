import torch.nn as nn


class ModelOld(nn.Module):
    def forward(self, x):
        return x
