"""What notebooks call: scale presets, parameter checks, cached runs and glued results.

Numbers in the book come from here: notebooks compute them, ``glue_text`` records them as
pre-formatted strings (myst-nb ``glue``, ``display=False``), and pages cite them with
``{glue:text}``. Expensive runs go through :func:`cached` ("load if cached, else run"), keyed by a
hash of their config and the package's code version, so a dead kernel or a rebuild loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .data import cache_dir, check_choice
from .track import code_version
from .train import load_checkpoint, save_atomic

SCALES = ("smoke", "cpu", "paper")


def check_params(**params) -> None:
    """Validate notebook parameters: ``scale`` in SCALES, ``seeds`` a non-empty list of ints,
    ``device`` a string; anything else is checked by the functions that use it."""
    if "scale" in params:
        check_choice("scale", params["scale"], SCALES)
    if "seeds" in params:
        seeds = params["seeds"]
        if not isinstance(seeds, (list, tuple)) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    if "device" in params and not isinstance(params["device"], str):
        raise ValueError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {params['device']!r}")


def batch_mode() -> bool:
    """True when a notebook runs unattended (papermill via ``patchnb run|book``, or the tests):
    interactive widgets then stay inert so the executed page reads as a static essay."""
    import os

    return os.environ.get("PATCHNB_BATCH", "0") == "1"


def preset(scale: str, **by_scale):
    """The value of a parameter at ``scale``: ``preset(scale, smoke=2000, cpu=54000, paper=None)``."""
    check_choice("scale", scale, SCALES)
    missing = [s for s in SCALES if s not in by_scale]
    if missing:
        raise ValueError(f"preset() needs a value for every scale; missing {missing}")
    return by_scale[scale]


def run_key(name: str, config: dict, modules=None) -> str:
    """Folder name of a cached run: its name, config and the version of the patchnb code it can use:
    ``modules`` and what they import, or, without ``modules``, every patchnb module loaded in this
    process."""
    import sys

    if modules is None:
        modules = sorted(m for m in sys.modules if m == "patchnb" or m.startswith("patchnb."))
    blob = json.dumps({"name": name, "config": config, "code": code_version(modules).split("+")[0]},
                      sort_keys=True, default=repr)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def runs_dir() -> Path:
    path = cache_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached(name: str, config: dict, fn, refresh: bool = False):
    """Return ``fn(run_dir)``'s result, computed once per (name, config, code version).

    The key covers the code ``fn`` can run: its module's import closure when ``fn`` is defined in
    patchnb, else every loaded patchnb module. ``fn`` receives its own run folder (for checkpoints,
    so an interrupted run resumes) and returns any picklable object; it is stored atomically as
    ``cached.pt`` with its wall-clock.
    """
    home = getattr(fn, "__module__", None) or ""
    # a function defined in patchnb is keyed by its own module's import closure, so a run is shared by
    # every notebook that asks for it, whatever else each notebook imported
    modules = [home] if home == "patchnb" or home.startswith("patchnb.") else None
    folder = runs_dir() / run_key(name, config, modules)
    path = folder / "cached.pt"
    if path.is_file() and not refresh:
        return load_checkpoint(path)["value"]
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    value = fn(folder)
    save_atomic({"value": value, "config": config, "seconds": time.perf_counter() - t0}, path)
    return value


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """Format mean ± std (as percentages by default): ``"91.2 ± 0.3"``."""
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def glue_text(name: str, value) -> str:
    """Glue ``value`` as text (a pre-formatted string) without displaying it; returns the string."""
    text = value if isinstance(value, str) else (f"{value:g}" if isinstance(value, float) else str(value))
    _glue(name, text)
    return text


def glue_figure(name: str, fig, path: str | Path | None = None) -> None:
    """Glue a matplotlib figure (for ``{glue:figure}`` on this page) and optionally save it as an
    image file (cross-page glue only works for text: other pages include the file)."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    _glue(name, fig)


def glue_table(name: str, frame) -> None:
    """Glue a pandas DataFrame (rendered as an HTML table with ``{glue:}``)."""
    _glue(name, frame)


def _glue(name, value) -> None:
    try:
        from myst_nb import glue
    except ImportError:  # outside the book toolchain: nothing to record
        return
    glue(name, value, display=False)


def read_glued(notebook: str | Path) -> dict[str, str]:
    """The text/plain of every glued value in an executed notebook (for tests and the CLI)."""
    nb = json.loads(Path(notebook).read_text())
    out = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook", {})
            if "name" in meta:
                text = o.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain", "")
                text = "".join(text) if isinstance(text, list) else text
                out[meta["name"]] = text[1:-1] if len(text) > 1 and text[0] == text[-1] == "'" else text
    return out
