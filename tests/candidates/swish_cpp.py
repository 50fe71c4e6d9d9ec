# Swish-scale-bias as a C++ extension built with load_inline (cached by source hash).
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CPP = r"""
#include <torch/extension.h>
#include <cmath>

torch::Tensor swish_scale_bias(torch::Tensor x, torch::Tensor bias, double scale) {
    auto xc = x.contiguous();
    auto out = torch::empty_like(xc);
    const float* xp = xc.data_ptr<float>();
    const float* bp = bias.data_ptr<float>();
    float* op = out.data_ptr<float>();
    const int64_t cols = bias.numel();
    const int64_t n = xc.numel();
    const float s = static_cast<float>(scale);
    for (int64_t i = 0; i < n; ++i) {
        const float v = xp[i];
        op[i] = v / (1.0f + std::exp(-v)) * s + bp[i % cols];
    }
    return out;
}
"""

_ext = load_inline(
    name="daedalus_swish_scale_bias",
    cpp_sources=CPP,
    functions=["swish_scale_bias"],
    extra_cflags=["-O3"],
)


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()
        self.scale_factor = scale_factor
        self.bias = nn.Parameter(torch.randn(bias_shape))

    def forward(self, x):
        return _ext.swish_scale_bias(x, self.bias, self.scale_factor)
