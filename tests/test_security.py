"""No code runs from a data or checkpoint file, and nothing is taken from a cache someone else could write.

Each loader is handed files whose pickle holds an object with a ``__reduce__`` that would create a
marker file when unpickled; every loader must refuse the file with a clear error naming it, and
the marker must not exist afterwards. The payload is first shown to work with a plain
``pickle.loads``, so the tests cannot pass because the payload is inert.
"""

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from patchnb import cache, data, train
from patchnb.checks import UnsafePathError

from .test_data import write_cifar

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this object runs code: it creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _torch_file(path, marker):
    """A torch.save zip archive whose pickle holds the payload among real weights."""
    torch.save({"model": {"w": torch.ones(2), "evil": Payload(marker)}, "epoch": 1}, path)


def _checksummed_file(path, marker):
    """The same, written by save_atomic: its checksum is valid (a checksum is no defence)."""
    train.save_atomic({"model": {"w": torch.ones(2)}, "state_dict": Payload(marker), "fingerprint": "x"}, path)


def _raw_pickle(path, marker):
    """A plain pickle (torch's legacy, non-zip format is read by the same unpickler)."""
    Path(path).write_bytes(pickle.dumps(Payload(marker), protocol=2))


MAKERS = [_torch_file, _checksummed_file, _raw_pickle]


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PWNED"


def test_the_payload_runs_code_when_unpickled_without_restriction(tmp_path, marker):
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("make", MAKERS)
def test_load_checkpoint_runs_no_code(tmp_path, marker, make):
    make(tmp_path / "evil.pt", marker)
    with pytest.raises(train.CheckpointError, match=r"evil\.pt .*(not loaded|could run code)"):
        train.load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:.*result.pt")
@pytest.mark.parametrize("which", ["last.pt", "previous.pt", "result.pt"])
def test_fit_resume_runs_no_code(tmp_path, marker, which):
    from .test_train import CFG, tiny_model

    splits = data.load_splits("synthetic", train_size=64, val_size=32, test_size=32)
    run = tmp_path / "run"
    run.mkdir()
    _checksummed_file(run / which, marker)
    with pytest.raises(train.CheckpointError, match=f"no good checkpoint .*{which} .*not loaded"):
        train.fit(tiny_model(), splits, train.TrainConfig(**CFG), run_dir=run, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("make", MAKERS)
def test_load_backbone_runs_no_code(tmp_path, marker, make):
    from patchnb.eval import load_backbone
    from patchnb.eval.features import BackboneError

    make(tmp_path / "evil.pt", marker)
    with pytest.raises(BackboneError, match=r"evil\.pt"):
        load_backbone(tmp_path / "evil.pt", torch.nn.Linear(2, 2))
    assert not marker.exists()


def test_imagenet_classifier_weights_run_no_code(tmp_path, marker):
    from patchnb.bias.geirhos import load_imagenet_classifier

    _torch_file(tmp_path / "evil.pth", marker)
    with pytest.raises(train.CheckpointError, match=r"evil\.pth .*not loaded"):
        load_imagenet_classifier("resnet18", tmp_path / "evil.pth")
    assert not marker.exists()


def test_run_cache_runs_no_code(tmp_cache, marker):
    def compute(run_dir):
        return {"acc": 0.5}

    folder = cache.runs_dir() / cache.run_key("evil", {"a": 1})
    folder.mkdir(parents=True)
    train.save_atomic({"value": Payload(marker)}, folder / "cached.pt")
    with pytest.warns(UserWarning, match=r"cached\.pt .*not loaded"):
        assert cache.cached("evil", {"a": 1}, compute) == {"acc": 0.5}  # reported, then recomputed
    assert not marker.exists()
    assert cache.cached("evil", {"a": 1}, lambda d: 1 / 0) == {"acc": 0.5}  # the recomputed value is stored


def test_sweep_checkpoints_cli_runs_no_code(tmp_path, marker):
    run = tmp_path / "run"
    run.mkdir()
    _torch_file(run / "epoch_001.pt", marker)
    _checksummed_file(run / "epoch_002.pt", marker)
    env = {**os.environ, "PATCHNB_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "patchnb", "sweep-checkpoints", str(run), "--dataset", "synthetic",
                          "--train-size", "64", "--val-size", "32", "--test-size", "32", "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "none of the 2 checkpoints" in out.stdout and "epoch_001.pt" in out.stdout + out.stderr
    assert not marker.exists()


def test_cifar_batch_with_code_is_refused(tmp_cache, marker):
    folder = write_cifar(tmp_cache / "data")
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": [1]}, protocol=4))
    with pytest.raises(data.DataError, match=r"data_batch_2 is not a CIFAR batch: .*builtins\.exec"):
        data.load_splits("cifar10")
    assert not marker.exists()


def test_cifar_object_arrays_are_refused(tmp_cache):
    folder = write_cifar(tmp_cache / "data")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.array([1, "x"], dtype=object), b"labels": [1]}))
    with pytest.raises(data.DataError, match=r"test_batch is not a CIFAR batch: .*Python objects"):
        data.load_cifar("cifar10", "test")


def test_checkpoints_hold_only_plain_values(tmp_path):
    """What fit writes loads with weights_only=True: RNG states and the result are plain."""
    from .test_train import CFG, tiny_model

    splits = data.load_splits("synthetic", train_size=64, val_size=32, test_size=32)
    train.fit(tiny_model(), splits, train.TrainConfig(**{**CFG, "epochs": 2}), run_dir=tmp_path, progress=False)
    for name in ("last.pt", "previous.pt", "result.pt"):
        torch.load(tmp_path / name, weights_only=True)  # raises on anything but tensors and plain containers
    assert isinstance(train.load_checkpoint(tmp_path / "result.pt")["result"], dict)


# ----------------------------------------------------------------------------- the compiled kernel


def _fresh_kernel_cache(tmp_cache, monkeypatch):
    from patchnb import embedding

    monkeypatch.setattr(embedding, "_LIB", None)
    monkeypatch.delenv("PATCHNB_KNN_BACKEND", raising=False)
    return embedding


def test_kernel_is_built_private_and_loads(tmp_cache, monkeypatch):
    embedding = _fresh_kernel_cache(tmp_cache, monkeypatch)
    if embedding._load_lib() is None:
        pytest.skip("no C compiler")
    (so,) = (tmp_cache / "cache" / "kernels").glob("knn-*.so")
    assert not so.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    assert not so.parent.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def test_kernel_writable_by_others_is_refused(tmp_cache, monkeypatch):
    embedding = _fresh_kernel_cache(tmp_cache, monkeypatch)
    if embedding._load_lib() is None:
        pytest.skip("no C compiler")
    (so,) = (tmp_cache / "cache" / "kernels").glob("knn-*.so")
    for mode in (0o775, 0o757):  # group-writable, then writable by anyone
        so.chmod(mode)
        monkeypatch.setattr(embedding, "_LIB", None)
        with pytest.raises(embedding.KernelError, match=r"knn-.*\.so .*writable by (group|others).*private"):
            embedding.knn_mask(torch.randn(1, 4, 2, 2), 1)
    so.chmod(0o755)
    monkeypatch.setattr(embedding, "_LIB", None)
    assert embedding.knn_mask(torch.randn(1, 4, 2, 2), 1).sum() == 4


def test_kernel_owned_by_someone_else_is_refused(tmp_cache, monkeypatch):
    """A cache (kernel folder and file included) of another uid is refused before the kernel is looked at."""
    embedding = _fresh_kernel_cache(tmp_cache, monkeypatch)
    if embedding._load_lib() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(embedding, "_LIB", None)
    monkeypatch.setattr(embedding.os, "getuid", lambda: os.stat(tmp_cache).st_uid + 1)
    with pytest.raises((embedding.KernelError, UnsafePathError), match=r"owned by uid"):
        embedding.knn_mask(torch.randn(1, 4, 2, 2), 1)


def test_kernels_folder_linked_elsewhere_is_refused_untouched(tmp_cache, monkeypatch):
    """A ``kernels/`` link to a folder anyone may write is neither chmod-ed nor written into."""
    embedding = _fresh_kernel_cache(tmp_cache, monkeypatch)
    shared = tmp_cache / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (data.cache_dir() / "kernels").symlink_to(shared)
    with pytest.raises(UnsafePathError, match=r"kernels is a symbolic link .*rm "):
        embedding._load_lib()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o777 and not any(shared.iterdir())


# ----------------------------------------------------------------------------- the cache folder


def _forge_run(name, config, value):
    """A result written into the cache as a run of ``name`` (valid checksum): what another user could forge."""
    folder = cache.runs_dir() / cache.run_key(name, config)
    folder.mkdir(parents=True, exist_ok=True)
    train.save_atomic({"value": value, "config": config, "seconds": 0.0}, folder / "cached.pt")
    return folder


@pytest.mark.parametrize("mode, who", [(0o777, "group and others"), (0o770, "group"), (0o757, "others")])
def test_a_cache_others_may_write_is_refused(tmp_cache, mode, who):
    _forge_run("acc", {"a": 1}, {"acc": 1.0})
    root = tmp_cache / "cache"
    root.chmod(mode)
    calls = []
    with pytest.raises(UnsafePathError, match=rf"PATCHNB_CACHE.*{root}.* writable by {who}.*chmod go-w {root}"):
        cache.cached("acc", {"a": 1}, lambda d: calls.append(d) or {"acc": 0.5})
    assert calls == []  # nothing ran, and the forged value was not returned
    root.chmod(0o700)
    assert cache.cached("acc", {"a": 1}, lambda d: 1 / 0) == {"acc": 1.0}  # nothing was lost either


def test_a_cache_of_another_user_is_refused(tmp_cache, monkeypatch):
    data.cache_dir()
    monkeypatch.setattr(os, "getuid", lambda: os.stat(tmp_cache / "cache").st_uid + 1)
    with pytest.raises(UnsafePathError, match=r"PATCHNB_CACHE.*owned by uid .*not by you.*PATCHNB_CACHE"):
        cache.cached("acc", {"a": 1}, lambda d: {"acc": 0.5})
    with pytest.raises(UnsafePathError, match=r"owned by uid"):
        data.channel_stats(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


def test_runs_on_a_cache_others_may_write_is_a_one_line_error(tmp_cache, capsys):
    from patchnb import cli

    data.cache_dir().chmod(0o777)
    assert cli.main(["runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "writable by" in err and "chmod go-w" in err, err


def test_a_folder_in_the_cache_of_another_user_is_refused(tmp_cache, monkeypatch):
    from patchnb import checks

    root = data.cache_dir()
    (root / "runs").mkdir()
    real = os.getuid()
    fstat = os.fstat
    monkeypatch.setattr(checks.os, "fstat", lambda fd: os.stat_result((*fstat(fd)[:4], real + 1, *fstat(fd)[5:])))
    with pytest.raises(UnsafePathError, match=r"runs inside the patchnb cache is owned by uid"):
        cache.runs_dir()


def test_a_cached_value_linked_to_another_run_is_refused(tmp_cache):
    other = _forge_run("other", {}, {"acc": 0.99})
    folder = cache.runs_dir() / cache.run_key("mine", {"a": 1})
    folder.mkdir()
    (folder / "cached.pt").symlink_to(other / "cached.pt")
    calls = []
    with pytest.raises(UnsafePathError, match=r"cached\.pt is a symbolic link .*rm "):
        cache.cached("mine", {"a": 1}, lambda d: calls.append(d) or {"acc": 0.5})
    assert calls == [] and (other / "cached.pt").is_file()


def test_a_run_folder_linked_outside_the_cache_is_refused(tmp_cache):
    outside = tmp_cache / "outside"
    outside.mkdir()
    (cache.runs_dir() / cache.run_key("mine", {})).symlink_to(outside)
    with pytest.raises(UnsafePathError, match=r"is a symbolic link"):
        cache.cached("mine", {}, lambda d: {"acc": 0.5})
    assert not any(outside.iterdir())  # no lock, no value written through the link


def test_clean_unlinks_a_linked_run_folder_and_leaves_its_target(tmp_cache, capsys):
    from patchnb import cli

    outside = tmp_cache / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    link = cache.runs_dir() / "patch_run-0123456789ab"
    link.symlink_to(outside)
    assert cli.main(["runs"]) == 0 and "(link to" in capsys.readouterr().out
    assert cli.main(["runs", "--clean"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 selected run(s) removed" in out and "the link only" in out, out
    assert not link.is_symlink() and not link.exists()
    assert sorted(p.name for p in outside.iterdir()) == ["precious.txt"]  # no .lock written through it


def test_the_normalisation_cache_follows_no_link(tmp_cache):
    outside = tmp_cache / "outside"
    outside.mkdir()
    (data.cache_dir() / "stats").symlink_to(outside)
    with pytest.raises(UnsafePathError, match=r"stats is a symbolic link"):
        data.channel_stats(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    assert not any(outside.iterdir())
