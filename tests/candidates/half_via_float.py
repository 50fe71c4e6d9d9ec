# GELU computed in float32 with the tanh approximation and rounded to bfloat16: not
# bit-identical, but within bfloat16's tolerance.
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    def forward(self, x):
        return F.gelu(x.float(), approximate="tanh").to(torch.bfloat16)
