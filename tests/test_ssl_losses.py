"""SSL losses against independent numpy computations / hand-worked cases, trainability, bad inputs."""

import math

import numpy as np
import pytest
import torch

from patchnb.ssl import (
    alignment,
    emp_ssl_loss,
    eqco_margin,
    hcl,
    mochi_negatives,
    moco_infonce,
    nt_xent,
    supcon,
    total_coding_rate,
    uniformity,
)


def rnd(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- numpy references


def np_nt_xent(z1, z2, t):
    z = unit(np.concatenate([z1, z2]))
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        den = sum(math.exp(z[i] @ z[k] / t) for k in range(n) if k != i)
        total += -math.log(math.exp(z[i] @ z[j] / t) / den)
    return total / n


def np_moco(q, k, queue, t, m, alpha_over_k=1.0):
    q, k, queue = unit(q), unit(k), unit(queue)
    out = []
    for i in range(len(q)):
        pos = math.exp((q[i] @ k[i] - m) / t)
        neg = alpha_over_k * sum(math.exp(q[i] @ n / t) for n in queue)
        out.append(-math.log(pos / (pos + neg)))
    return float(np.mean(out))


def np_hcl(z1, z2, t, beta, tau_plus):
    """A direct port of the reference code's formula (joshr17/HCL, estimator='hard'), float64."""
    b = len(z1)
    out1, out2 = unit(z1), unit(z2)
    out = np.concatenate([out1, out2])
    neg = np.exp(out @ out.T / t)
    mask = np.ones((2 * b, 2 * b), bool)
    for i in range(b):
        mask[i, i] = mask[i + b, i + b] = mask[i, i + b] = mask[i + b, i] = False
    neg = neg[mask].reshape(2 * b, -1)
    pos = np.exp((out1 * out2).sum(-1) / t)
    pos = np.concatenate([pos, pos])
    n = 2 * b - 2
    imp = np.exp(beta * np.log(neg))
    reweight = (imp * neg).sum(-1) / imp.mean(-1)
    ng = (-tau_plus * n * pos + reweight) / (1 - tau_plus)
    ng = np.maximum(ng, n * np.e ** (-1 / t))
    return float((-np.log(pos / (pos + ng))).mean())


def np_supcon(features, labels, t):
    b, v, _ = features.shape
    z = unit(features).transpose(1, 0, 2).reshape(b * v, -1)
    lab = np.tile(labels, v)
    losses = []
    for i in range(b * v):
        pos = [p for p in range(b * v) if p != i and lab[p] == lab[i]]
        if not pos:
            continue
        den = sum(math.exp(z[i] @ z[a] / t) for a in range(b * v) if a != i)
        losses.append(-np.mean([math.log(math.exp(z[i] @ z[p] / t) / den) for p in pos]))
    return float(np.mean(losses))


def np_tcr(z, eps):
    b, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (b * eps) * z.T @ z)[1]


# ----------------------------------------------------------------------------- values


def test_nt_xent_matches_numpy():
    z1, z2 = rnd(6, 5, seed=1), rnd(6, 5, seed=2)
    for t in (0.1, 0.5):
        assert nt_xent(z1, z2, t).item() == pytest.approx(np_nt_xent(z1.numpy(), z2.numpy(), t), rel=1e-9)


def test_nt_xent_hand_worked():
    # B = 2, orthogonal unit vectors, identical views: s(pos) = 1, s(other) = 0 for all three others but one
    z = torch.eye(2, dtype=torch.float64)
    t = 1.0
    # anchor 0: positive (view 2 of image 0) sim 1, negatives: image 1 views 1 and 2, sim 0 -> den = e + 2
    expected = -math.log(math.e / (math.e + 2))
    assert nt_xent(z, z, t).item() == pytest.approx(expected)


def test_moco_matches_numpy_and_margin_is_applied():
    q, k, queue = rnd(4, 8, seed=3), rnd(4, 8, seed=4), rnd(10, 8, seed=5)
    for m in (0.0, 0.3, -0.5):
        ref = np_moco(q.numpy(), k.numpy(), queue.numpy(), 0.2, m)
        assert moco_infonce(q, k, queue, 0.2, margin=m).item() == pytest.approx(ref, rel=1e-9)
    assert moco_infonce(q, k, queue, 0.2, margin=0.3) > moco_infonce(q, k, queue, 0.2, margin=0.0)


def test_eqco_margin_equals_rescaled_negatives():
    q, k, queue = rnd(4, 8, seed=6), rnd(4, 8, seed=7), rnd(32, 8, seed=8)
    t, alpha = 0.1, 4.0
    m = eqco_margin(t, len(queue), alpha)
    assert m == pytest.approx(t * math.log(alpha / 32))
    ref = np_moco(q.numpy(), k.numpy(), queue.numpy(), t, 0.0, alpha_over_k=alpha / 32)
    assert moco_infonce(q, k, queue, t, margin=m).item() == pytest.approx(ref, rel=1e-9)


def test_mochi_negatives_mix_with_random_coefficients():
    q, queue = rnd(3, 6, seed=9).float(), rnd(50, 6, seed=10).float()
    g = torch.Generator().manual_seed(0)
    h = mochi_negatives(q, queue, n_hard=8, s=5, s_prime=2, generator=g)
    assert h.shape == (3, 7, 6)
    assert torch.allclose(h.norm(dim=2), torch.ones(3, 7), atol=1e-5)
    extra = moco_infonce(q, q, queue, 0.2, extra_negatives=h)
    assert extra > moco_infonce(q, q, queue, 0.2)
    # two orthogonal negatives e1, e2: a mixture is normalize(a e1 + (1 - a) e2); recover a
    e = torch.eye(4)[:2]
    h = mochi_negatives(torch.tensor([[1.0, 1.0, 0.0, 0.0]]), e, n_hard=2, s=400, s_prime=0, generator=g)[0]
    a = h[:, 0] / (h[:, 0] + h[:, 1])
    mixed = a[(a > 1e-6) & (a < 1 - 1e-6)]  # pairs with i != j
    assert len(mixed) > 100
    assert 0.2 < mixed.std() and 0.35 < mixed.mean() < 0.65  # U(0, 1), not a constant coefficient of 1
    # query mixtures: normalize(b q + (1 - b) n) with b in (0, 0.5)
    hq = mochi_negatives(torch.tensor([[0.0, 0.0, 1.0, 0.0]]), e, n_hard=2, s=0, s_prime=300, generator=g)[0]
    b = hq[:, 2] / (hq[:, 2] + hq[:, :2].sum(1))
    assert b.min() >= 0 and b.max() <= 0.5 and b.std() > 0.08


def test_hcl_matches_reference_formula_and_reduces_to_nt_xent():
    z1, z2 = rnd(5, 4, seed=11), rnd(5, 4, seed=12)
    for t, beta, tp in ((0.5, 0.5, 0.1), (0.2, 1.0, 0.05), (0.07, 0.5, 0.1)):
        assert hcl(z1, z2, t, beta, tp).item() == pytest.approx(np_hcl(z1.numpy(), z2.numpy(), t, beta, tp), rel=1e-7)
    assert hcl(z1, z2, 0.3, 0.0, 0.0).item() == pytest.approx(nt_xent(z1, z2, 0.3).item(), rel=1e-9)


def test_hcl_clamp_is_active_when_debiasing_removes_everything():
    z = rnd(4, 3, seed=13)
    # huge tau_plus drives the estimate negative: it must clamp at N e^{-1/t}, not give NaN
    v = hcl(z, z, 0.5, 0.5, 0.99)
    assert torch.isfinite(v)
    assert v.item() == pytest.approx(np_hcl(z.numpy(), z.numpy(), 0.5, 0.5, 0.99), rel=1e-7)


def test_supcon_matches_numpy():
    f = rnd(6, 2, 5, seed=14)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    assert supcon(f, labels, 0.1).item() == pytest.approx(np_supcon(f.numpy(), labels.numpy(), 0.1), rel=1e-9)
    f3 = rnd(4, 3, 5, seed=15)
    lab3 = torch.tensor([1, 1, 0, 2])
    assert supcon(f3, lab3, 0.5).item() == pytest.approx(np_supcon(f3.numpy(), lab3.numpy(), 0.5), rel=1e-9)


def test_supcon_without_labels_is_nt_xent():
    z1, z2 = rnd(5, 4, seed=16), rnd(5, 4, seed=17)
    assert supcon(torch.stack([z1, z2], 1), None, 0.2).item() == pytest.approx(nt_xent(z1, z2, 0.2).item())


def test_supcon_anchor_without_positive_is_excluded_not_nan():
    f = rnd(4, 1, 3, seed=18).requires_grad_()
    labels = torch.tensor([0, 0, 1, 2])  # anchors 2 and 3 have no positive with one view
    v = supcon(f, labels, 0.1)
    assert torch.isfinite(v)
    assert v.item() == pytest.approx(np_supcon(f.detach().numpy(), labels.numpy(), 0.1), rel=1e-9)
    v.backward()
    assert torch.isfinite(f.grad).all()
    none = supcon(rnd(3, 1, 3, seed=19), torch.tensor([0, 1, 2]), 0.1)  # no anchor has a positive
    assert none.item() == 0.0


def test_alignment_uniformity_numpy_and_hand_worked():
    z1, z2 = unit(rnd(7, 3, seed=20).numpy()), unit(rnd(7, 3, seed=21).numpy())
    ref_align = np.mean([np.sum((a - b) ** 2) for a, b in zip(z1, z2)])
    assert alignment(torch.tensor(z1), torch.tensor(z2)).item() == pytest.approx(ref_align)
    ref_a1 = np.mean([np.linalg.norm(a - b) for a, b in zip(z1, z2)])
    assert alignment(torch.tensor(z1), torch.tensor(z2), alpha=1).item() == pytest.approx(ref_a1)
    pairs = [np.exp(-2 * np.sum((z1[i] - z1[j]) ** 2)) for i in range(7) for j in range(i + 1, 7)]
    assert uniformity(torch.tensor(z1)).item() == pytest.approx(np.log(np.mean(pairs)))
    # two orthogonal unit vectors: ||d||^2 = 2, one pair -> log e^{-2 * 2} = -4 (no self-pairs)
    assert uniformity(torch.eye(2)).item() == pytest.approx(-4.0)
    assert uniformity(torch.eye(2), t=1).item() == pytest.approx(-2.0)


def test_total_coding_rate_numpy_both_forms():
    for b, d in ((10, 4), (4, 10)):
        z = rnd(b, d, seed=22)
        assert total_coding_rate(z, 0.2).item() == pytest.approx(np_tcr(z.numpy(), 0.2), rel=1e-9)
    assert total_coding_rate(torch.zeros(5, 3)).item() == pytest.approx(0.0)
    # hand-worked: Z = [[1, 0], [0, 1]] (B = d = 2), c = 2/(2*0.5) = 2 -> 1/2 log det(3 I) = log 3
    assert total_coding_rate(torch.eye(2), eps=0.5).item() == pytest.approx(math.log(3))


def test_emp_ssl_loss_numpy_and_signs():
    v = unit(rnd(3, 6, 4, seed=23).numpy())
    mean = v.mean(0)
    cos = [np.sum(v[i] * mean, 1) / (np.linalg.norm(v[i], axis=1) * np.linalg.norm(mean, axis=1)) for i in range(3)]
    inv = np.mean(cos)
    tcr = np.mean([np_tcr(v[i], 0.2) for i in range(3)])
    assert emp_ssl_loss(torch.tensor(v), 0.2, 200.0).item() == pytest.approx(-200 * inv - tcr, rel=1e-9)
    assert emp_ssl_loss(list(torch.tensor(v)), 0.2, 200.0).item() == pytest.approx(-200 * inv - tcr, rel=1e-9)
    # identical views: invariance 1, so the loss is -weight - R
    same = torch.tensor(np.stack([v[0]] * 3))
    assert emp_ssl_loss(same, 0.2, 10.0).item() == pytest.approx(-10 - np_tcr(v[0], 0.2), rel=1e-9)


# ----------------------------------------------------------------------------- training lowers them


def _optimise(loss_fn, *shapes, steps=30, lr=0.05):
    torch.manual_seed(0)
    params = [torch.randn(*s, requires_grad=True) for s in shapes]
    opt = torch.optim.Adam(params, lr=lr)
    first = loss_fn(*params).item()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(*params)
        loss.backward()
        opt.step()
    return first, loss_fn(*params).item()


@pytest.mark.parametrize("name,fn,shapes", [
    ("nt_xent", lambda a, b: nt_xent(a, b, 0.1), [(16, 8), (16, 8)]),
    ("moco", lambda a, b, c: moco_infonce(a, b, c, 0.2, margin=0.1), [(16, 8), (16, 8), (64, 8)]),
    ("hcl", lambda a, b: hcl(a, b), [(16, 8), (16, 8)]),
    ("supcon", lambda f: supcon(f, torch.arange(16) % 4, 0.1), [(16, 2, 8)]),
    ("alignment", lambda a, b: alignment(a, b), [(16, 8), (16, 8)]),
    ("uniformity", lambda z: uniformity(torch.nn.functional.normalize(z, dim=1)), [(16, 8)]),
    ("tcr", lambda z: -total_coding_rate(z), [(16, 8)]),
    ("emp_ssl", lambda v: emp_ssl_loss(torch.nn.functional.normalize(v, dim=2)), [(4, 16, 8)]),
])
def test_adam_lowers_loss(name, fn, shapes):
    first, last = _optimise(fn, *shapes)
    assert last < first - 1e-3, name


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_clear_errors():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z, torch.randn(4, 5))
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, temperature=0)
    with pytest.raises(ValueError, match="batch of 1"):
        nt_xent(z[:1], z[:1])
    with pytest.raises(ValueError, match="queue"):
        moco_infonce(z, z, torch.randn(10, 5))
    with pytest.raises(ValueError, match="temperature"):
        moco_infonce(z, z, torch.randn(10, 3), temperature=-1)
    with pytest.raises(ValueError, match="batch of 1"):
        moco_infonce(z[:1], z[:1], torch.randn(10, 3))
    with pytest.raises(ValueError, match="temperature"):
        hcl(z, z, temperature=0)
    with pytest.raises(ValueError, match="tau_plus"):
        hcl(z, z, tau_plus=1.0)
    with pytest.raises(ValueError, match="same shape"):
        hcl(z, z[:3])
    with pytest.raises(ValueError, match="labels"):
        supcon(torch.randn(4, 2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="features"):
        supcon(torch.randn(4, 3), torch.arange(4))
    with pytest.raises(ValueError, match="temperature"):
        supcon(torch.randn(4, 2, 3), torch.arange(4), temperature=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        supcon(torch.randn(1, 1, 3), torch.arange(1))
    with pytest.raises(ValueError, match="same shape"):
        alignment(z, torch.randn(5, 3))
    with pytest.raises(ValueError, match="batch of 1"):
        uniformity(z[:1])
    with pytest.raises(ValueError, match="eps"):
        total_coding_rate(z, eps=0)
    with pytest.raises(ValueError, match="batch of 1"):
        total_coding_rate(z[:1])
    with pytest.raises(ValueError, match="n_patches"):
        emp_ssl_loss(torch.randn(1, 4, 3))
    with pytest.raises(ValueError, match="eps"):
        emp_ssl_loss(torch.randn(3, 4, 3), eps=-0.1)
    with pytest.raises(ValueError, match="same"):
        emp_ssl_loss([torch.randn(4, 3), torch.randn(5, 3)])
    with pytest.raises(ValueError, match="n_patches, batch, dim"):
        emp_ssl_loss(torch.randn(4, 3))


# ----------------------------------------------------------------------------- DetCon


def np_detcon_official(p1, p2, ind1, ind2, t):
    """DetCon's loss in the official code's layout (deepmind/detcon ``byol_nce_detcon``, one replica,
    local negatives, the predictions and targets being the same vectors): (B, R, D) vectors, (B, R) mask
    ids per image; ``-1e9`` on same-view same-object logits, soft labels over the other view's copies,
    weight 1 / (copies in the own view); the mean of ``loss_a + loss_b`` over the B x R rows, halved
    (patchnb's normalisation, see ``detcon_loss``)."""
    b, r, _ = p1.shape
    p1, p2 = unit(p1), unit(p2)
    total = 0.0
    for pa, pb, ia, ib in ((p1, p2, ind1, ind2), (p2, p1, ind2, ind1)):
        for n in range(b):
            for i in range(r):
                logits, labels = [], []
                for m in range(b):  # the other view's targets, then the own view's
                    for j in range(r):
                        logits.append(pa[n, i] @ pb[m, j] / t)
                        labels.append(float(m == n and ib[m, j] == ia[n, i]))
                for m in range(b):
                    for j in range(r):
                        same = m == n and ia[m, j] == ia[n, i]
                        logits.append(pa[n, i] @ pa[m, j] / t - 1e9 * same)
                        labels.append(0.0)
                logits, labels = np.array(logits), np.array(labels)
                npos = labels.sum()
                labels = labels / max(npos, 1.0)
                logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
                weight = float(npos > 1e-3) / (ia[n] == ia[n, i]).sum()
                total += -weight * (labels * logp).sum()
    return total / (b * r) / 2


def _flat_ids(ind):
    ind = np.asarray(ind)
    return torch.as_tensor((np.arange(len(ind))[:, None] * 1000 + ind).reshape(-1))


def test_detcon_loss_matches_the_official_layout_with_repeated_ids():
    from patchnb.ssl import detcon_loss

    b, r, d = 3, 4, 5
    z1, z2 = rnd(b * r, d, seed=11), rnd(b * r, d, seed=12)
    ind1 = np.array([[0, 0, 2, 3], [1, 1, 1, 4], [7, 8, 9, 7]])  # ids drawn with replacement
    ind2 = np.array([[0, 2, 2, 5], [1, 4, 4, 4], [7, 8, 9, 7]])  # view 2 lacks id 3 (image 0): no positive
    for t in (0.1, 0.5):
        expected = np_detcon_official(z1.numpy().reshape(b, r, d), z2.numpy().reshape(b, r, d), ind1, ind2, t)
        got = detcon_loss(z1, z2, _flat_ids(ind1), _flat_ids(ind2), temperature=t).item()
        assert got == pytest.approx(expected, rel=1e-9)


def test_detcon_loss_hand_worked_repeated_mask():
    """One image, 3 sampled masks, the first drawn twice (ids 5, 5, 7), t = 1. View 1: (e1, e1, e2),
    view 2: (e1, e1, e3). Anchor 0 (id 5): positives the two id-5 rows of view 2 (logit 1 each), left out
    its own and its copy's view-1 rows; denominator e + e + 1 (view 2) + 1 (view 1, id 7) = 2e + 2, so
    l_0 = log(2e + 2) - 1 with weight 1/2 (two copies); anchor 2 (id 7): positive logit 0, denominator
    3 (view 2) + 2 (view 1, ids 5) = 5, l_2 = log 5, weight 1. Each view: (l_0 / 2 + l_1 / 2 + l_2) / 3,
    the same for view 2 by symmetry of the logits."""
    from patchnb.ssl import detcon_loss

    e1, e2, e3 = torch.eye(3, dtype=torch.float64)
    z1, z2 = torch.stack([e1, e1, e2]), torch.stack([e1, e1, e3])
    ids = torch.tensor([5, 5, 7])
    expected = (math.log(2 * math.e + 2) - 1 + math.log(5)) / 3
    assert detcon_loss(z1, z2, ids, temperature=1.0).item() == pytest.approx(expected, rel=1e-12)
    # the copy as a negative (NT-Xent over the three rows) is a different loss
    assert nt_xent(z1, z2, 1.0).item() != pytest.approx(expected, rel=1e-3)


def test_detcon_loss_with_distinct_ids_is_nt_xent_and_trains():
    from patchnb.ssl import detcon_loss

    z1, z2 = rnd(8, 5, seed=13), rnd(8, 5, seed=14)
    for t in (0.1, 0.7):
        assert detcon_loss(z1, z2, torch.arange(8), temperature=t).item() == pytest.approx(
            nt_xent(z1, z2, t).item(), rel=1e-9)
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])
    first, last = _optimise(lambda a, b: detcon_loss(a, b, ids, temperature=0.1), (8, 8), (8, 8))
    assert last < first - 1e-3


def test_detcon_loss_bad_inputs():
    from patchnb.ssl import detcon_loss

    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="ids1 must be a 1-D integer tensor of 4"):
        detcon_loss(z, z, torch.arange(3))
    with pytest.raises(ValueError, match="ids1"):
        detcon_loss(z, z, torch.zeros(4))
    with pytest.raises(ValueError, match="ids2"):
        detcon_loss(z, z, torch.arange(4), torch.arange(5))
    with pytest.raises(ValueError, match="temperature"):
        detcon_loss(z, z, torch.arange(4), temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        detcon_loss(z, z[:3], torch.arange(4))
