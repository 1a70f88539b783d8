"""One LARS step worked by hand (patchnb.train.LARS; You, Gitman, Ginsburg 2017, "Large Batch Training of
Convolutional Networks", eq. 6 with momentum): for a weight matrix the step is the local learning rate
eta * ||w|| / ||grad + wd w|| times (grad + wd w); biases (1-D) take a plain momentum-SGD step."""

import pytest
import torch

from patchnb.train import LARS


def test_one_step_of_a_two_parameter_weight_by_hand():
    # w = (3, 4): ||w|| = 5. grad = (0.3, -1.2), wd = 0.1: g = grad + wd w = (0.6, -0.8), ||g|| = 1.
    # trust ratio = eta ||w|| / ||g|| = 0.02 * 5 / 1 = 0.1; first step: buffer = 0.1 g = (0.06, -0.08);
    # w <- w - lr * buffer = (3, 4) - 0.5 * (0.06, -0.08) = (2.97, 4.04).
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.02)
    w.grad = torch.tensor([[0.3, -1.2]])
    opt.step()
    assert w.detach()[0].tolist() == pytest.approx([2.97, 4.04], abs=1e-6)
    assert opt.state[w]["momentum"][0].tolist() == pytest.approx([0.06, -0.08], abs=1e-7)


def test_bias_is_not_adapted_and_momentum_accumulates():
    # 1-D: no trust ratio, no weight decay. Step 1: b - 0.5 * 0.5 = (0.75, 1.75); step 2 with the same
    # gradient: buffer = 0.9 * 0.5 + 0.5 = 0.95, b - 0.5 * 0.95 = (0.275, 1.275).
    b = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = LARS([b], lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.02)
    for expected in ([0.75, 1.75], [0.275, 1.275]):
        b.grad = torch.tensor([0.5, 0.5])
        opt.step()
        assert b.detach().tolist() == pytest.approx(expected, abs=1e-6)


def test_zero_weights_take_the_plain_gradient_step():
    # ||w|| = 0 makes the trust ratio undefined: LARS then uses 1 (w <- w - lr g).
    w = torch.nn.Parameter(torch.zeros(1, 2))
    opt = LARS([w], lr=0.5, momentum=0.9, weight_decay=0.0, eta=0.02)
    w.grad = torch.tensor([[1.0, -2.0]])
    opt.step()
    assert w.detach()[0].tolist() == pytest.approx([-0.5, 1.0], abs=1e-7)
