"""The package's layering (pyproject.toml, [tool.importlinter]) holds: `lint-imports` checks that each
module imports only from the layers below its own, that every module has a layer, and that no package's
modules import each other in a cycle."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str | None:
    found = Path(sys.executable).with_name("lint-imports")
    return str(found) if found.is_file() else shutil.which("lint-imports")


def test_import_contracts_hold():
    exe = _lint_imports()
    if exe is None:
        pytest.skip("import-linter is not installed (pip install import-linter, or the dev extra)")
    r = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (f"lint-imports found broken contracts (a new module needs a place in a layer of "
                               f"[tool.importlinter] in pyproject.toml):\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}")
    assert "0 broken" in r.stdout
