import torch
import torch.nn as nn
import torch.nn.functional as F

# MultiKernelBench layout (reference/<category>/<op>.py): the folder names the category,
# and an input may be a plain Python value (here the target size).
class Model(nn.Module):
    def forward(self, x, size):
        return F.interpolate(x, size=size, mode="nearest")

def get_inputs():
    x = torch.rand(2, 8, 30, 40)
    size = (45, 60)
    return [x, size]

def get_init_inputs():
    return []
