"""The one Gaussian blur (patchnb.filters): hand-worked kernels, per-image sigmas, padding, bad inputs."""

import math

import pytest
import torch

from patchnb.filters import gaussian_blur, gaussian_kernel1d


def test_kernel_is_a_normalised_gaussian():
    k = gaussian_kernel1d(torch.tensor([1.0]), 2)[0]
    w = torch.tensor([math.exp(-i * i / 2) for i in (-2, -1, 0, 1, 2)])
    assert torch.allclose(k, w / w.sum()) and k.sum().item() == pytest.approx(1.0)


def test_blur_of_an_impulse_is_the_outer_product_of_the_kernel():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    y = gaussian_blur(x, 1.5, 3, "constant")
    k = gaussian_kernel1d(torch.tensor([1.5]), 3)[0]
    assert torch.allclose(y[0, 0, 1:8, 1:8], torch.outer(k, k), atol=1e-7)
    assert y.sum().item() == pytest.approx(1.0, abs=1e-6)  # nothing reaches the border: mass is kept


def test_per_image_sigma_equals_one_sigma_per_call():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 12, 12, generator=g)
    sigmas = torch.tensor([0.5, 1.0, 2.0])
    both = gaussian_blur(x, sigmas, 2, "reflect")
    for i, s in enumerate(sigmas.tolist()):
        assert torch.allclose(both[i:i + 1], gaussian_blur(x[i:i + 1], s, 2, "reflect"), atol=1e-6)


def test_circular_padding_wraps_around():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 0, 0] = 1.0
    y = gaussian_blur(x, 1.0, 2, "circular")
    assert y[0, 0, 7, 7] > 0 and y.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(y[0, 0, 7, 7], y[0, 0, 1, 1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigma=0.0, radius=1), "sigma"),
    (dict(sigma=1.0, radius=0), "radius"),
    (dict(sigma=1.0, radius=1, padding="mirror"), "padding"),
    (dict(sigma=torch.ones(5), radius=1), "sigma"),
])
def test_bad_inputs_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gaussian_blur(torch.rand(2, 1, 8, 8), **kwargs)
