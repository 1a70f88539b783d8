"""Checkpoints that survive corruption (issue 13, part 3).

fit keeps the two newest good checkpoints (``last.pt``, ``previous.pt``), each with a checksum. A
truncated, bit-flipped or deleted ``last.pt`` is reported and the run resumes from ``previous.pt``,
exactly (same losses, same test score as an uninterrupted run); when no checkpoint is good it says
so and stops; a damaged ``result.pt`` is recomputed from ``last.pt``; a damaged run-cache entry is
reported and recomputed.
"""

import pytest
import torch

from patchnb import cache, checkpoint, data, train

from .test_train import CFG, Interrupt, Stopper, tiny_model

STEPS = 8  # steps per epoch of CFG on 256 training images


@pytest.fixture(scope="module")
def splits():
    return data.load_splits("synthetic", train_size=256, val_size=64, test_size=64)


@pytest.fixture(scope="module")
def uninterrupted(splits, tmp_path_factory):
    return train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path_factory.mktemp("full"),
                     progress=False)


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])


def bit_flip(path, where=0.5):
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0x10
    path.write_bytes(bytes(raw))


def delete(path):
    path.unlink()


DAMAGE = {"truncate": truncate, "bit-flip": bit_flip, "delete": delete}


def interrupted_run(splits, run_dir, epochs_done=2):
    """A run killed during epoch ``epochs_done`` (its checkpoints: epochs 0 .. epochs_done - 1)."""
    with pytest.raises(Interrupt):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), Stopper(after=epochs_done * STEPS + 3),
                  run_dir=run_dir, progress=False)
    return tuple(checkpoint.load_checkpoint(run_dir / name)["epoch"] if (run_dir / name).exists() else None
                 for name in ("last.pt", "previous.pt"))


def test_the_two_newest_checkpoints_are_kept_with_checksums(splits, tmp_path):
    assert interrupted_run(splits, tmp_path) == (1, 0)
    assert {p.name for p in tmp_path.iterdir()} >= {"last.pt", "previous.pt"}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert {checkpoint.checksum_status(tmp_path / name) for name in ("last.pt", "previous.pt")} == {"ok"}


def test_every_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoint.save_atomic({"w": torch.arange(64.0), "epoch": 3, "history": [{"loss": 0.5}]}, path)
    good = path.read_bytes()
    assert checkpoint.load_checkpoint(path, require_checksum=True)["epoch"] == 3
    for i in range(0, len(good), 7):  # every 7th byte, header, pickle, tensor data and the checksum
        bad = bytearray(good)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(checkpoint.CheckpointError, match="ck.pt"):
            checkpoint.load_checkpoint(path, require_checksum=True)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_last_resumes_from_previous_exactly(splits, tmp_path, uninterrupted, damage):
    interrupted_run(splits, tmp_path)
    previous = (tmp_path / "previous.pt").read_bytes()
    DAMAGE[damage](tmp_path / "last.pt")
    with pytest.warns(UserWarning, match=r"last\.pt .*resuming from .*previous\.pt \(after epoch 0\)"):
        resumed = train.fit(tiny_model(seed=5), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in uninterrupted.history]
    assert resumed.test["score"] == uninterrupted.test["score"]
    assert resumed.best_epoch == uninterrupted.best_epoch and resumed.val == uninterrupted.val
    assert (tmp_path / "previous.pt").read_bytes() != previous  # rotated by the good checkpoints written since


def test_a_damaged_last_never_replaces_the_good_previous(splits, tmp_path):
    interrupted_run(splits, tmp_path)
    previous = (tmp_path / "previous.pt").read_bytes()
    bit_flip(tmp_path / "last.pt")
    with pytest.warns(UserWarning, match="last.pt"), pytest.raises(Interrupt):  # dies again, after one epoch
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), Stopper(after=STEPS + 3), run_dir=tmp_path,
                  progress=False)
    assert (tmp_path / "previous.pt").read_bytes() == previous  # still the good epoch-0 file
    assert checkpoint.load_checkpoint(tmp_path / "last.pt", require_checksum=True)["epoch"] == 1  # rewritten, good


@pytest.mark.parametrize("damage", ["truncate", "bit-flip"])
def test_no_good_checkpoint_stops_with_a_clear_error(splits, tmp_path, damage):
    interrupted_run(splits, tmp_path)
    for name in ("last.pt", "previous.pt"):
        DAMAGE[damage](tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
    with pytest.raises(checkpoint.CheckpointError, match=r"no good checkpoint .*last\.pt .*previous\.pt .*Delete"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before  # nothing overwritten


def test_damaged_last_and_missing_previous_stops(splits, tmp_path):
    interrupted_run(splits, tmp_path)
    (tmp_path / "previous.pt").unlink()
    truncate(tmp_path / "last.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"no good checkpoint .*last\.pt is corrupt or truncated"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_result_is_recomputed_from_last(splits, tmp_path, uninterrupted, damage):
    first = train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)
    DAMAGE[damage](tmp_path / "result.pt")
    ctx = pytest.warns(UserWarning, match=r"result\.pt") if damage != "delete" else _no_warning()
    with ctx:  # no training step runs: the result is recomputed from last.pt (after the final epoch)
        again = train.fit(tiny_model(seed=4), splits, train.TrainConfig(**CFG), Stopper(after=0), run_dir=tmp_path,
                          progress=False)
    assert again.history == first.history and again.test["score"] == first.test["score"] == \
        uninterrupted.test["score"]
    assert torch.equal(again.test["predictions"], first.test["predictions"]) and again.run_id == first.run_id
    assert checkpoint.checksum_status(tmp_path / "result.pt") == "ok"  # rewritten


def test_early_stopped_run_is_not_trained_further_when_its_result_is_recomputed(splits, tmp_path):
    class Flat(train.Classification):
        def evaluate(self, *a, **k):
            return {**super().evaluate(*a, **k), "score": 0.5}

    cfg = train.TrainConfig(**{**CFG, "epochs": 10, "patience": 2})
    first = train.fit(tiny_model(), splits, cfg, Flat(), run_dir=tmp_path, progress=False)
    (tmp_path / "result.pt").unlink()

    class FlatStopper(Flat):
        def step(self, *a):
            raise Interrupt

        def __repr__(self):
            return repr(Flat())

    again = train.fit(tiny_model(), splits, cfg, FlatStopper(), run_dir=tmp_path, progress=False)
    assert len(again.history) == len(first.history) == 3 and again.test["score"] == first.test["score"]


def test_result_of_another_configuration_is_not_used(splits, tmp_path):
    train.fit(tiny_model(), splits, train.TrainConfig(**{**CFG, "epochs": 1}), run_dir=tmp_path, progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="another configuration"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)


def test_save_atomic_uses_a_temporary_file_of_its_own(tmp_path, monkeypatch):
    names = []
    real = checkpoint._temporary

    def spy(path):
        fd, name = real(path)
        names.append(name)
        return fd, name

    monkeypatch.setattr(checkpoint, "_temporary", spy)
    checkpoint.save_atomic({"a": 1}, tmp_path / "x.pt")
    checkpoint.save_atomic({"a": 2}, tmp_path / "x.pt")
    assert len(set(names)) == 2 and all(n.endswith(".tmp") and "/.x.pt." in n for n in names)
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    assert checkpoint.load_checkpoint(tmp_path / "x.pt") == {"a": 2}


def test_stale_temporary_files_are_removed_on_resume(splits, tmp_path):
    interrupted_run(splits, tmp_path, epochs_done=1)
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------- the run cache


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_entry_is_reported_and_recomputed(tmp_cache, damage):
    calls = []

    def compute(run_dir):
        calls.append(1)
        return {"acc": 0.75, "curve": torch.arange(100.0)}

    first = cache.cached("damaged", {"n": 1}, compute)
    (path,) = (tmp_cache / "cache" / "runs").glob("damaged-*/cached.pt")
    DAMAGE[damage](path)
    ctx = pytest.warns(UserWarning, match=r"cached\.pt") if damage != "delete" else _no_warning()
    with ctx:
        again = cache.cached("damaged", {"n": 1}, compute)
    assert len(calls) == 2 and again["acc"] == first["acc"] and torch.equal(again["curve"], first["curve"])
    assert cache.cached("damaged", {"n": 1}, compute)["acc"] == 0.75 and len(calls) == 2  # stored again


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


# ----------------------------------------------------------------------------- real kills

_RUN = """
import sys
import torch
torch.set_num_threads(1)
from patchnb import checkpoint, data, train
from tests.test_train import CFG, tiny_model
splits = data.load_splits("synthetic", train_size=256, val_size=64, test_size=64)
train.fit(tiny_model(), splits, train.TrainConfig(**{**CFG, "epochs": 30, "milestones": (20,)}), run_dir=sys.argv[1],
          progress=False)
"""


@pytest.mark.slow
def test_resume_after_kill_9_is_bit_identical(tmp_path):
    """SIGKILL a training process at random moments (mid-step, mid-save), resume each time; the final
    result.pt equals an uninterrupted run's, bit for bit."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATCHNB_CACHE": str(tmp_path / "cache")}
    run = lambda d: subprocess.Popen([sys.executable, "-c", _RUN, str(d)], cwd=root, env=env)  # noqa: E731
    assert run(tmp_path / "full").wait(timeout=600) == 0
    rng, kills = random.Random(0), 0
    for _ in range(4):
        proc = run(tmp_path / "killed")
        last = tmp_path / "killed" / "last.pt"
        seen = last.stat().st_mtime_ns if last.exists() else None
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:  # wait for one new checkpoint, then kill
            if last.exists() and last.stat().st_mtime_ns != seen:
                time.sleep(rng.uniform(0, 0.15))
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        kills += proc.wait() == -signal.SIGKILL
    assert kills >= 3 and not (tmp_path / "killed" / "result.pt").exists()
    assert run(tmp_path / "killed").wait(timeout=600) == 0
    full, killed = (checkpoint.load_checkpoint(tmp_path / d / "result.pt") for d in ("full", "killed"))
    strip = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "images_per_second", "run_dir", "run_id")}  # noqa: E731
    assert [h["loss"] for h in killed["result"]["history"]] == [h["loss"] for h in full["result"]["history"]]
    a, b = strip(full["result"]), strip(killed["result"])
    assert torch.equal(a["test"].pop("predictions"), b["test"].pop("predictions")) and a == b
    assert all(torch.equal(full["model"][k], killed["model"][k]) for k in full["model"])
