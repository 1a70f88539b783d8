"""Augmentation, backbone, kNN scorer and the SSL methods trained through patchnb.train.fit."""

import copy

import pytest
import torch

from patchnb import data, train
from patchnb.ssl import (
    EMPSSL,
    HCL,
    Augment,
    ContextEncoder,
    DeepCluster,
    DetCon,
    MoCoV2,
    ResNet18,
    SimCLR,
    SupCon,
    knn_accuracy,
    make_ssl_model,
)


@pytest.fixture(scope="module")
def splits():
    return data.load_splits("synthetic", train_size=128, val_size=32, test_size=32)


# ----------------------------------------------------------------------------- augmentation


def test_augment_shapes_ranges_and_seeding():
    x1 = torch.rand(8, 1, 16, 16)
    x3 = torch.rand(8, 3, 16, 16)
    aug = Augment(solarize_prob=0.3)
    for x in (x1, x3):
        a = aug(x, torch.Generator().manual_seed(1))
        b = aug(x, torch.Generator().manual_seed(1))
        c = aug(x, torch.Generator().manual_seed(2))
        assert a.shape == x.shape and a.dtype == x.dtype
        assert a.min() >= 0 and a.max() <= 1
        assert torch.equal(a, b) and not torch.equal(a, c)
    p = Augment.emp_ssl().patches(x3, 5, torch.Generator().manual_seed(0))
    assert p.shape == (5, 8, 3, 16, 16) and p.min() >= 0 and p.max() <= 1
    assert not torch.equal(p[0], p[1])


def test_augment_identity_and_flip_exact():
    x = torch.rand(4, 3, 12, 12)
    off = dict(crop_prob=0.0, flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
    assert torch.allclose(Augment(**off)(x), x, atol=1e-6)
    flip = Augment(**{**off, "flip_prob": 1.0})(x)
    assert torch.allclose(flip, x.flip(3), atol=1e-6)
    gray = Augment(**{**off, "grayscale_prob": 1.0})(x)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 0], gray[:, 2])
    sol = Augment(**{**off, "solarize_prob": 1.0})(x)
    assert torch.allclose(sol, torch.where(x >= 0.5, 1 - x, x))
    # 1 channel: jitter is brightness + contrast only, always within [0, 1]
    y = Augment(**{**off, "jitter_prob": 1.0})(torch.rand(4, 1, 12, 12))
    assert y.min() >= 0 and y.max() <= 1


def test_augment_crop_zooms_in():
    # a crop of area fraction s of a horizontal ramp spans a narrower range of values than the ramp
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(16, 1, 32, 32).contiguous()
    out = Augment(crop_scale=(0.25, 0.25), crop_ratio=(1, 1), flip_prob=0, jitter_prob=0, blur_prob=0,
                  grayscale_prob=0)(ramp, torch.Generator().manual_seed(0))
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]
    assert torch.allclose(span, torch.full_like(span, 0.5), atol=0.05)  # side = sqrt(0.25) of the image


def test_augment_bad_parameters():
    with pytest.raises(ValueError, match="blur_prob"):
        Augment(blur_prob=1.5)
    with pytest.raises(ValueError, match="crop_scale"):
        Augment(crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="n_patches"):
        Augment().patches(torch.rand(2, 1, 8, 8), 0)


# ----------------------------------------------------------------------------- backbone and kNN


def test_backbone_width_and_head():
    net = ResNet18(in_channels=1, width=4)
    assert net.out_dim == 32
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 32)
    m = make_ssl_model(3, width=4, hidden_dim=16, out_dim=8, batchnorm=False)
    x = torch.rand(2, 3, 16, 16)
    assert m(x).shape == (2, 32) and m(x, project=True).shape == (2, 8)


def test_knn_accuracy_hand_worked():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    bank_labels = torch.tensor([0, 0, 1, 1])
    q = torch.tensor([[1.0, 0.05], [0.05, 1.0], [1.0, 0.0]])
    assert knn_accuracy(bank, bank_labels, q, torch.tensor([0, 1, 1]), k=2) == pytest.approx(2 / 3)
    assert knn_accuracy(bank, bank_labels, q, torch.tensor([0, 1, 0]), k=20) == 1.0  # k capped at the bank size


# ----------------------------------------------------------------------------- methods through fit

SMALL = dict(width=4, hidden_dim=32, out_dim=16)
CFG = dict(epochs=3, batch_size=32, optimizer="adam", lr=3e-3, schedule="constant", seed=0, max_steps_per_epoch=4)


def fixed_loss(method, model, batch, splits, queue=None):
    """The loss of one fixed batch with fixed augmentation randomness, on a copy of the model."""
    m, method = copy.deepcopy(model), copy.deepcopy(method)
    if queue is not None:
        m.queue.copy_(queue)
    m.train()
    with torch.no_grad():
        loss, _ = method.step(m, batch[0], batch[1], splits, torch.Generator().manual_seed(123))
    return loss.item()


METHOD_CASES = [
    SimCLR(),
    HCL(),
    SupCon(),
    MoCoV2(queue_size=64, momentum=0.9),
    MoCoV2(queue_size=64, momentum=0.9, eqco_alpha=16, mochi=True, mochi_n_hard=16, mochi_s=16, mochi_s_prime=4,
           name="mocov2_eqco_mochi"),
    EMPSSL(n_patches=4, invariance_weight=20.0),
    ContextEncoder(),
    DetCon(mean_scale=20.0, num_samples=3),
    DetCon(mean_scale=0.0, num_samples=4, name="detcon_grid"),
]


@pytest.mark.parametrize("method", METHOD_CASES, ids=lambda m: m.name)
def test_method_trains_through_fit_and_lowers_its_loss(method, splits, tmp_path):
    torch.manual_seed(0)
    model = (method.make_model(1, width=4, hidden_dim=16, image_size=(16, 16)) if method.name == "context_encoder"
             else method.make_model(1, **SMALL))
    batch = (splits.train.images[:32], splits.train.labels[:32])
    queue = model.queue.clone() if hasattr(model, "queue") else None
    before = fixed_loss(method, model, batch, splits, queue)
    result = train.fit(model, splits, train.TrainConfig(**CFG), method=method, run_dir=tmp_path / "run",
                       name=method.name, progress=False)
    after = fixed_loss(method, model, batch, splits, queue)
    assert after < before, (method.name, before, after)
    assert 0.0 <= result.val["score"] <= 1.0 and 0.0 <= result.test["score"] <= 1.0
    assert len(result.history) == 3 and all("loss" in row for row in result.history)


def test_moco_momentum_encoder_and_queue(splits):
    method = MoCoV2(queue_size=48, momentum=0.5)
    model = method.make_model(1, **SMALL)
    assert not any(p.requires_grad for p in model.key_backbone.parameters())
    assert "queue" in model.state_dict() and "key_backbone.stem.0.weight" in model.state_dict()
    old_queue = model.queue.clone()
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    key_before = model.key_backbone.stem[0].weight.clone()
    images, labels = splits.train.images[:32], splits.train.labels[:32]
    loss, _ = method.step(model, images, labels, splits, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    online = model.backbone.stem[0].weight
    assert torch.allclose(model.key_backbone.stem[0].weight, 0.5 * key_before + 0.5 * online)
    assert int(model.queue_ptr) == 32
    assert not torch.equal(model.queue[:32], old_queue[:32]) and torch.equal(model.queue[32:], old_queue[32:])
    method.step(model, images, labels, splits, torch.Generator().manual_seed(1))
    assert int(model.queue_ptr) == (64 % 48)  # ring buffer wraps
    with pytest.raises(ValueError, match="queue"):
        method.step(make_ssl_model(1, **SMALL), images, labels, splits, torch.Generator())


def test_eqco_margin_is_used_by_moco():
    m = MoCoV2(queue_size=4096, temperature=0.2, eqco_alpha=256)
    assert m.effective_margin() == pytest.approx(0.2 * torch.log(torch.tensor(256 / 4096)).item())
    assert MoCoV2(margin=0.1).effective_margin() == 0.1


def test_nan_loss_stops_the_run_naming_method_and_step(splits):
    method = SimCLR()
    model = method.make_model(1, **SMALL)
    with torch.no_grad():
        model.projector.net[-1].weight.fill_(float("nan"))
    with pytest.raises(train.TrainingDiverged, match=r"simclr.*step 0"):
        train.fit(model, splits, train.TrainConfig(**CFG), method=method, progress=False)


def test_emp_ssl_rejects_one_patch():
    with pytest.raises(ValueError, match="n_patches"):
        EMPSSL(n_patches=1)


def test_deepcluster_pseudo_labels_lower_loss_and_recluster(splits):
    method = DeepCluster(n_clusters=8, pca_dim=8, kmeans_iter=5, recluster_every=1000)
    torch.manual_seed(0)
    model = method.make_model(1, **SMALL)
    assert model.projector.out_dim == 8
    method.recluster(model, splits)  # pseudo-labels fixed for the rest of this test
    state = method.state(model)
    assert len(state.labels) == len(set(_hash_list(splits))) and state.weights.shape == (8,)
    assert "pseudo_labels.labels" in model.state_dict() and "pseudo_labels.steps" in model.state_dict()
    batch = (splits.train.images[:32], splits.train.labels[:32])
    before = fixed_loss(method, model, batch, splits)
    result = train.fit(model, splits, train.TrainConfig(**CFG), method=method, name="deepcluster", progress=False)
    after = fixed_loss(method, model, batch, splits)
    assert after < before and 0 <= result.test["score"] <= 1
    # every epoch by default: a fresh method re-clusters after len(train) // batch steps
    fresh = DeepCluster(n_clusters=8, pca_dim=8, kmeans_iter=5)
    fresh_model = fresh.make_model(1, **SMALL)
    calls = []
    fresh.recluster = lambda model, splits, _orig=fresh.recluster: (calls.append(1), _orig(model, splits))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        fresh.step(fresh_model, *batch, splits, g)
    assert len(calls) == 2 and int(fresh.state(fresh_model).steps) == 5  # at step 0 and step 4 (128 // 32)
    with pytest.raises(ValueError, match="make_model"):
        fresh.step(make_ssl_model(1, **SMALL), *batch, splits, g)


class _Killed(RuntimeError):
    pass


class _KillAfter:
    """A fit callback that interrupts the run after ``epoch`` (its checkpoint is already written)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, model, row, run_dir):
        if epoch == self.epoch:
            raise _Killed(f"killed after epoch {epoch}")


def test_deepcluster_resume_equals_an_uninterrupted_run(splits, tmp_path):
    """The pseudo-label table, class weights and step count are in the model's state_dict: a run killed
    after its first epoch and resumed ends with the same weights and history as one never interrupted
    (re-clustering every 3 steps, so across the epoch boundary of 4 steps)."""
    cfg = train.TrainConfig(**CFG)

    def run(run_dir, callbacks=()):
        method = DeepCluster(n_clusters=6, pca_dim=8, kmeans_iter=5, recluster_every=3)
        torch.manual_seed(0)
        model = method.make_model(1, **SMALL)
        return model, train.fit(model, splits, cfg, method=method, run_dir=run_dir, progress=False,
                                callbacks=callbacks)

    whole, whole_res = run(tmp_path / "whole")
    with pytest.raises(_Killed):
        run(tmp_path / "killed", callbacks=[_KillAfter(0)])
    resumed, resumed_res = run(tmp_path / "killed")
    assert [r["loss"] for r in resumed_res.history] == [r["loss"] for r in whole_res.history]
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(b["pseudo_labels.steps"]) > 0 and len(b["pseudo_labels.labels"]) == len(set(_hash_list(splits)))


def _hash_list(splits):
    from patchnb.ssl.deepcluster import _fingerprint

    return _fingerprint(splits.train.images).tolist()


def test_deepcluster_reassigns_empty_clusters():
    from patchnb.ssl.deepcluster import reassign_empty

    x = torch.cat([torch.randn(20, 2) * 0.1, torch.randn(20, 2) * 0.1 + 5])
    centroids = torch.tensor([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]])
    assignments = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    c, a = reassign_empty(x, centroids, assignments, torch.Generator().manual_seed(0))
    counts = torch.bincount(a, minlength=3)
    assert (counts > 0).all() and counts.sum() == 40
    assert c[2].norm() < 10  # the empty centroid moved next to a real cluster


def test_context_encoder_masks_one_square_per_image():
    m = ContextEncoder(mask_fraction=0.5).mask((3, 1, 16, 16), torch.Generator().manual_seed(0), "cpu")
    assert m.shape == (3, 1, 16, 16) and (m.sum((1, 2, 3)) == 64).all()
    with pytest.raises(ValueError, match="mask_fraction"):
        ContextEncoder(mask_fraction=1.0)


def test_context_encoder_adversarial_term_trains_each_player_on_its_own_objective(splits, tmp_path):
    """D's gradient is that of its real/fake loss alone (the same for any adversarial weight), while the
    encoder-decoder's gradient changes with the weight: each player gets only its own objective."""
    torch.manual_seed(0)
    model = ContextEncoder(adversarial_weight=0.1).make_model(1, width=4, hidden_dim=16, image_size=(16, 16))
    images, labels = splits.train.images[:16], splits.train.labels[:16]
    grads = {}
    for w in (0.1, 0.9):
        model.zero_grad()
        loss, logs = ContextEncoder(adversarial_weight=w).step(model, images, labels, splits,
                                                               torch.Generator().manual_seed(1))
        loss.backward()
        grads[w] = ([p.grad.clone() for p in model.discriminator.parameters()],
                    [p.grad.clone() for p in model.backbone.parameters() if p.grad is not None])
        assert logs["discriminator"] > 0 and logs["reconstruction"] > 0
    for a, b in zip(grads[0.1][0], grads[0.9][0]):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(grads[0.1][1], grads[0.9][1]))
    with pytest.raises(ValueError, match="discriminator"):  # a model built without it
        ContextEncoder(adversarial_weight=0.1).step(ContextEncoder().make_model(1, width=4, hidden_dim=16,
                                                                                image_size=(16, 16)),
                                                    images, labels, splits, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="adversarial_weight"):
        ContextEncoder(adversarial_weight=1.0)
    method = ContextEncoder(adversarial_weight=0.001)  # the paper's weight, through the training loop
    result = train.fit(model, splits, train.TrainConfig(**CFG), method=method, run_dir=tmp_path / "run",
                       name="context_encoder_adv", progress=False)
    assert "discriminator.fc.weight" in model.state_dict()
    rec = [row["reconstruction"] for row in result.history]
    assert rec[-1] < rec[0], rec


def test_detcon_segment_masks():
    from patchnb.ssl import segment_masks

    images = data.make_synthetic(4, shape=(1, 16, 16), seed=0).images
    m = segment_masks(images, 5, 20.0, torch.Generator().manual_seed(0))
    assert m.shape == (4, 5, 16, 16) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m.sum((2, 3)) > 0).all()
    grid = segment_masks(images, 4, 0.0)
    assert torch.equal(grid.sum(1), torch.ones(4, 16, 16)) and (grid.sum((2, 3)) == 64).all()


def test_detcon_segments_are_per_image_and_repeats_are_positives(splits):
    """An image has one segmentation wherever it is segmented (alone or in any batch); a step's loss
    is detcon_loss over the kept segments with the image folded into the mask ids, so segments drawn
    twice are positives of each other, not negatives."""
    from patchnb.ssl import detcon_loss
    from patchnb.ssl.detcon import felzenszwalb_segments, sample_masks

    images = splits.train.images[:6]
    whole = felzenszwalb_segments(images, 20.0)
    alone = torch.cat([felzenszwalb_segments(images[i:i + 1], 20.0) for i in (5, 4, 3, 2, 1, 0)]).flip(0)
    assert torch.equal(whole, alone)
    method = DetCon(mean_scale=20.0, num_samples=6, min_mask=0.0)  # more draws than segments: repeats
    model = method.make_model(1, **SMALL)
    loss, logs = method.step(model, images, None, splits, torch.Generator().manual_seed(3))
    assert logs["repeated_segments"] > 0
    calls = {}
    orig = method._segment_vectors

    def spy(model, x, masks):
        calls["out"] = orig(model, x, masks)
        return calls["out"]
    method._segment_vectors = spy
    loss, _ = method.step(model, images, None, splits, torch.Generator().manual_seed(3))
    _, picked = sample_masks(whole, 6, torch.Generator().manual_seed(3))
    ids = (picked + torch.arange(6).view(-1, 1) * 256).reshape(-1)
    z1, z2 = calls["out"][0].chunk(2)
    w1, w2 = calls["out"][1].chunk(2)
    keep = (w1 > 0) & (w2 > 0)  # min_mask = 0: a segment is left out only where a crop removed it
    assert loss.item() == pytest.approx(detcon_loss(z1[keep], z2[keep], ids[keep], temperature=0.1).item(), rel=1e-6)
    hcl_method = DetCon(mean_scale=20.0, num_samples=6, min_mask=0.0, beta=0.5)  # HCL: each segment once
    assert torch.isfinite(hcl_method.step(model, images, None, splits, torch.Generator().manual_seed(3))[0])


def _detcon_run(splits, run_dir=None, callbacks=(), **kw):
    method = DetCon(mean_scale=20.0, num_samples=3, **kw)
    torch.manual_seed(0)
    model = method.make_model(1, **SMALL)
    res = train.fit(model, splits, train.TrainConfig(**{**CFG, "epochs": 2}), method=method, run_dir=run_dir,
                    progress=False, callbacks=callbacks)
    return method, model, res


def test_detcon_segments_each_image_once_and_caching_changes_nothing(splits, monkeypatch):
    """Two epochs over the 128 training images (4 steps of 32): Felzenszwalb runs once per image with the
    cache, every step without it, and the two runs are identical."""
    import skimage.segmentation

    counted = []
    real = skimage.segmentation.felzenszwalb
    monkeypatch.setattr(skimage.segmentation, "felzenszwalb", lambda *a, **k: (counted.append(1), real(*a, **k))[1])
    distinct = len(set(_hash_list(splits)))
    cached, cached_model, cached_res = _detcon_run(splits)
    assert len(counted) == cached.segmentations == distinct
    counted.clear()
    plain, plain_model, plain_res = _detcon_run(splits, cache_masks=False)
    assert len(counted) == plain.segmentations == 2 * 4 * 32
    assert [r["loss"] for r in cached_res.history] == [r["loss"] for r in plain_res.history]
    a, b = cached_model.state_dict(), plain_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert repr(cached) == repr(plain)  # the same run for the loop's fingerprint
    with pytest.raises(ValueError, match="cache_masks"):
        DetCon(cache_masks="yes")


def test_detcon_resume_equals_an_uninterrupted_run(splits, tmp_path):
    """The cache is not in the checkpoint: a resumed run (a fresh method, an empty cache) segments the
    images again, identically, and ends with the weights and history of a run never interrupted."""
    _, whole, whole_res = _detcon_run(splits, tmp_path / "whole")
    with pytest.raises(_Killed):
        _detcon_run(splits, tmp_path / "killed", callbacks=[_KillAfter(0)])
    method, resumed, resumed_res = _detcon_run(splits, tmp_path / "killed")
    assert method.segmentations == len(set(_hash_list(splits)))  # the second epoch, from scratch
    assert [r["loss"] for r in resumed_res.history] == [r["loss"] for r in whole_res.history]
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_emp_ssl_rejects_bad_eps_at_construction():
    from patchnb.ssl import EMPSSL

    with pytest.raises(ValueError, match="eps must be a finite value > 0"):
        EMPSSL(eps=0.0)


def test_detcon_mask_sampling_official_uniform_over_present_vs_patchworks_area():
    """Issue 20 §6.3, hand case. deepmind/detcon detcon_b.py: create_binary_mask average-pools the view's
    Felzenszwalb map to the feature grid and gives each cell to its majority mask; sample_masks draws
    uniformly (categorical of log(exists)) over the masks owning a cell. On this 4x4 map and a 2x2 grid the
    cells are 0 | 1 (three pixels of 1, one of 2) / 0 | 0: masks 0 and 1 are present, 2 is not, so the
    official draws are 1/2, 1/2, 0; patchnb's default ("area_shared", patchwork's) draws by area: 12, 3, 1 of 16."""
    from patchnb.ssl.detcon import feature_grid_masks, sample_masks, sample_present_masks

    seg = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 0]])
    onehot = torch.nn.functional.one_hot(seg, 3).permute(2, 0, 1).float()[None]
    hard, present = feature_grid_masks(onehot, (2, 2))
    assert present.tolist() == [[True, True, False]]
    assert hard[0].argmax(0).tolist() == [[0, 1], [0, 0]] and torch.equal(hard.sum(1), torch.ones(1, 2, 2))
    n = 40000
    g = torch.Generator().manual_seed(0)
    drawn = sample_present_masks(present.expand(n, 3), 1, g).flatten()
    freq = torch.bincount(drawn, minlength=3).double() / n  # sd of each frequency: 0.0025
    assert abs(freq[0] - 0.5) < 0.01 and abs(freq[1] - 0.5) < 0.01 and freq[2] == 0
    many = sample_present_masks(present, 16, g)  # the official 16 per image: with replacement
    assert many.shape == (1, 16) and set(many.flatten().tolist()) <= {0, 1}
    _, picked = sample_masks(seg.expand(4000, 4, 4), 1, torch.Generator().manual_seed(0))
    area = torch.bincount(picked.flatten(), minlength=3).double() / 4000  # sd <= 0.007
    assert torch.allclose(area, torch.tensor([12, 3, 1], dtype=torch.double) / 16, atol=0.03)
    with pytest.raises(ValueError, match="no mask present"):
        sample_present_masks(torch.zeros(1, 3, dtype=torch.bool), 2, g)


def test_detcon_uniform_per_view_draws_each_view_apart(splits, monkeypatch):
    """mask_sampling="uniform_per_view" (the official code): each view draws its own num_samples ids among
    the masks present on its feature grid, so view 1's and view 2's ids differ; the loss is detcon_loss with
    ids1 != ids2 (a draw without its mask in the other view has no positive and weighs zero)."""
    import patchnb.ssl.detcon as det

    seen = {}
    real_sample, real_loss = det.sample_present_masks, det.detcon_loss

    def sample(present, k, generator=None):
        seen["present"], seen["drawn"] = present, real_sample(present, k, generator)
        return seen["drawn"]

    def loss(z1, z2, ids1, ids2=None, temperature=0.1):
        seen["ids"], seen["z"] = (ids1, ids2), (z1, z2)
        return real_loss(z1, z2, ids1, ids2, temperature=temperature)
    monkeypatch.setattr(det, "sample_present_masks", sample)
    monkeypatch.setattr(det, "detcon_loss", loss)
    method = DetCon(mean_scale=20.0, num_samples=5, mask_sampling="uniform_per_view")
    model = method.make_model(1, **SMALL)
    images = splits.train.images[:6]
    value, logs = method.step(model, images, None, splits, torch.Generator().manual_seed(3))
    assert torch.isfinite(value) and 0 < logs["segments_kept"] <= 1
    drawn, present = seen["drawn"], seen["present"]
    assert drawn.shape == (12, 5)  # 6 images x 2 views
    assert present.gather(1, drawn.to(present.device)).all()  # only masks present in that view's grid
    k = int(method.segments(images).max()) + 1
    ids1, ids2 = seen["ids"]
    assert torch.equal(ids1 // k, torch.arange(6).repeat_interleave(5)) and torch.equal(ids2 // k, ids1 // k)
    assert not torch.equal(ids1, ids2)  # drawn per view, not shared
    assert value.item() == pytest.approx(real_loss(*seen["z"], ids1, ids2, temperature=0.1).item(), rel=1e-6)
    _, _, res = _detcon_run(splits, mask_sampling="uniform_per_view")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in res.history)
    with pytest.raises(ValueError, match="mask_sampling"):
        DetCon(mask_sampling="by_area")
    with pytest.raises(ValueError, match="HCL"):
        DetCon(mask_sampling="uniform_per_view", beta=0.5)
    assert DetCon().mask_sampling == "area_shared"  # patchwork's, the default: a named deviation
