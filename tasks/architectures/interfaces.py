"""What each architecture interface promises, and the fixed model around a candidate.

``sequence_mixer``: the candidate is a causal token mixer ``ModelNew(d_model)`` whose
forward maps ``x: [B, T, D] -> [B, T, D]``. The backbone is fixed: token and learned
position embeddings, ``layers`` pre-norm residual blocks of (LayerNorm, mixer, LayerNorm,
MLP), a final LayerNorm and a linear head over the vocabulary. Only the mixer changes, so
results compare mixers and nothing else.

``classifier``: the candidate is the whole model ``ModelNew(num_classes)`` mapping images
``[B, C, H, W] -> [B, num_classes]`` logits.

Runs inside the sandbox child (trusted code; the candidate's class is passed in).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from daedalus.tasks.architectures.data import IGNORE, Dataset

Factory = Callable[[], nn.Module]


class _Block(nn.Module):
    def __init__(self, mixer: nn.Module, d_model: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.mixer(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class MixerModel(nn.Module):
    """The fixed token model around ``layers`` instances of the candidate mixer."""

    def __init__(self, make_mixer: Factory, *, vocab: int, d_model: int, layers: int,
                 mlp_ratio: int, max_len: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.blocks = nn.ModuleList(_Block(make_mixer(), d_model, mlp_ratio) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))

    def mixers(self) -> list[nn.Module]:
        return [block.mixer for block in self.blocks if isinstance(block, _Block)]


def init_kwargs(interface: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``ModelNew`` is built with."""
    model = settings["model"]
    if interface == "sequence_mixer":
        return {"d_model": model["d_model"]}
    return {"num_classes": model["num_classes"]}


def build(interface: str, make_candidate: Factory, settings: dict[str, Any],
          data: Dataset) -> nn.Module:
    """The trainable model: the backbone around the candidate, or the candidate itself."""
    if interface == "sequence_mixer":
        model = settings["model"]
        return MixerModel(make_candidate, vocab=data.vocab, d_model=model["d_model"],
                          layers=model["layers"], mlp_ratio=model["mlp_ratio"],
                          max_len=data.train_x.shape[1])  # fmt: skip
    return make_candidate()


def candidates_in(interface: str, model: nn.Module) -> list[nn.Module]:
    """The candidate instances inside a built model (the checks look at them)."""
    if isinstance(model, MixerModel):
        return model.mixers()
    return [model]


def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over labelled positions (token tasks) or samples (classifiers)."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1),
                           ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, split: str = "val",
             batch_size: int = 256) -> dict[str, float]:
    """Accuracy, mean loss (nats) and bits per labelled token on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    correct = total = 0
    nll = 0.0
    inputs, labels = (data.val_x, data.val_y) if split == "val" else (data.test_x, data.test_y)
    for start in range(0, len(inputs), batch_size):
        x = inputs[start : start + batch_size]
        y = labels[start : start + batch_size].reshape(-1)
        logits = model(x).reshape(y.shape[0], -1)
        mask = y != IGNORE
        nll += float(F.cross_entropy(logits[mask], y[mask], reduction="sum"))
        correct += int((logits[mask].argmax(dim=-1) == y[mask]).sum())
        total += int(mask.sum())
    model.train(was_training)
    mean = nll / max(total, 1)
    return {"accuracy": correct / max(total, 1), "loss": mean, "bpc": mean / math.log(2)}


def probe(interface: str, settings: dict[str, Any], data: Dataset, *, batch: int,
          length: int | None = None, seed: int = 0) -> torch.Tensor:
    """An input for the candidate alone: hidden states ``[B, T, D]`` for a mixer, else
    validation images."""
    g = torch.Generator().manual_seed(seed)
    if interface == "sequence_mixer":
        steps = length or data.train_x.shape[1]
        return torch.randn(batch, steps, settings["model"]["d_model"], generator=g)
    index = torch.randint(0, len(data.val_x), (batch,), generator=g)
    return data.val_x[index]
