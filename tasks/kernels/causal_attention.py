import math

import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Causal self-attention with input and output projections (a GPT-style attention block).
    """

    def __init__(self, d_model: int, num_heads: int, max_seq_len: int):
        super(Model, self).__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        mask = torch.tril(torch.ones(max_seq_len, max_seq_len, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        head_dim = d_model // self.num_heads
        q, k, v = self.qkv(x).split(d_model, dim=2)
        q = q.view(batch, seq, self.num_heads, head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.num_heads, head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.num_heads, head_dim).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(head_dim))
        att = att.masked_fill(~self.mask[:seq, :seq], float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = att @ v
        y = y.transpose(1, 2).contiguous().view(batch, seq, d_model)
        return self.proj(y)


batch_size = 4
seq_len = 128
d_model = 256
num_heads = 4


def get_inputs():
    return [torch.randn(batch_size, seq_len, d_model)]


def get_init_inputs():
    return [d_model, num_heads, seq_len]
