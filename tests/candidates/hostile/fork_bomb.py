# Hostile: forks without end. Rejected by the policy (os); without the policy RLIMIT_NPROC
# and the PID namespace contain it and the evaluator survives.
import os

import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, scale_factor, bias_shape):
        super().__init__()

    def forward(self, x):
        while True:
            os.fork()
