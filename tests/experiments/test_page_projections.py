"""The SSL pages' projector folders (issue 15 part 6): ssl_zoo and emp_ssl at smoke scale write
book/generated/projections/<page>/ (relative to the working directory) and its zip, name the folder in
text["projection_dir"], and write nothing with projections=False."""

import math
import zipfile
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from PIL import Image  # noqa: E402

from patchnb.eval import load_projector  # noqa: E402
from patchnb.experiments import emp_ssl, ssl_zoo  # noqa: E402

from ..conftest import needs_fmnist  # noqa: E402


def _check_folder(folder: Path, n: int, dims: dict[str, int]):
    tensors, meta = load_projector(folder)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {k: (n, d) for k, d in dims.items()}
    assert list(meta.columns) == ["label", "split", "index"] and len(meta) == n
    assert set(meta["split"]) == {"test"} and meta["index"].tolist() == list(range(n))
    side = math.ceil(math.sqrt(n))
    assert Image.open(folder / "sprite.png").size == (side * 28, side * 28)  # Fashion-MNIST: 28 x 28
    assert "scale=smoke" in (folder / "README.txt").read_text()
    with zipfile.ZipFile(folder.with_name(folder.name + ".zip")) as z:
        assert f"{folder.name}/projector_config.pbtxt" in z.namelist()


@pytest.mark.slow
@needs_fmnist
def test_ssl_zoo_writes_the_best_encoders_projections(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATCHNB_GENERATED", raising=False)
    cfg = ssl_zoo.Config.preset("smoke")
    result = ssl_zoo.run(cfg)
    folder = Path(result.text["projection_dir"])
    assert folder == Path("book/generated/projections/ssl_zoo") and (tmp_path / folder).is_dir()
    _check_folder(tmp_path / folder, cfg.n_test, {result.text["best_ssl"]: 8 * cfg.width})
    off = ssl_zoo.run(cfg.replace(projections=False))
    assert "projection_dir" not in off.text and off.numbers == result.numbers


@pytest.mark.slow
@needs_fmnist
def test_emp_ssl_writes_both_encoders_projections(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PATCHNB_GENERATED", raising=False)
    cfg = emp_ssl.Config.preset("smoke", simclr_epochs=1)
    result = emp_ssl.run(cfg)
    folder = tmp_path / result.text["projection_dir"]
    assert folder == tmp_path / "book/generated/projections/emp_ssl"
    last = max(cfg.epochs)
    dim = cfg.methods()[0].hidden_dim  # EMP-SSL's evaluated layer: the pre_feature output, not the ResNet's
    _check_folder(folder, cfg.n_test, {"random_encoder": dim, f"emp_ssl_epoch{last}": dim})


def test_projections_must_be_a_bool():
    for module in (ssl_zoo, emp_ssl):
        with pytest.raises(ValueError, match="projections"):
            module.Config.preset("smoke", projections="yes")
