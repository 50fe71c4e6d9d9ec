import torch
import torch.nn as nn


class Model(nn.Module):
    """
    One SGD step with momentum, Nesterov correction and weight decay; returns the new parameters.
    """

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=1e-4):
        super(Model, self).__init__()
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay

    def forward(self, param, grad, momentum_buffer):
        grad = grad + self.weight_decay * param
        buf = self.momentum * momentum_buffer + grad
        update = grad + self.momentum * buf
        return param - self.lr * update


num_params = 4194304
lr = 0.01


def get_inputs():
    param = torch.randn(num_params)
    grad = torch.randn(num_params)
    momentum_buffer = torch.randn(num_params) * 0.5
    return [param, grad, momentum_buffer]


def get_init_inputs():
    return [lr, 0.9, 1e-4]
