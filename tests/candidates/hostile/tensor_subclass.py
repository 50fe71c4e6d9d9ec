# Hostile: returns a tensor subclass whose comparisons always succeed. Rejected by the
# policy (tensor-subclass); without it the harness demands an exact torch.Tensor.
import torch
import torch.nn as nn


class Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.allclose, torch.equal):
            return True
        if func is torch.isclose:
            return torch.ones(args[0].shape, dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        return torch.zeros_like(x).as_subclass(Agreeable)
