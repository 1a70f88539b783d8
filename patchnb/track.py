"""Run records: always a local YAML file (config, code version, metrics, timings); wandb too when
wanted (``PATCHNB_WANDB=1`` or ``wandb=True``), offline unless WANDB_MODE says otherwise, with the runs
of one notebook in one wandb group. wandb is installed with patchnb but never required: asked for
without it, a warning says so once."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import yaml

_PKG = Path(__file__).resolve().parent


def _module_file(name: str) -> Path | None:
    """patchnb.a.b -> patchnb/a/b.py or patchnb/a/b/__init__.py (None outside the package)."""
    parts = name.split(".")
    if parts[0] != "patchnb":
        return None
    base = _PKG.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, module: str) -> set[str]:
    """patchnb modules imported by the source at ``path`` (absolute and relative imports)."""
    import ast

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from patchnb import data`
    return {m for m in found if m.split(".")[0] == "patchnb"}


def module_closure(modules) -> list[Path]:
    """Source files of ``modules`` and of every patchnb module they import, transitively
    (with their packages' ``__init__`` files)."""
    todo, seen = list(modules), {}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
            sub = ".".join(parts[:i])
            path = _module_file(sub)
            if path is not None and sub not in seen:
                seen[sub] = path
                todo.extend(_imports(path, sub))
    return sorted(set(seen.values()))


def code_version(modules=None) -> str:
    """Hash of the patchnb sources (what the code *is*), plus the git commit when available.

    Computed once per process and module set: a long-running kernel keeps the version of the code
    it imported, even if the files change on disk meanwhile.

    With ``modules`` (names such as ``"patchnb.cluster"``), only those modules and what they import,
    transitively, are hashed: an edit elsewhere in the package leaves the version unchanged, so
    cached runs and executed notebooks that do not use the edited code stay current. Non-Python
    sources shipped in the package (the C kernel) always count.
    """
    return _code_version(None if modules is None else frozenset(modules))


@functools.cache
def _code_version(modules: frozenset | None) -> str:
    files = module_closure(modules) if modules is not None else sorted(_PKG.rglob("*.py"))
    files = files + sorted(p for p in _PKG.rglob("*") if p.suffix in (".c", ".h"))
    h = hashlib.sha1()
    for path in files:
        h.update(path.relative_to(_PKG).as_posix().encode())
        h.update(path.read_bytes())
    version = h.hexdigest()[:12]
    try:
        commit = subprocess.run(["git", "-C", str(_PKG), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+git.{commit}" if commit else version


def notebook_modules(source: str) -> set[str]:
    """patchnb modules a notebook's code cells import (``from patchnb import x``, ``import patchnb.x``)."""
    import json

    found = set()
    for cell in json.loads(source).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        code = "".join(cell.get("source", []))
        for line in code.splitlines():
            words = line.replace(",", " ").split()
            if line.startswith("from patchnb") and "import" in words:
                base = words[1]
                found.add(base)
                found |= {f"{base}.{w}" for w in words[words.index("import") + 1:] if w.isidentifier()}
            elif line.startswith("import patchnb"):
                found.add(words[1])
    return found or {"patchnb"}


def _plain(value):
    """Convert tensors, numpy scalars, paths and tuples to YAML-safe builtins."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def wandb_wanted(flag: bool | None = None) -> bool:
    """Whether runs log to wandb: ``flag``, else ``PATCHNB_WANDB=1``. Asked for without wandb installed,
    it warns once and the run keeps its local record only."""
    if flag is None:
        flag = os.environ.get("PATCHNB_WANDB", "0") not in ("", "0", "false", "False")
    if not flag:
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        _warn_once("wandb logging was asked for (PATCHNB_WANDB=1 or wandb=True) but wandb is not installed: "
                   "`pip install wandb`; runs are recorded in record.yaml only")
        return False
    return True


def wandb_group() -> str | None:
    """The wandb group of this process's runs: ``$PATCHNB_WANDB_GROUP``, else the notebook being executed
    (``patchnb run|book`` set ``$PATCHNB_NOTEBOOK``), so the runs of one notebook share a group."""
    return os.environ.get("PATCHNB_WANDB_GROUP") or os.environ.get("PATCHNB_NOTEBOOK") or None


class Run:
    """One run's record. ``log`` metrics as you go; ``finish`` writes ``record.yaml`` atomically.

    The record is also rewritten on every ``log`` so an interrupted run keeps what it measured.
    """

    def __init__(self, name: str, config: dict, directory: str | Path | None = None,
                 wandb: bool | None = None, project: str = "patchnb", run_id: str | None = None):
        self.name = name
        self.config = _plain(config)
        self.dir = Path(directory) if directory else None
        self.id = run_id or uuid.uuid4().hex[:8]
        self.history: list[dict] = []
        self.summary: dict = {}
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()
        self._wandb = None
        if wandb_wanted(wandb):
            import wandb as wb

            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            self._wandb = wb.init(project=project, name=name, id=self.id, config=self.config, resume="allow",
                                  group=wandb_group(), dir=str(self.dir) if self.dir else None, reinit=True)

    def log(self, metrics: dict, step: int | None = None) -> None:
        row = _plain(dict(metrics))
        if step is not None:
            row["step"] = step
        self.history.append(row)
        if self._wandb is not None:
            self._wandb.log(row, step=step)
        self.write()

    def record(self) -> dict:
        return {
            "name": self.name, "id": self.id, "code_version": code_version(), "started": self.started,
            "wall_seconds": round(time.perf_counter() - self._t0, 3),
            "host": {"machine": platform.machine(), "node": socket.gethostname(), "cpus": os.cpu_count()},
            "config": self.config, "summary": _plain(self.summary), "history": self.history,
        }

    def write(self) -> None:
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".record.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(yaml.safe_dump(self.record(), sort_keys=False))
        os.replace(tmp, self.dir / "record.yaml")

    def finish(self, **summary) -> dict:
        self.summary.update(summary)
        self.write()
        if self._wandb is not None:
            self._wandb.summary.update(_plain(self.summary))
            self._wandb.finish()
            self._wandb = None
        return self.record()


def load_record(directory: str | Path) -> dict:
    path = Path(directory) / "record.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no run record at {path}")
    return yaml.safe_load(path.read_text())
