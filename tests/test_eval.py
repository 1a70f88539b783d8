"""Tests of patchnb.eval: kNN, linear probe + metrics, backbone loading, cached features, geometry, figures,
projections and the checkpoint sweep (resume, corrupt checkpoints, command line)."""

from __future__ import annotations

import json
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from torch import nn  # noqa: E402

from patchnb.data import ImageData, Normalization, Splits, make_synthetic, random_crop_flip  # noqa: E402
from patchnb.eval import (  # noqa: E402
    BackboneError,
    SweepError,
    alignment_uniformity,
    cached_features,
    classification_metrics,
    confusion_figure,
    confusion_matrix,
    features,
    find_checkpoints,
    kernel_figure,
    knn_classify,
    linear_probe,
    load_backbone,
    load_projections,
    query_figure,
    rotation_test,
    save_backbone,
    save_projections,
    sweep_checkpoints,
)
from patchnb.eval import sweep as sweep_mod  # noqa: E402
from patchnb.train import CheckpointError, save_atomic  # noqa: E402


def tiny_encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten())


class WithHead(nn.Module):
    """A backbone + projection head, as an SSL model stores them."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.backbone = tiny_encoder(seed)
        self.projector = nn.Linear(32, 4)

    def forward(self, x):
        return self.projector(self.backbone(x))


@pytest.fixture(scope="module")
def splits() -> Splits:
    data = make_synthetic(600, n_classes=4, shape=(1, 12, 12), seed=3)
    test = make_synthetic(160, n_classes=4, shape=(1, 12, 12), seed=4)
    return Splits("synthetic", data.subset(torch.arange(400)), data.subset(torch.arange(400, 600)), test,
                  Normalization((0.35,), (0.3,)))


# ----------------------------------------------------------------------------- kNN


def test_knn_separable_hand_made():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.95, -0.1], [0.0, 1.0], [0.1, 0.9], [-0.1, 0.95]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    q = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.8]])
    res = knn_classify(bank, labels, q, torch.tensor([0, 1, 0]), k=3)
    assert res.predictions.tolist() == [0, 1, 0]
    assert res.accuracy == 1.0
    # k larger than the bank is capped; votes are exp(cos / T) summed per class
    res = knn_classify(bank, labels, q[:1], k=100, temperature=1.0)
    cos = torch.nn.functional.normalize(bank, dim=1) @ torch.nn.functional.normalize(q[:1], dim=1).T
    assert torch.allclose(res.votes[0, 0], cos[:3].exp().sum(), atol=1e-5)
    assert res.accuracy is None


def test_knn_matches_numpy_bruteforce():
    g = torch.Generator().manual_seed(0)
    bank, q = torch.randn(300, 16, generator=g), torch.randn(77, 16, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    ql = torch.randint(0, 5, (77,), generator=g)
    k, t = 20, 0.07
    res = knn_classify(bank, labels, q, ql, k=k, temperature=t, chunk=13)
    b = bank.numpy().astype(np.float64)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    qq = q.numpy().astype(np.float64)
    qq /= np.linalg.norm(qq, axis=1, keepdims=True)
    sim = qq @ b.T
    votes = np.zeros((77, 5))
    for i in range(77):
        nn_idx = np.argsort(-sim[i])[:k]
        for j in nn_idx:
            votes[i, labels[j]] += np.exp(sim[i, j] / t)
    assert np.allclose(res.votes.numpy(), votes, rtol=1e-4)
    assert res.predictions.tolist() == votes.argmax(1).tolist()
    assert res.accuracy == pytest.approx(float((votes.argmax(1) == ql.numpy()).mean()))


def test_knn_bad_parameters():
    x, y = torch.randn(10, 3), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="k must be"):
        knn_classify(x, y, x, k=0)
    with pytest.raises(ValueError, match="temperature"):
        knn_classify(x, y, x, temperature=0)


# ----------------------------------------------------------------------------- metrics and linear probe


def test_confusion_and_metrics_match_sklearn():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 6, (500,), generator=g)
    p = torch.where(torch.rand(500, generator=g) < 0.6, y, torch.randint(0, 5, (500,), generator=g))  # 5 never
    cm = confusion_matrix(y, p, 6)
    assert int(cm.sum()) == 500 and cm.shape == (6, 6)
    assert cm.sum(1).tolist() == torch.bincount(y, minlength=6).tolist()
    assert np.array_equal(cm.numpy(), skm.confusion_matrix(y, p, labels=range(6)))
    m = classification_metrics(y, p, 6)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert m[name] == pytest.approx(fn(y, p, average="macro", zero_division=0)), name
    json.dumps(m)  # JSON-ready
    with pytest.raises(ValueError, match="n_classes"):
        confusion_matrix(y, p, 3)


def _blobs(n, d=10, c=4, seed=0, sep=6.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=torch.Generator().manual_seed(99)) * sep
    y = torch.arange(n) % c
    return centres[y] + torch.randn(n, d, generator=g) + 50.0, y  # offset: standardisation matters


def test_linear_probe_separable_and_sklearn_metrics():
    xtr, ytr = _blobs(300, seed=0)
    xva, yva = _blobs(100, seed=1)
    xte, yte = _blobs(200, seed=2)
    res = linear_probe(xtr, ytr, xva, yva, xte, yte, weight_decays=(1e-3, 1e-2, 1e-1))
    assert res.test["accuracy"] > 0.97 and res.val["accuracy"] > 0.97
    pred = res.test_predictions
    assert res.test["accuracy"] == pytest.approx(skm.accuracy_score(yte, pred))
    assert res.test["precision"] == pytest.approx(skm.precision_score(yte, pred, average="macro", zero_division=0))
    assert res.test["recall"] == pytest.approx(skm.recall_score(yte, pred, average="macro", zero_division=0))
    assert res.test["f1"] == pytest.approx(skm.f1_score(yte, pred, average="macro", zero_division=0))
    assert sum(map(sum, res.test["confusion"])) == 200
    assert [r["weight_decay"] for r in res.grid] == [1e-3, 1e-2, 1e-1]
    assert res.weight_decay in (1e-3, 1e-2, 1e-1)
    again = linear_probe(xtr, ytr, xva, yva, xte, yte, weight_decays=(1e-3, 1e-2, 1e-1))
    assert torch.equal(again.head.weight, res.head.weight) and torch.equal(again.test_predictions, pred)
    json.dumps(res.summary())


def test_linear_probe_selects_on_validation_and_lowers_loss():
    # noisy labels: strong regularisation must not win on a clean validation set with useless features
    xtr, ytr = _blobs(200, seed=3, sep=1.0)
    xva, yva = _blobs(100, seed=4, sep=1.0)
    res = linear_probe(xtr, ytr, xva, yva, weight_decays=(1e-4, 10.0))
    best = max(res.grid, key=lambda r: (r["val_accuracy"], r["weight_decay"]))
    assert res.weight_decay == best["weight_decay"] and res.test is None
    from patchnb.eval.probe import fit_logistic

    x = (xtr - xtr.mean(0)) / xtr.std(0)
    w, b = fit_logistic(x, ytr, 4, 1e-3, max_iter=50)
    loss = torch.nn.functional.cross_entropy(x @ w.T + b, ytr)
    assert loss < torch.nn.functional.cross_entropy(torch.zeros(len(x), 4), ytr)


def test_linear_probe_bad_input():
    x, y = torch.randn(20, 3), torch.arange(20) % 2
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(x.masked_fill(x > 1, float("nan")), y, x, y)
    with pytest.raises(ValueError, match="weight_decays"):
        linear_probe(x, y, x, y, weight_decays=(-1.0,))
    with pytest.raises(ValueError, match="test"):
        linear_probe(x, y, x, y, test_feats=x)


# ----------------------------------------------------------------------------- features and backbone weights


def test_features_eval_mode_batched(splits):
    enc = tiny_encoder()
    enc.train()
    f, y = features(enc, splits.val, splits, batch_size=64)
    assert f.shape == (200, 32) and not f.requires_grad and torch.equal(y, splits.val.labels)
    assert enc.training  # mode restored
    enc.eval()
    with torch.no_grad():
        ref = enc(splits.norm(splits.val.images))
    assert torch.allclose(f, ref, atol=1e-5)


def test_cached_features_offline(tmp_path, splits):
    enc = tiny_encoder(1)
    ck = save_backbone(enc, tmp_path / "enc.pt")
    f1, y1 = cached_features(ck, tiny_encoder, splits.val, splits, cache=tmp_path / "cache")
    f2, y2 = cached_features(ck, None, splits.val, splits, cache=tmp_path / "cache")  # no encoder: from disk
    assert torch.equal(f1, f2) and torch.equal(y1, y2)
    assert torch.allclose(f1, features(enc, splits.val, splits)[0], atol=1e-6)  # weights were loaded from ck
    with pytest.raises(ValueError, match="no cached features"):
        cached_features("never-computed", None, splits.val, splits, cache=tmp_path / "cache")


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_backbone_round_trip_formats(tmp_path):
    model = WithHead(seed=2)
    # save_backbone keeps only the backbone
    path = save_backbone(model, tmp_path / "bb.pt", meta={"epoch": 3})
    saved = torch.load(path, weights_only=False)
    assert all(not k.startswith("projector") for k in saved["backbone"]) and saved["meta"]["epoch"] == 3
    assert _same(load_backbone(path, tiny_encoder(5)), model.backbone)
    # a plain state_dict of the backbone
    torch.save(model.backbone.state_dict(), tmp_path / "plain.pth")
    assert _same(load_backbone(tmp_path / "plain.pth", tiny_encoder(6)), model.backbone)
    # a training checkpoint of the whole model, DDP-wrapped names, under "model" (like patchnb.train.fit)
    state = {"module." + k: v for k, v in model.state_dict().items()}
    save_atomic({"model": state, "optimizer": {}, "epoch": 7}, tmp_path / "last.pt")
    assert _same(load_backbone(tmp_path / "last.pt", tiny_encoder(7)), model.backbone)
    whole = load_backbone(tmp_path / "last.pt", WithHead(seed=8))  # the whole model still loads
    assert _same(whole, model)
    sd = load_backbone(tmp_path / "last.pt")  # no model: the backbone's state_dict
    assert set(sd) == set(model.backbone.state_dict())
    torch.save({"state_dict": model.backbone.state_dict()}, tmp_path / "sd.ckpt")
    assert _same(load_backbone(tmp_path / "sd.ckpt", tiny_encoder(9)), model.backbone)


def test_backbone_errors(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(BackboneError, match="corrupt.pt"):
        load_backbone(bad, tiny_encoder())
    save_backbone(tiny_encoder(), tmp_path / "ok.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_backbone(truncated, tiny_encoder())
    with pytest.raises(BackboneError, match="missing"):
        load_backbone(tmp_path / "ok.pt", nn.ModuleDict({"fc": nn.Linear(3, 3)}))
    wide = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten())
    with pytest.raises(BackboneError, match="wrong shape"):
        load_backbone(tmp_path / "ok.pt", wide)
    torch.save({"epoch": 3, "notes": "no weights"}, tmp_path / "empty.pt")
    with pytest.raises(BackboneError, match="holds no weights"):
        load_backbone(tmp_path / "empty.pt")
    with pytest.raises(BackboneError, match="missing.pt"):
        load_backbone(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- geometry, figures, projections


def test_alignment_uniformity_and_rotation(splits):
    enc = tiny_encoder()
    au = alignment_uniformity(enc, splits.test, splits, n=100)
    assert au["n"] == 100 and 0 <= au["alignment"] <= 4 and -2 * 2 <= au["uniformity"] <= 0
    same = alignment_uniformity(enc, splits.test, splits, augment=lambda x, g: x, n=50)
    assert same["alignment"] == pytest.approx(0.0, abs=1e-8)  # identical views are perfectly aligned
    rot = rotation_test(nn.Flatten(), splits, n_train=100, n_val=40, n_test=40, weight_decays=(1e-2,))
    assert 0 <= rot["accuracy"] <= 1 and rot["chance"] == 0.25
    assert sum(map(sum, rot["confusion"])) == 160


def test_figures(splits):
    enc = tiny_encoder()
    f, _ = features(enc, splits.test, splits)
    for fig in (kernel_figure(enc), confusion_figure([[5, 1], [2, 7]], ["a", "b"]),
                query_figure(f, splits.test, n_matches=3)):
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        kernel_figure(nn.Linear(2, 2))


def test_projections_round_trip(tmp_path):
    feats, labels = torch.randn(30, 5), torch.arange(30) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the parquet -> csv fallback warns when pyarrow is missing
        path = save_projections(tmp_path / "proj.parquet", feats, labels, split=["train"] * 20 + ["test"] * 10,
                                classes=("a", "b", "c"))
    df = load_projections(path)
    assert path.suffix in (".parquet", ".csv")
    assert list(df.columns[:3]) == ["split", "label", "class"]
    assert np.allclose(df[[f"z{i}" for i in range(5)]].to_numpy(), feats.numpy(), atol=1e-6)
    assert df["label"].tolist() == labels.tolist() and df["split"].tolist()[19:21] == ["train", "test"]
    import pandas as pd

    csv = save_projections(tmp_path / "p.csv", feats, labels)
    assert pd.read_csv(csv).shape == (30, 7)


# ----------------------------------------------------------------------------- checkpoint sweep


def _make_run(folder, n=3):
    folder.mkdir()
    for e in range(1, n + 1):
        model = WithHead(seed=e)
        if e == 1:  # a dead encoder: constant features, so it must lose on validation
            for p in model.backbone.parameters():
                p.data.zero_()
        save_backbone(model, folder / f"epoch_{e:03d}.pt")
    return folder


class Builder:
    def __init__(self, fail_at: int | None = None):
        self.calls, self.fail_at = 0, fail_at

    def __call__(self):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt  # the sweep dies here
        return tiny_encoder()


def test_sweep_resumes_and_skips_corrupt(tmp_path, splits):
    run = _make_run(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        sweep_checkpoints(run, Builder(fail_at=3), splits, weight_decays=(1e-2,), progress=False)
    state = json.loads((run / "sweep.json").read_text())
    assert sorted(state["checkpoints"]) == ["epoch_001.pt", "epoch_002.pt"] and "test" not in state
    (run / "epoch_010.pt").write_bytes(b"garbage")  # a corrupt checkpoint
    builder = Builder()
    with pytest.warns(UserWarning, match="epoch_010.pt"):
        res = sweep_checkpoints(run, builder, splits, weight_decays=(1e-2,), progress=False)
    assert builder.calls == 3  # epoch_003, the corrupt one (fails on load), then the selected one on test
    assert [r["checkpoint"] for r in res.rows] == ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "epoch_010.pt"]
    assert [r["status"] for r in res.rows] == ["done", "done", "done", "skipped"]
    done = [r for r in res.rows if r["status"] == "done"]
    assert res.best == max(done, key=lambda r: r["val_accuracy"])["checkpoint"] and res.best != "epoch_001.pt"
    assert set(res.test) >= {"accuracy", "precision", "recall", "f1", "confusion"}
    assert sum(map(sum, res.test["confusion"])) == len(splits.test)
    assert res.val["accuracy"] == pytest.approx(max(r["val_accuracy"] for r in done))
    state = json.loads((run / "sweep.json").read_text())
    assert state["test"]["checkpoint"] == res.best and state["best"] == res.best
    assert list(res.test_table().columns) == ["checkpoint", "epoch", "accuracy", "precision", "recall", "f1"]
    # a finished sweep reruns without building any encoder (except retrying the corrupt file)
    builder = Builder()
    with pytest.warns(UserWarning, match="epoch_010.pt"):
        again = sweep_checkpoints(run, builder, splits, weight_decays=(1e-2,), progress=False)
    assert builder.calls == 1 and again.test == res.test


def test_sweep_errors(tmp_path, splits):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(SweepError, match="no checkpoint files"):
        sweep_checkpoints(tmp_path / "empty", tiny_encoder, splits)
    with pytest.raises(SweepError, match="does not exist"):
        sweep_checkpoints(tmp_path / "nope", tiny_encoder, splits)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.pt").write_bytes(b"x")
    with pytest.warns(UserWarning), pytest.raises(SweepError, match="none of the 1 checkpoints"):
        sweep_checkpoints(tmp_path / "bad", tiny_encoder, splits, progress=False)


def test_find_checkpoints_sorted_by_epoch(tmp_path):
    for name in ("last.pt", "ckpt_epoch_10.pth", "ckpt_epoch_9.pth", "x.pt.tmp", "sweep.json", "epoch_100.ckpt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_checkpoints(tmp_path)] == ["ckpt_epoch_9.pth", "ckpt_epoch_10.pth",
                                                            "epoch_100.ckpt", "last.pt"]


def test_sweep_command_line(tmp_path, capsys):
    from patchnb.models import ResNet18

    run = tmp_path / "run"
    for e in (1, 2):
        torch.manual_seed(e)
        save_backbone(ResNet18(1, 2), run / f"epoch_{e}.pt")
    argv = [str(run), "--dataset", "synthetic", "--train-size", "120", "--val-size", "60", "--test-size", "60",
            "--width", "2", "--weight-decays", "0.01", "--no-progress"]
    assert sweep_mod.main(argv) == 0
    out = capsys.readouterr().out
    assert "selected on validation" in out and "test: accuracy" in out
    assert (run / "sweep.json").is_file()
    (tmp_path / "empty").mkdir()
    assert sweep_mod.main([str(tmp_path / "empty"), "--dataset", "synthetic", "--train-size", "50",
                           "--val-size", "20", "--test-size", "20", "--no-progress"]) == 2


def test_alignment_views_pad_black_in_pixel_space(splits, monkeypatch):
    """Issue 20 §6.1: patchwork augments in [0, 1] pixel space before its model, so a view's border is a
    pixel-space value; the default views here pad raw black (-mean/std once normalised), not 0 (the mean grey).
    Hand case: offsets (0, 0), no flip, a constant 200 image of 6x6 keeps its 2x2 corner, the rest is black."""
    seen = []

    class Record(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return x.flatten(1)

    norm = Normalization((0.25,), (0.5,))
    data = ImageData(torch.full((2, 1, 6, 6), 200, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ("a",))
    sp = Splits("const", data, data, data, norm)
    zeros = lambda low, high, size, generator=None: torch.zeros(size, dtype=torch.long)  # noqa: E731
    monkeypatch.setattr(torch, "randint", zeros)
    monkeypatch.setattr(torch, "rand", lambda *a, generator=None: torch.ones(a[0]))  # never flip
    alignment_uniformity(Record(), data, sp, n=2)
    x, v1, v2 = seen
    assert torch.allclose(x, torch.full_like(x, (200 / 255 - 0.25) / 0.5))
    black, inside = -0.25 / 0.5, (200 / 255 - 0.25) / 0.5
    for v in (v1, v2):
        assert torch.allclose(v[:, 0, 4:, 4:], torch.full((2, 2, 2), inside))
        assert torch.allclose(v[:, 0, :4], torch.full((2, 4, 6), black))
        assert torch.allclose(v[:, 0, :, :4], torch.full((2, 6, 4), black))
    monkeypatch.undo()
    # any offsets: each view is the normalised crop of the raw image with torchvision's black border
    seen.clear()
    alignment_uniformity(Record(), splits.test, splits, n=len(splits.test), seed=5)
    g = torch.Generator().manual_seed(5)
    for v in seen[1:]:
        assert torch.allclose(v, splits.norm(random_crop_flip(splits.test.images, 4, True, g)), atol=1e-6)
