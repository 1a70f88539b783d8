"""LARS steps worked by hand (patchnb.optim.LARS) in its two forms:

* ``trust="decayed"`` (``optimizer: lars``): the decayed gradient g + wd w scaled by eta ||w|| / ||g + wd w||
  (SimCLR's TensorFlow LARS), plain momentum;
* ``trust="eq6"`` with clipping, 1-D exclusion and Nesterov momentum (``optimizer: lars_solo``): You, Gitman,
  Ginsburg 2017 eq. 6, lambda = eta ||w|| / (||g|| + wd ||w|| + eps), as solo-learn's LARSWrapper that
  EMP-SSL's main.py wraps around SGD(momentum 0.9, nesterov) with eta 0.005, clip, exclude_bias_n_norm.
  Besides the hand-worked steps, a few steps of a small network are compared with an independent
  re-statement of the wrapper's update (scale the gradient in place, then torch's own SGD)."""

import copy
import math

import pytest
import torch

from patchnb.optim import LARS_SOLO, make_optimizer
from patchnb.train import LARS, TrainConfig


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


def _solo(params, lr, **kw):
    return LARS(params, lr=lr, momentum=0.9, weight_decay=0.1, **{**LARS_SOLO, **kw})


def test_emp_ssl_lars_one_step_by_hand():
    # w = (3, 4), ||w|| = 5; grad g = (0.6, -0.8), ||g|| = 1; wd = 0.1, eta = 0.005, lr = 0.5.
    # eq. 6: lambda = 0.005 * 5 / (1 + 0.1 * 5) = 1/60; clipped factor min(lambda / lr, 1) = 1/30.
    # d = (g + wd w) / 30 = (0.9, -0.4) / 30 = (0.03, -0.013333); first step: buffer = d;
    # Nesterov: u = d + 0.9 buffer = 1.9 d = (0.057, -0.025333); w <- w - 0.5 u = (2.9715, 4.0126667).
    # (The "decayed" form would use eta ||w|| / ||(0.9, -0.4)|| = 0.02538 instead of 1/60 before clipping.)
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt = _solo([w], lr=0.5)
    w.grad = torch.tensor([[0.6, -0.8]])
    opt.step()
    assert w.detach()[0].tolist() == pytest.approx([2.9715, 4.0126667], abs=1e-6)
    assert opt.state[w]["momentum"][0].tolist() == pytest.approx([0.03, -0.0133333], abs=1e-7)


def test_emp_ssl_lars_clips_the_local_rate_at_the_global_one():
    # Same tensor with lr = 0.01 < lambda = 1/60: factor min(1.667, 1) = 1, so d = g + wd w = (0.9, -0.4),
    # u = 1.9 d, w <- w - 0.01 u = (3 - 0.0171, 4 + 0.0076).
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt = _solo([w], lr=0.01)
    w.grad = torch.tensor([[0.6, -0.8]])
    opt.step()
    assert w.detach()[0].tolist() == pytest.approx([2.9829, 4.0076], abs=1e-6)
    # without clipping the wrapper scales by lambda itself: d = (0.9, -0.4) / 60, w - 0.01 * 1.9 d
    w2 = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt2 = _solo([w2], lr=0.01, clip=False)
    w2.grad = torch.tensor([[0.6, -0.8]])
    opt2.step()
    assert w2.detach()[0].tolist() == pytest.approx([3 - 0.019 * 0.9 / 60, 4 + 0.019 * 0.4 / 60], abs=1e-6)


def test_emp_ssl_lars_excludes_1d_parameters_and_uses_nesterov():
    # A bias: neither adapted nor decayed (wd = 0.1 is not applied). Nesterov momentum, lr 0.5, g = 0.5:
    # step 1: buffer 0.5, u = 0.5 + 0.9 * 0.5 = 0.95, b = (1, 2) - 0.475 = (0.525, 1.525);
    # step 2: buffer 0.9 * 0.5 + 0.5 = 0.95, u = 0.5 + 0.9 * 0.95 = 1.355, b = (0.525, 1.525) - 0.6775.
    b = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = _solo([b], lr=0.5)
    for expected in ([0.525, 1.525], [-0.1525, 0.8475]):
        b.grad = torch.tensor([0.5, 0.5])
        opt.step()
        assert b.detach().tolist() == pytest.approx(expected, abs=1e-6)
    # with exclude_1d=False the bias is adapted like a matrix: ||b|| = sqrt(5), ||g|| = sqrt(0.5)
    b2 = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt2 = _solo([b2], lr=0.5, exclude_1d=False)
    b2.grad = torch.tensor([0.5, 0.5])
    opt2.step()
    lam = 0.005 * math.sqrt(5) / (math.sqrt(0.5) + 0.1 * math.sqrt(5) + 1e-8)
    d = [(0.5 + 0.1 * v) * min(lam / 0.5, 1) for v in (1.0, 2.0)]
    assert b2.detach().tolist() == pytest.approx([1 - 0.5 * 1.9 * d[0], 2 - 0.5 * 1.9 * d[1]], abs=1e-7)


def test_emp_ssl_lars_zero_gradient_takes_no_decay():
    # The wrapper scales (and decays) only when ||w|| > 0 and ||g|| > 0: a zero gradient leaves w as it is,
    # where the decayed form would still step along wd w.
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    opt = _solo([w], lr=0.5)
    w.grad = torch.zeros(1, 2)
    opt.step()
    assert w.detach()[0].tolist() == [3.0, 4.0]


def _wrapper_reference(model, lr, steps, inputs):
    """EMP-SSL's optimiser restated from its description: torch SGD(lr, momentum 0.9, wd 1e-4, nesterov); before
    each SGD step (with SGD's own decay switched off) every gradient of a tensor with more than one dimension and
    non-zero weight and gradient norms is replaced by (g + wd w) * min(eta ||w|| / (||g|| + wd ||w|| + eps) / lr, 1)
    with eta 0.005, eps 1e-8; 1-D tensors keep their raw gradient. A cosine schedule per step."""
    sgd = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for x in inputs:
        sgd.zero_grad()
        model(x).pow(2).mean().backward()
        cur = sgd.param_groups[0]["lr"]
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:
                    continue
                wn, gn = float(p.norm()), float(p.grad.norm())
                if wn > 0 and gn > 0:
                    lam = 0.005 * wn / (gn + 1e-4 * wn + 1e-8)
                    p.grad.add_(p, alpha=1e-4).mul_(min(lam / cur, 1.0))
        sgd.step()
        sched.step()


def test_lars_solo_matches_the_wrapper_over_several_steps():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    ref = copy.deepcopy(net)
    inputs = [torch.randn(16, 6) for _ in range(6)]
    _wrapper_reference(ref, 0.3, 6, inputs)
    cfg = TrainConfig(optimizer="lars_solo", lr=0.3, momentum=0.9, weight_decay=1e-4)
    opt = make_optimizer(net.parameters(), cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / 6)))
    for x in inputs:
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()
        sched.step()
    for a, b in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert LARS_SOLO == dict(eta=0.005, trust="eq6", clip=True, exclude_1d=True, nesterov=True, eps=1e-8)


def test_lars_rejects_bad_options():
    w = torch.nn.Parameter(torch.ones(2, 2))
    with pytest.raises(ValueError, match="trust"):
        LARS([w], lr=0.1, trust="you")
    with pytest.raises(ValueError, match="clip"):
        LARS([w], lr=0.1, clip=True)
    with pytest.raises(ValueError, match="nesterov"):
        LARS([w], lr=0.1, momentum=0.0, nesterov=True)
