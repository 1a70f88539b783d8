"""No code runs from a data or checkpoint file (issue 13, part 1).

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
    embedding = _fresh_kernel_cache(tmp_cache, monkeypatch)
    if embedding._load_lib() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(embedding, "_LIB", None)
    monkeypatch.setattr(embedding.os, "getuid", lambda: os.stat(tmp_cache).st_uid + 1)
    with pytest.raises(embedding.KernelError, match=r"owned by uid"):
        embedding.knn_mask(torch.randn(1, 4, 2, 2), 1)
