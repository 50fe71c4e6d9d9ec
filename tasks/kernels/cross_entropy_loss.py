import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    """
    Per-sample cross-entropy loss of class logits against integer targets (no batch mean).
    """

    def __init__(self):
        super(Model, self).__init__()

    def forward(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(predictions, targets, reduction="none")


batch_size = 4096
num_classes = 1000


def get_inputs():
    predictions = torch.randn(batch_size, num_classes) * 2.0
    targets = torch.randint(0, num_classes, (batch_size,))
    return [predictions, targets]


def get_init_inputs():
    return []
