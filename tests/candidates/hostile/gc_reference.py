# Hostile: digs the reference output out of the garbage collector instead of computing it.
# Rejected by the policy (gc); without it the live reference outputs it can find hold
# garbage (the expected values are kept as bytes, not tensors), so it is incorrect.
import gc

import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        for obj in gc.get_objects():
            if (
                type(obj) is torch.Tensor
                and obj.shape == x.shape
                and obj.dtype == x.dtype
                and obj.data_ptr() != x.data_ptr()
                and bool(torch.isfinite(obj).all())
                and not torch.equal(obj, x)
            ):
                return obj.clone()
        return x.clone()
