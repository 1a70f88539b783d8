import math

import pytest
import torch
from torch import nn

from patchnb import data, train


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
    with pytest.raises(train.CheckpointError, match="another configuration"):
        train.fit(tiny_model(), splits, train.TrainConfig(**{**CFG, "lr": 0.01}), run_dir=tmp_path, progress=False)
    good = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(train.CheckpointError, match="corrupt or truncated"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)


def test_save_atomic_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    train.save_atomic({"a": 1}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        train.save_atomic({"a": 2}, path)
    assert train.load_checkpoint(path) == {"a": 1}


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
            ck = train.load_checkpoint(run_dir / "last.pt")
            seen.append((epoch, row["epoch"], ck["epoch"], model.training, run_dir))

    class NoHook:  # a callback without on_epoch_end is allowed and ignored
        pass

    train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False,
              callbacks=[Recorder(), NoHook()])
    assert seen == [(e, e, e, True, tmp_path) for e in range(3)]
