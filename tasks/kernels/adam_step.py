import torch
import torch.nn as nn


class Model(nn.Module):
    """
    One Adam optimizer step: updates the moments and returns the new parameters (inputs are not modified).
    """

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=10):
        super(Model, self).__init__()
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.step = step

    def forward(self, param, grad, exp_avg, exp_avg_sq):
        exp_avg = self.beta1 * exp_avg + (1 - self.beta1) * grad
        exp_avg_sq = self.beta2 * exp_avg_sq + (1 - self.beta2) * grad * grad
        bias_correction1 = 1 - self.beta1 ** self.step
        bias_correction2 = 1 - self.beta2 ** self.step
        m_hat = exp_avg / bias_correction1
        v_hat = exp_avg_sq / bias_correction2
        return param - self.lr * m_hat / (v_hat.sqrt() + self.eps)


num_params = 2097152
lr = 1e-3
step = 10


def get_inputs():
    param = torch.randn(num_params)
    grad = torch.randn(num_params)
    exp_avg = torch.randn(num_params) * 0.1
    exp_avg_sq = torch.rand(num_params) * 0.01
    return [param, grad, exp_avg, exp_avg_sq]


def get_init_inputs():
    return [lr, 0.9, 0.999, 1e-8, step]
