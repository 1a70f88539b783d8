"""Notebooks run once per test session at smoke scale, through the same cached execution as
`patchnb book` (so the smoke-book test reuses them)."""

import pytest

from patchnb.book import read_glued
from patchnb.build import execute_cached, state_dir

from ..conftest import ROOT


@pytest.fixture(scope="session")
def glued():
    """glued(name) -> the glued values of notebooks/<name>.ipynb executed at smoke scale."""
    done = {}

    def run(name: str) -> dict:
        if name not in done:
            execute_cached(name, "smoke", ROOT)
            done[name] = read_glued(state_dir(ROOT) / "smoke" / f"{name}.ipynb")
        return done[name]

    return run
