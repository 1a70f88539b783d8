import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests never touch the user's cache, executed notebooks or built book (.patchnb/, book/nb/, _build/):
# everything they make lives under .test-build/. Notebooks executed by the tests inherit this too.
TEST_BUILD = ROOT / ".test-build"
os.environ.setdefault("PATCHNB_CACHE", str(TEST_BUILD / "cache"))
os.environ.setdefault("PATCHNB_EXECUTED", str(TEST_BUILD / "executed"))
os.environ.setdefault("PATCHNB_GENERATED", str(TEST_BUILD / "generated"))  # pages' downloads written by recipes
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty patchnb cache and data path for one test."""
    monkeypatch.setenv("PATCHNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATCHNB_DATA", str(tmp_path / "data"))
    return tmp_path


def have_fashion_mnist() -> bool:
    from patchnb.data import find_fashion_mnist

    return find_fashion_mnist() is not None


needs_fmnist = pytest.mark.skipif(not have_fashion_mnist(), reason="real Fashion-MNIST files not present")
