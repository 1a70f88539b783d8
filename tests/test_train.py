import math

import pytest
import torch
from torch import nn

from patchnb import checkpoint, data, train


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 10))


@pytest.fixture(scope="module")
def splits():
    return data.load_splits("synthetic", train_size=256, val_size=64, test_size=64)


CFG = dict(epochs=3, batch_size=32, lr=0.05, milestones=(2,), seed=3)


class Interrupt(Exception):
    pass


class Stopper(train.Classification):
    """Classification that raises after a number of steps (a killed process)."""

    def __init__(self, after):
        super().__init__()
        self.after, self.n = after, 0

    def step(self, *args):
        self.n += 1
        if self.n > self.after:
            raise Interrupt
        return super().step(*args)

    def __repr__(self):  # same config as plain Classification
        return repr(train.Classification())


def test_fit_selects_on_val_and_tests_once(splits, tmp_path):
    calls = []

    class Counting(train.Classification):
        def evaluate(self, model, d, s, batch_size=1000):
            calls.append(d is s.test)
            return super().evaluate(model, d, s, batch_size)

    r = train.fit(tiny_model(), splits, train.TrainConfig(**CFG), Counting(), progress=False)
    assert sum(calls) == 1  # the test split is evaluated exactly once
    assert r.val["score"] == max(h["val_score"] for h in r.history)
    assert r.best_epoch == max(range(3), key=lambda e: (r.history[e]["val_score"], -e))
    assert 0 <= r.test["score"] <= 1 and len(r.history) == 3


def test_resume_after_interruption_is_exact(splits, tmp_path):
    full = train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path / "a", progress=False)
    with pytest.raises(Interrupt):  # dies in epoch 2 (8 steps per epoch)
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), Stopper(after=13), run_dir=tmp_path / "b",
                  progress=False)
    assert (tmp_path / "b" / "last.pt").is_file() and not (tmp_path / "b" / "result.pt").exists()
    resumed = train.fit(tiny_model(seed=99), splits, train.TrainConfig(**CFG), run_dir=tmp_path / "b",
                        progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.test["score"] == full.test["score"] and resumed.run_id
    # a finished run is returned from its record, not retrained
    again = train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path / "b", progress=False)
    assert again.history == resumed.history


def test_foreign_and_corrupt_checkpoints(splits, tmp_path):
    with pytest.raises(Interrupt):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), Stopper(after=9), run_dir=tmp_path, progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="another configuration"):
        train.fit(tiny_model(), splits, train.TrainConfig(**{**CFG, "lr": 0.01}), run_dir=tmp_path, progress=False)
    good = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)


def test_save_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    checkpoint.save_atomic({"a": 1}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"a": 2}, path)
    assert checkpoint.load_checkpoint(path) == {"a": 1}


def test_nan_loss_stops_with_a_clear_message(splits):
    class Nan(train.Classification):
        def step(self, *args):
            loss, m = super().step(*args)
            return loss * float("nan"), m

    with pytest.raises(train.TrainingDiverged, match="nan-method: loss is nan at epoch 0 step 0"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), Nan(name="nan-method"), progress=False)


def test_early_stopping_and_record(splits, tmp_path):
    class Flat(train.Classification):
        def evaluate(self, *a, **k):
            return {**super().evaluate(*a, **k), "score": 0.5}

    r = train.fit(tiny_model(), splits, train.TrainConfig(**{**CFG, "epochs": 10, "patience": 2}), Flat(),
                  run_dir=tmp_path, progress=False)
    assert len(r.history) == 3 and r.best_epoch == 0
    import yaml

    rec = yaml.safe_load((tmp_path / "record.yaml").read_text())
    assert rec["summary"]["best_epoch"] == 0 and len(rec["history"]) == 3 and rec["code_version"]


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer='rmsprop'.*allowed"):
        train.TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule"):
        train.TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        train.TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        train.TrainConfig(lr=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            train.resolve_device("cuda")


def test_lr_schedules():
    f = lambda **k: [train.lr_factor(train.TrainConfig(epochs=10, **k), e) for e in (0, 4.5, 9.99)]
    assert f(schedule="constant") == [1, 1, 1]
    assert f(schedule="multistep", milestones=(3, 6)) == [1, pytest.approx(0.1), pytest.approx(0.01)]
    assert f(schedule="staircase", step_epochs=5, gamma=0.5) == [1, 1, 0.5]
    assert f(schedule="exponential", gamma=0.5)[1] == pytest.approx(0.5 ** 4.5)
    cos = f(schedule="cosine", warmup_epochs=1)
    assert cos[0] == pytest.approx(0, abs=1e-6) and cos[1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3.5 / 9)))


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw", "lars"])
def test_optimizers_lower_the_loss(splits, opt):
    lr = {"sgd": 0.05, "adam": 0.01, "adamw": 0.01, "lars": 1.0}[opt]
    r = train.fit(tiny_model(), splits, train.TrainConfig(epochs=3, batch_size=32, lr=lr, optimizer=opt,
                                                          schedule="constant"), progress=False)
    assert r.history[-1]["loss"] < r.history[0]["loss"]


def test_callbacks_run_after_each_epoch_and_checkpoint(splits, tmp_path):
    seen = []

    class Recorder:
        def on_epoch_end(self, epoch, model, row, run_dir):
            ck = checkpoint.load_checkpoint(run_dir / "last.pt")
            seen.append((epoch, row["epoch"], ck["epoch"], model.training, run_dir))

    class NoHook:  # a callback without on_epoch_end is allowed and ignored
        pass

    train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False,
              callbacks=[Recorder(), NoHook()])
    assert seen == [(e, e, e, True, tmp_path) for e in range(3)]


def test_lr_schedule_counts_the_batches_the_loader_yields(splits, monkeypatch):
    """Issue 12 §3.6: 250 images in batches of 32 are 7 steps an epoch (the last 26 are dropped), and a
    milestone at epoch m takes effect at the first step of epoch m (the schedule counted ceil = 8)."""
    lrs = []
    real = train.make_optimizer

    def spy(params, cfg):
        opt = real(params, cfg)
        opt.register_step_pre_hook(lambda o, args, kwargs: lrs.append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(train, "make_optimizer", spy)
    small = data.Splits("s", splits.train.subset(range(250)), splits.val, splits.test, splits.norm)
    cfg = train.TrainConfig(epochs=3, batch_size=32, lr=1.0, milestones=(1, 2), gamma=0.1, seed=0)
    assert train.steps_per_epoch(250, cfg) == 7
    train.fit(tiny_model(), small, cfg, train.Classification(pad=0, flip=False), progress=False)
    assert lrs == pytest.approx([1.0] * 7 + [0.1] * 7 + [0.01] * 7)
    cosine = train.TrainConfig(epochs=2, batch_size=32, schedule="cosine")
    assert train.lr_factor(cosine, 14 / train.steps_per_epoch(250, cosine)) == pytest.approx(0.0)  # ends at 0


def test_steps_per_epoch_matches_iterate_batches(splits):
    for n, b, cap in [(256, 32, None), (250, 32, None), (20, 32, None), (250, 32, 3)]:
        cfg = train.TrainConfig(batch_size=b, max_steps_per_epoch=cap)
        batches = len(list(data.iterate_batches(splits.train.subset(range(n)), b, shuffle=True, drop_last=True)))
        assert train.steps_per_epoch(n, cfg) == min(batches, cap or batches)


def test_classification_crops_with_black_borders_as_torchvision(splits):
    """Issue 12 §3.4: the border the model sees is a black pixel normalised (-mean/std per channel), as
    RandomCrop(padding=4) then Normalize gives; before, the normalised batch was padded with 0 = the mean."""
    seen = []

    class Capture(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            seen.append(x)
            return x.flatten(1)[:, :10] * self.w

    images = torch.full((16, 1, 16, 16), 200, dtype=torch.uint8)
    train.Classification(pad=4, flip=False).step(Capture(), images, torch.zeros(16, dtype=torch.long), splits,
                                                 torch.Generator().manual_seed(0))
    x, black, inside = seen[0], splits.norm.black()[0], splits.norm(images[:1])[0, 0, 0, 0]
    is_black, is_inside = torch.isclose(x, black), torch.isclose(x, inside)
    assert (is_black | is_inside).all() and is_black.any()  # only the image and black borders
    assert float(black) < 0 < float(inside)  # a black border is darker than the mean, which normalises to 0


def test_bf16_and_channels_last_settings(splits):
    """bf16 runs every training step under bfloat16 autocast (evaluation in fp32); channels_last stores the
    model's 4-D weights NHWC (fp32: the same run up to rounding). At their defaults (off) they are not in the
    fingerprint, which keeps the values recorded before they existed."""
    assert train.TrainConfig().fingerprint() == "beeb634ab0a1"  # recorded before the two settings were added
    assert train.TrainConfig(epochs=3, lr=0.1).fingerprint() == "8de881dd84f1"
    assert train.TrainConfig(bf16=True).fingerprint() != train.TrainConfig().fingerprint()
    assert train.TrainConfig(channels_last=True).fingerprint() != train.TrainConfig().fingerprint()
    for name in ("bf16", "channels_last"):
        with pytest.raises(ValueError, match=name):
            train.TrainConfig(**{name: 1})
    seen = []

    class Spy(train.Classification):
        def step(self, model, *args):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return super().step(model, *args)

        def evaluate(self, model, *args, **kw):
            seen.append(("eval", torch.is_autocast_enabled("cpu")))
            return super().evaluate(model, *args, **kw)

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                             nn.Linear(32, 10))

    cfg = dict(CFG, epochs=2, max_steps_per_epoch=3)
    plain = train.fit(net(), splits, train.TrainConfig(**cfg), Spy(), progress=False)
    assert {s for s in seen if s[0] != "eval"} == {(False, torch.bfloat16)} and ("eval", False) in seen
    seen.clear()
    low = train.fit(net(), splits, train.TrainConfig(**cfg, bf16=True), Spy(), progress=False)
    assert {s for s in seen if s[0] != "eval"} == {(True, torch.bfloat16)} and ("eval", True) not in seen
    assert [r["loss"] for r in low.history] == pytest.approx([r["loss"] for r in plain.history], rel=0.05)
    assert [r["loss"] for r in low.history] != [r["loss"] for r in plain.history]
    model = net()
    nhwc = train.fit(model, splits, train.TrainConfig(**cfg, channels_last=True), progress=False)
    w = model[2].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    base = train.fit(net(), splits, train.TrainConfig(**cfg), progress=False)
    assert [r["loss"] for r in nhwc.history] == pytest.approx([r["loss"] for r in base.history], rel=1e-4)
