"""patchnb.data on tiny files written in each real on-disk format, plus the real Fashion-MNIST."""

import gzip
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from patchnb import data, datasets

from .conftest import needs_fmnist


def write_fmnist(folder, n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        img_name, lab_name = datasets._FMNIST_FILES[split]
        data.write_idx(folder / img_name, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        data.write_idx(folder / lab_name, np.arange(n, dtype=np.uint8) % 10)


class Py2Pickler(pickle._Pickler):
    """Writes pickles as Python 2's cPickle wrote the CIFAR python batches (protocol 2): every string
    (bytes, and the str inside numpy's dtype state) as a Python 2 ``str`` (SHORT_BINSTRING or
    BINSTRING), numpy's array rebuilder under its numpy 1 name ``numpy.core.multiarray._reconstruct``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("ascii") if isinstance(obj, str) else obj
        n = len(raw)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + n.to_bytes(4, "little"))
                   + raw)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is np.ndarray.__reduce__(np.zeros(1))[0]:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_pickle(obj) -> bytes:
    import io

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_cifar(root, name="cifar10", per_batch=8, labels=None):
    """Tiny CIFAR batches in the real format: a dict with b'data' (uint8 (N, 3072) array), the labels
    (a list of ints), b'filenames' and b'batch_label', pickled as Python 2 did."""
    rng = np.random.default_rng(0)
    folder_name, train_files, test_files, meta, label_key, names_key = datasets._CIFAR[name]
    folder = root / folder_name
    folder.mkdir(parents=True)
    n_classes = 10 if name == "cifar10" else 100
    for f in train_files + test_files:
        d = {b"batch_label": f"batch {f}".encode(), b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
             label_key: labels or rng.integers(0, n_classes, per_batch).tolist(),
             b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        (folder / f).write_bytes(py2_pickle(d))
    (folder / meta).write_bytes(py2_pickle({names_key: [f"c{i}".encode() for i in range(n_classes)],
                                            b"num_vis": 3072}))
    return folder


def test_idx_round_trip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data.write_idx(tmp_path / "x.gz", a)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x.gz"), a)


def test_fashion_mnist_format_and_torchvision_layout(tmp_cache):
    write_fmnist(tmp_cache / "data" / "FashionMNIST" / "raw")
    s = data.load_splits("fashion_mnist", val_fraction=0.2)
    assert (len(s.train), len(s.val), len(s.test)) == (24, 6, 10)
    assert s.train.images.dtype == torch.uint8 and s.shape == (1, 28, 28)
    assert s.classes[0] == "T-shirt/top"
    # the validation split is held out of train, deterministic, and disjoint from it
    s2 = data.load_splits("fashion_mnist", val_fraction=0.2)
    assert torch.equal(s.val.images, s2.val.images)
    train_rows = {bytes(x.numpy()) for x in s.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in s.val.images)


def test_truncated_and_corrupt_idx_give_clear_errors(tmp_cache):
    folder = tmp_cache / "data" / "fashion-mnist"
    write_fmnist(folder)
    path = folder / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])  # valid gzip, truncated content
    with pytest.raises(data.DataError, match="truncated"):
        data.load_splits("fashion_mnist")
    path.write_bytes(path.read_bytes()[:40])  # truncated gzip stream
    with pytest.raises(data.DataError, match="corrupt or truncated"):
        data.load_splits("fashion_mnist")


def test_missing_data_names_the_fetch_command(tmp_cache, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_cache / "nowhere")
    with pytest.raises(data.DataError, match="patchnb data fashion_mnist"):
        data.load_splits("fashion_mnist")
    with pytest.raises(data.DataError, match="patchnb data cifar10"):
        data.load_splits("cifar10")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickle_format(tmp_cache, name):
    write_cifar(tmp_cache / "data", name)
    s = data.load_splits(name, val_fraction=0.25)
    n_train = 40 if name == "cifar10" else 8
    assert len(s.train) + len(s.val) == n_train and len(s.test) == 8
    assert s.shape == (3, 32, 32) and len(s.classes) == (10 if name == "cifar10" else 100)
    assert len(s.norm.mean) == 3


def test_corrupt_cifar_pickle(tmp_cache):
    folder = write_cifar(tmp_cache / "data")
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(data.DataError, match="data_batch_3"):
        data.load_splits("cifar10")


def test_cifar_writer_matches_the_real_files():
    """The test batches carry the opcodes and the only globals of the real Python 2 files."""
    import pickletools

    raw = py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"filenames": [b"a.png"]})
    assert raw.startswith(b"\x80\x02}q\x00(U\x04data")
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    assert {arg for name, arg in ops if name == "GLOBAL"} == {"numpy.core.multiarray _reconstruct", "numpy ndarray",
                                                              "numpy dtype"}
    assert {name for name, _ in ops} <= {"PROTO", "EMPTY_DICT", "BINPUT", "MARK", "SHORT_BINSTRING", "BINSTRING",
                                         "GLOBAL", "BININT1", "BININT2", "BININT", "TUPLE1", "TUPLE2", "TUPLE3",
                                         "TUPLE", "REDUCE", "NEWFALSE", "NEWTRUE", "NONE", "BUILD", "EMPTY_LIST",
                                         "APPEND", "APPENDS", "SETITEMS", "BINGET", "STOP"}
    assert ("BINSTRING", "\0" * 6144) in ops  # the pixels: one Python 2 str


def test_cifar_labels_out_of_range(tmp_cache):
    write_cifar(tmp_cache / "data", labels=[0, 1, 2, 3, 4, 5, 6, 55])
    with pytest.raises(data.DataError, match=r"labels in 0\.\.55 .* 10 classes"):
        data.load_splits("cifar10")


def test_cifar_batch_without_data_entry(tmp_cache):
    folder = write_cifar(tmp_cache / "data")
    (folder / "data_batch_2").write_bytes(py2_pickle({b"labels": [1]}))
    with pytest.raises(data.DataError, match=r"data_batch_2 .*no b'data' entry"):
        data.load_splits("cifar10")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_pickled_by_python3_numpy_load(tmp_cache, protocol):
    """A batch re-saved by Python 3 (numpy >= 2 names, protocol 5 buffers) is still a CIFAR batch."""
    folder = write_cifar(tmp_cache / "data")
    images = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    d = {b"data": images, b"labels": [np.int64(3), 4]}
    if protocol == 2:  # Python 3's protocol 2 spells bytes as _codecs.encode(...): not a CIFAR file
        with pytest.raises(data.DataError, match="_codecs.encode"):
            (folder / "test_batch").write_bytes(pickle.dumps(d, protocol=2))
            data.load_cifar("cifar10", "test")
        return
    (folder / "test_batch").write_bytes(pickle.dumps(d, protocol=protocol))
    test = data.load_cifar("cifar10", "test")
    assert torch.equal(test.images.reshape(2, -1), torch.from_numpy(images)) and test.labels.tolist() == [3, 4]


def _write_tree(root, classes=("cat", "dog"), n=4, size=(12, 10), mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = size[::-1] + ((3,) if mode == "RGB" else ())
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / c / f"{i}.png")


def test_image_folder_single_tree_and_resize(tmp_path):
    _write_tree(tmp_path / "tree", n=10)
    s = data.load_splits("imagefolder", root=tmp_path / "tree", image_size=8, val_fraction=0.25,
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert s.classes == ("cat", "dog") and s.shape == (3, 8, 8)
    assert len(s.train) + len(s.val) + len(s.test) == 20
    assert s.norm.mean == (0.5, 0.5, 0.5)  # user-supplied statistics are used as given


def test_image_folder_train_val_test_subfolders(tmp_path):
    for split in ("train", "val", "test"):
        _write_tree(tmp_path / split, n=3, mode="L")
    s = data.load_splits("imagefolder", root=tmp_path)
    assert (len(s.train), len(s.val), len(s.test)) == (6, 6, 6) and s.shape == (1, 10, 12)


def test_image_folder_bad_trees(tmp_path):
    _write_tree(tmp_path / "one", classes=("only",))
    with pytest.raises(data.DataError, match="at least two class folders"):
        data.load_splits("imagefolder", root=tmp_path / "one")
    _write_tree(tmp_path / "empty")
    (tmp_path / "empty" / "void").mkdir()
    with pytest.raises(data.DataError, match="holds no images"):
        data.load_splits("imagefolder", root=tmp_path / "empty")
    _write_tree(tmp_path / "bad")
    (tmp_path / "bad" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match="broken.png"):
        data.load_splits("imagefolder", root=tmp_path / "bad")


def test_bad_parameters():
    with pytest.raises(ValueError, match="dataset='mnist'.*allowed values"):
        data.load_splits("mnist")
    with pytest.raises(ValueError, match="val_fraction"):
        data.load_splits("synthetic", val_fraction=1.5)
    with pytest.raises(ValueError, match="both mean and std"):
        data.load_splits("synthetic", mean=(0.5,))
    with pytest.raises(ValueError, match="std > 0"):
        data.Normalization((0.5,), (0.0,))


def test_stats_cached_and_normalization_round_trip(tmp_cache):
    s = data.load_splits("synthetic")
    x = s.norm(s.train.images)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3  # stats computed on train
    assert len(list((tmp_cache / "cache" / "stats").glob("*.json"))) == 1
    assert torch.allclose(s.norm.invert(x) * 255, s.train.images.float(), atol=1e-3)


def _stats_file(tmp_cache):
    (path,) = (tmp_cache / "cache" / "stats").glob("*.json")
    return path


def test_stats_are_written_atomically_with_a_checksum(tmp_cache):
    images = data.make_synthetic(50).images
    norm = data.channel_stats(images)
    path = _stats_file(tmp_cache)
    stored = json.loads(path.read_text())
    assert stored["mean"] == list(norm.mean) and len(stored["sha256"]) == 64
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    assert data.channel_stats(images) == norm


@pytest.mark.parametrize("damage, why", [
    (lambda t: t[: len(t) // 2], "JSONDecodeError"),                                   # truncated
    (lambda t: t.replace('"mean": [0.', '"mean": [9.'), "ValueError: its checksum does not match"),  # tampered
    (lambda t: "[1, 2]", "TypeError|AttributeError"),                                   # not a record
])
def test_damaged_stats_are_reported_and_recomputed(tmp_cache, damage, why):
    images = data.make_synthetic(50).images
    norm = data.channel_stats(images)
    path = _stats_file(tmp_cache)
    path.write_text(damage(path.read_text()))
    with pytest.warns(UserWarning, match=rf"normalisation statistics .*{path.name} are damaged \(({why})"):
        assert data.channel_stats(images) == norm
    assert data.channel_stats(images) == norm and json.loads(path.read_text())["mean"] == list(norm.mean)


def test_stats_without_a_checksum_are_recomputed(tmp_cache, recwarn):
    images = data.make_synthetic(50).images
    norm = data.channel_stats(images)
    path = _stats_file(tmp_cache)
    path.write_text(json.dumps({"mean": [0.9], "std": [0.1]}))  # the format before checksums, not trusted
    assert data.channel_stats(images) == norm and not recwarn.list
    assert "sha256" in json.loads(path.read_text())


def test_random_crop_flip_is_a_shifted_window():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    y = data.random_crop_flip(x, pad=2, flip=False, generator=g)
    assert y.shape == x.shape
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):  # every output is some 6x6 window of the padded input
        assert any(torch.equal(y[b], xp[b, :, i:i + 6, j:j + 6]) for i in range(5) for j in range(5))
    z = data.random_crop_flip(x, pad=0, flip=True, generator=g)
    for b in range(2):
        assert torch.equal(z[b], x[b]) or torch.equal(z[b], x[b].flip(2))


@needs_fmnist
def test_real_fashion_mnist():
    s = data.load_splits("fashion_mnist")
    assert (len(s.train), len(s.val), len(s.test)) == (54000, 6000, 10000)
    assert torch.bincount(s.test.labels).tolist() == [1000] * 10
    assert 0.27 < s.norm.mean[0] < 0.30 and 0.34 < s.norm.std[0] < 0.37


def test_download_uses_torchvision_layout(tmp_cache, monkeypatch):
    """`patchnb data fashion_mnist` without apt: torchvision writes root/FashionMNIST/raw/*.gz."""
    import torchvision

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root, train, download):
            calls.append((train, download))
            write_fmnist(root / "FashionMNIST" / "raw")

    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_cache / "nowhere")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    path = data.download("fashion_mnist")
    assert calls == [(True, True), (False, True)] and path.name == "raw"
    assert len(data.load_splits("fashion_mnist").test) == 10
    with pytest.raises(ValueError, match="dataset='imagefolder'"):
        data.download("imagefolder")


def test_image_folder_val_classes_must_match(tmp_path):
    for split in ("train", "test"):
        _write_tree(tmp_path / split, n=2, mode="L")
    _write_tree(tmp_path / "val", classes=("cat", "cow"), n=2, mode="L")
    with pytest.raises(data.DataError, match="different class folders"):
        data.load_splits("imagefolder", root=tmp_path)


def test_random_crop_pads_black_as_torchvision(monkeypatch):
    """Issue 12 §3.4: torchvision's RandomCrop(padding=4) pads with 0 (black) before Normalize, so a
    normalised batch has borders -mean/std, not the mean. Same offsets -> same crops as torchvision."""
    from torchvision import transforms

    g = torch.Generator().manual_seed(0)
    x = torch.full((3, 1, 6, 6), 200, dtype=torch.uint8)
    x[1] = torch.arange(36, dtype=torch.uint8).view(1, 6, 6)
    ours = data.random_crop_flip(x, pad=4, flip=False, generator=g)
    g.manual_seed(0)
    dy, dx = torch.randint(0, 9, (3,), generator=g), torch.randint(0, 9, (3,), generator=g)
    for b in range(3):
        monkeypatch.setattr(transforms.RandomCrop, "get_params",
                            staticmethod(lambda img, size, b=b: (int(dy[b]), int(dx[b]), 6, 6)))
        assert torch.equal(ours[b], transforms.RandomCrop(6, padding=4)(x[b])), b
    # a hand case: offset (0, 0) of a constant 200 image keeps a 2x2 corner of it, the rest is black
    monkeypatch.setattr(torch, "randint", lambda low, high, size, generator=None: torch.zeros(size, dtype=torch.long))
    corner = data.random_crop_flip(x[:1], pad=4, flip=False)[0, 0]
    assert corner[4:, 4:].eq(200).all() and corner[:4].eq(0).all() and corner[:, :4].eq(0).all()
    norm = data.Normalization((0.25,), (0.5,))
    assert torch.allclose(norm.black(), torch.tensor([-0.5]))
    z = data.random_crop_flip(norm(x[:1]), pad=4, flip=False, fill=norm.black())[0, 0]
    assert torch.allclose(z, norm(corner[None, None])[0, 0])  # crop-then-normalise == normalise-then-crop(black)
    with pytest.raises(ValueError, match="fill"):
        data.random_crop_flip(x, pad=1, fill=torch.zeros(2))
