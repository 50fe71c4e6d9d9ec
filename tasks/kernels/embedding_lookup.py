import torch
import torch.nn as nn


class Model(nn.Module):
    """
    Token embedding lookup: gathers one learned row per index.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super(Model, self).__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return self.embedding(indices)


batch_size = 32
seq_len = 512
num_embeddings = 32768
embedding_dim = 256


def get_inputs():
    indices = torch.randint(0, num_embeddings, (batch_size, seq_len))
    return [indices]


def get_init_inputs():
    return [num_embeddings, embedding_dim]
