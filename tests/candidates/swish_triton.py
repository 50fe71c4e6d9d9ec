# Swish-scale-bias as a Triton kernel. On the CPU backend it runs under TRITON_INTERPRET=1:
# correctness is checked, timing is not meaningful.
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def swish_kernel(x_ptr, bias_ptr, out_ptr, n, cols, scale, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    b = tl.load(bias_ptr + offs % cols, mask=mask)
    y = x * tl.sigmoid(x) * scale + b
    tl.store(out_ptr + offs, y, mask=mask)


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        x = x.contiguous()
        out = torch.empty_like(x)
        n = x.numel()
        BLOCK = 1024
        swish_kernel[(triton.cdiv(n, BLOCK),)](x, self.bias, out, n, x.shape[-1],
                                               self.scale_factor, BLOCK=BLOCK)
        return out
