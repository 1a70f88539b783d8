"""patchnb.eval.projections: the TensorBoard projector folder (tensors.tsv, metadata.tsv, sprite.png,
projector_config.pbtxt), its zip, and agreement with SummaryWriter.add_embedding when tensorboard is here."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from patchnb.eval import load_projector, save_projector
from patchnb.eval import projections as proj

CLASSES = ("T-shirt/top", "Trouser", "Pullover")


def _points(n=10, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, generator=g)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 256, (n, 1, 6, 5), generator=g, dtype=torch.uint8)
    return feats, labels, images


def test_projector_folder(tmp_path):
    feats, labels, images = _points(10)
    folder = save_projector(tmp_path / "p", feats, labels, CLASSES, split="test", index=torch.arange(10) + 100,
                            images=images)
    for name in ("tensors.tsv", "metadata.tsv", "sprite.png", "projector_config.pbtxt"):
        assert (folder / name).is_file(), name
    # tensors.tsv: N rows of D tab-separated numbers, no header
    rows = (folder / "tensors.tsv").read_text().splitlines()
    assert len(rows) == 10 and all(len(r.split("\t")) == 4 for r in rows)
    assert np.allclose(np.loadtxt(folder / "tensors.tsv", delimiter="\t"), feats.numpy(), rtol=1e-6, atol=1e-7)
    # metadata.tsv: a header (more than one column) and one line per point
    meta = (folder / "metadata.tsv").read_text().splitlines()
    assert meta[0] == "label\tsplit\tindex" and len(meta) == 11
    assert meta[1] == "T-shirt/top\ttest\t100" and meta[2].startswith("Trouser\t")
    # the sprite: ceil(sqrt(10)) = 4 thumbnails per side, thumbnail i at row i // 4, column i % 4
    sprite = np.asarray(Image.open(folder / "sprite.png"))
    assert sprite.shape == (4 * 6, 4 * 5)
    for i in (0, 5, 9):
        r, c = divmod(i, 4)
        assert np.array_equal(sprite[r * 6:(r + 1) * 6, c * 5:(c + 1) * 5], images[i, 0].numpy()), i
    assert not sprite[2 * 6:, 2 * 5:].any()  # cells 10 .. 15 are empty (black)
    config = (folder / "projector_config.pbtxt").read_text()
    for line in ('tensor_path: "tensors.tsv"', 'metadata_path: "metadata.tsv"', 'image_path: "sprite.png"',
                 "tensor_shape: 10", "tensor_shape: 4", "single_image_dim: 5", "single_image_dim: 6"):
        assert line in config, line
    assert config.index("single_image_dim: 5") < config.index("single_image_dim: 6")  # [width, height]
    tensors, df = load_projector(folder)
    assert list(tensors) == ["embedding"] and torch.allclose(tensors["embedding"], feats, atol=1e-6)
    assert df.shape == (10, 3) and df["label"].tolist()[:3] == list(CLASSES) and df["index"].iloc[-1] == 109


def test_several_embeddings_share_metadata_and_rgb_sprite(tmp_path):
    feats, labels, _ = _points(5)
    images = torch.rand(5, 3, 4, 4)  # float images in [0, 1]
    folder = save_projector(tmp_path / "p", {"random": feats, "emp_ssl": feats[:, :2] * 2}, labels,
                            images=images, split=["train"] * 2 + ["test"] * 3)
    assert not (folder / "tensors.tsv").exists()
    tensors, df = load_projector(folder)
    assert set(tensors) == {"random", "emp_ssl"} and tensors["emp_ssl"].shape == (5, 2)
    assert df["label"].astype(str).tolist() == ["0", "1", "2", "0", "1"]  # no class names: the label numbers
    assert df["split"].tolist() == ["train", "train", "test", "test", "test"]
    sprite = Image.open(folder / "sprite.png")
    assert sprite.size == (3 * 4, 3 * 4) and sprite.mode == "RGB"
    assert (folder / "projector_config.pbtxt").read_text().count("embeddings {") == 2
    # writing again with one embedding replaces the old tensor files
    save_projector(folder, feats, labels)
    assert sorted(p.name for p in folder.glob("tensors*.tsv")) == ["tensors.tsv"]
    assert not (folder / "sprite.png").exists() and "sprite" not in (folder / "projector_config.pbtxt").read_text()


def test_sprite_fits_the_projector_limit():
    image, (w, h) = proj.sprite_image(torch.zeros(50, 1, 28, 28, dtype=torch.uint8), max_side=100)
    side = math.ceil(math.sqrt(50))  # 8 thumbnails per side, shrunk from 28 to 12 pixels
    assert (w, h) == (12, 12) and image.size == (side * 12, side * 12)


def test_zip_and_book_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("PATCHNB_GENERATED", raising=False)
    monkeypatch.chdir(tmp_path)  # the book folder is relative to the working directory (the repository root)
    feats, labels, images = _points(7)
    folder = proj.save_book_projector("ssl_zoo", feats, labels, CLASSES, images=images, description="ssl_zoo, smoke")
    assert folder == proj.BOOK_PROJECTIONS / "ssl_zoo" and (tmp_path / "book/generated/projections/ssl_zoo").is_dir()
    archive = tmp_path / "book/generated/projections/ssl_zoo.zip"
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["ssl_zoo/README.txt", "ssl_zoo/metadata.tsv", "ssl_zoo/projector_config.pbtxt",
                                        "ssl_zoo/sprite.png", "ssl_zoo/tensors.tsv"]
        assert z.read("ssl_zoo/README.txt") == b"ssl_zoo, smoke\n"
    first = archive.read_bytes()
    proj.zip_folder(folder)
    assert archive.read_bytes() == first  # same files, same archive
    with pytest.raises(ValueError, match="page"):
        proj.save_book_projector("../x", feats, labels)


def test_bad_inputs(tmp_path):
    feats, labels, images = _points(6)
    with pytest.raises(ValueError, match="feats"):
        save_projector(tmp_path, feats[0], labels)
    with pytest.raises(ValueError, match="labels"):
        save_projector(tmp_path, feats, labels[:5])
    with pytest.raises(ValueError, match="labels must index classes"):
        save_projector(tmp_path, feats, labels + 5, CLASSES)
    with pytest.raises(ValueError, match="split"):
        save_projector(tmp_path, feats, labels, split=["test"] * 5)
    with pytest.raises(ValueError, match="images"):
        save_projector(tmp_path, feats, labels, images=images[:3])
    with pytest.raises(ValueError, match="same points"):
        save_projector(tmp_path, {"a": feats, "b": feats[:4]}, labels)
    with pytest.raises(ValueError, match="NaN"):
        save_projector(tmp_path, feats * float("nan"), labels)


def test_agrees_with_summary_writer(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    feats, labels, _ = _points(9)
    images = torch.rand(9, 1, 6, 6)  # add_embedding's sprite assumes square images
    with SummaryWriter(tmp_path / "tb") as writer:
        writer.add_embedding(feats, metadata=[[CLASSES[i], "test", str(k)] for k, i in enumerate(labels.tolist())],
                             label_img=images, metadata_header=["label", "split", "index"])
    ours = save_projector(tmp_path / "ours", feats, labels, CLASSES, images=images)
    theirs = next(p.parent for p in (tmp_path / "tb").rglob("tensors.tsv"))
    assert np.allclose(np.loadtxt(theirs / "tensors.tsv", delimiter="\t"),
                       np.loadtxt(ours / "tensors.tsv", delimiter="\t"), atol=1e-6)
    assert (theirs / "metadata.tsv").read_text() == (ours / "metadata.tsv").read_text()
    sprite_theirs, sprite_ours = (np.asarray(Image.open(p / "sprite.png").convert("L")) for p in (theirs, ours))
    assert sprite_theirs.shape == sprite_ours.shape
    assert np.abs(sprite_theirs.astype(int) - sprite_ours.astype(int)).max() <= 1


def test_tensorboard_reads_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    feats, labels, images = _points(8)
    folder = save_projector(tmp_path / "p", {"a": feats, "b": feats[:, :3]}, labels, CLASSES, images=images)
    config = text_format.Parse((folder / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert [e.tensor_name for e in config.embeddings] == ["a", "b"]
    b = config.embeddings[1]
    assert (b.tensor_path, b.metadata_path, list(b.tensor_shape)) == ("tensors-b.tsv", "metadata.tsv", [8, 3])
    assert b.sprite.image_path == "sprite.png" and list(b.sprite.single_image_dim) == [5, 6]


def test_book_runs_write_downloads_beside_the_executed_notebook(tmp_path, monkeypatch):
    """Under patchnb run/book ($PATCHNB_GENERATED) the projector folder goes with the executed notebooks of
    its scale, never into the repository's book/ folder."""
    monkeypatch.setenv("PATCHNB_GENERATED", str(tmp_path / "executed" / "smoke" / "generated"))
    folder = proj.save_book_projector("ssl_zoo", torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    assert folder == tmp_path / "executed" / "smoke" / "generated" / "projections" / "ssl_zoo"
    assert (folder.parent / "ssl_zoo.zip").is_file()
