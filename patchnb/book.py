"""What notebooks call around a recipe: batch mode and glued results.

Numbers in the book come from executed code: a notebook runs one recipe of
:mod:`patchnb.experiments`, and ``glue_text`` / ``glue_table`` / ``glue_figure`` record its numbers,
tables and figures (myst-nb ``glue``) for the page's prose to cite with ``{glue:text}``. Under
``patchnb run|book`` (``PATCHNB_BATCH=1``) glued values are only recorded; in JupyterLab they are
also displayed, so a notebook run top to bottom shows its figures and tables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def batch_mode() -> bool:
    """True when a notebook runs unattended (papermill via ``patchnb run|book``, or the tests):
    interactive widgets then stay inert so the executed page reads as a static essay."""
    return os.environ.get("PATCHNB_BATCH", "0") == "1"


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """Format mean ± std (as percentages by default): ``"91.2 ± 0.3"``."""
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def glue_text(name: str, value) -> str:
    """Glue ``value`` as text (a pre-formatted string); returns the string. Text is never displayed
    by itself (the prose shows it)."""
    text = value if isinstance(value, str) else (f"{value:g}" if isinstance(value, float) else str(value))
    try:
        from myst_nb import glue
    except ImportError:
        return text
    glue(name, text, display=False)
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
    glue(name, value, display=not batch_mode())


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
