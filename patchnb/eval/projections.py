"""Saved projections: embeddings with their labels, for a look in the TensorBoard Embedding Projector
(the seed system's format, as ``torch.utils.tensorboard.SummaryWriter.add_embedding`` writes it) or as a
table (patchwork's ``save_projections``, jg10545/patchwork: parquet or CSV).

The projector folder (:func:`save_projector`) holds, written directly (TensorBoard is not needed):

* ``tensors.tsv``: one row per point, its ``D`` coordinates separated by tabs, no header (with several
  embeddings of the same points, one ``tensors-<name>.tsv`` each);
* ``metadata.tsv``: a header line ``label<TAB>split<TAB>index`` and one line per point (the class name,
  the split and the point's index in that split). The projector reads a header only when the file has
  more than one column;
* ``sprite.png`` (when images are given): the images as thumbnails in a square grid of
  ``ceil(sqrt(N))`` thumbnails per side, row by row from the top left, the rest black; the projector
  accepts sprites up to 8192 x 8192 pixels, so thumbnails are shrunk when the grid would be larger;
* ``projector_config.pbtxt``: a ``ProjectorConfig`` message in protobuf text format with one
  ``embeddings`` entry per tensor file (``tensor_name``, ``tensor_path``, ``tensor_shape``,
  ``metadata_path`` and ``sprite { image_path single_image_dim }`` with ``[width, height]``). Its paths
  are relative; TensorBoard resolves them against the folder of the config file, and with no event
  files it takes the ``--logdir`` folder itself as the run, so ``tensorboard --logdir <folder>`` shows it
  under "Projector".

:func:`zip_folder` packs such a folder for a download link; projector.tensorflow.org's "Load" reads
the ``tensors.tsv`` and ``metadata.tsv`` of the unpacked folder.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch


def has_parquet() -> bool:
    """Whether pandas can write parquet here (pyarrow or fastparquet installed)."""
    for mod in ("pyarrow", "fastparquet"):
        try:
            __import__(mod)
            return True
        except ImportError:
            pass
    return False


def projections_frame(feats: torch.Tensor, labels: torch.Tensor, split: str | Sequence[str] = "test",
                      classes: Sequence[str] | None = None):
    """A pandas DataFrame: ``split``, ``label``, ``class`` and one column ``z0 ... z{D-1}`` per feature."""
    import pandas as pd  # a heavy import, needed only when a table is written or read

    feats = torch.as_tensor(feats).float()
    labels = torch.as_tensor(labels).long()
    if feats.ndim != 2 or len(feats) != len(labels):
        raise ValueError(f"feats must be (N, D) and labels (N,), got {tuple(feats.shape)} and {tuple(labels.shape)}")
    split_col = [split] * len(labels) if isinstance(split, str) else list(split)
    if len(split_col) != len(labels):
        raise ValueError(f"split must be a string or one entry per row, got {len(split_col)} for {len(labels)} rows")
    df = pd.DataFrame(feats.numpy(), columns=[f"z{i}" for i in range(feats.shape[1])])
    df.insert(0, "split", split_col)
    df.insert(1, "label", labels.numpy())
    if classes is not None:
        df.insert(2, "class", [classes[i] for i in labels.tolist()])
    return df


def save_projections(path: str | Path, feats: torch.Tensor, labels: torch.Tensor, split: str | Sequence[str] = "test",
                     classes: Sequence[str] | None = None) -> Path:
    """Write embeddings + labels + split (patchwork's ``save_projections``) to ``path``: parquet when the
    suffix is ``.parquet`` and pyarrow/fastparquet is installed, else CSV (a ``.parquet`` request falls back
    to ``.csv`` with a warning). Returns the path written; read it back with :func:`load_projections`
    (``pandas.read_csv`` / ``pandas.read_parquet``)."""
    path = Path(path)
    df = projections_frame(feats, labels, split, classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        if has_parquet():
            df.to_parquet(path, index=False)
            return path
        warnings.warn(f"pyarrow/fastparquet is not installed: writing {path.with_suffix('.csv')} instead of {path}",
                      stacklevel=2)
        path = path.with_suffix(".csv")
    df.to_csv(path, index=False)
    return path


def load_projections(path: str | Path):
    """Read a file written by :func:`save_projections` into a DataFrame."""
    import pandas as pd  # a heavy import, needed only when a table is written or read

    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


# ----------------------------------------------------------------------------- TensorBoard projector folder

PROJECTOR_CONFIG = "projector_config.pbtxt"  # the file name TensorBoard's projector plugin looks for
MAX_SPRITE_SIDE = 8192  # pixels: the projector's limit on either side of a sprite image
#: where the book's pages write their projector folders: ``$PATCHNB_GENERATED/projections`` (``patchnb run|book``
#: point it at the executed notebooks' folder of the scale, and the build copies it to ``book/generated/`` of
#: the build tree), else ``book/generated/projections`` under the working directory (a JupyterLab session)
BOOK_PROJECTIONS = Path("book") / "generated" / "projections"


def book_projections() -> Path:
    """The folder the pages' projector folders go to (see :data:`BOOK_PROJECTIONS`)."""
    import os

    root = os.environ.get("PATCHNB_GENERATED")
    return Path(root) / "projections" if root else BOOK_PROJECTIONS


def _as_points(feats, name: str) -> torch.Tensor:
    feats = torch.as_tensor(feats).detach().float().cpu()
    if feats.ndim != 2 or len(feats) == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) tensor, got shape {tuple(feats.shape)}")
    if not torch.isfinite(feats).all():
        raise ValueError(f"{name} contains NaN or inf")
    return feats


def _column(values, n: int, name: str) -> list:
    col = [values] * n if isinstance(values, (str, int)) else list(values)
    if len(col) != n:
        raise ValueError(f"{name} must be one value or one per point, got {len(col)} for {n} points")
    return col


def sprite_image(images, max_side: int = MAX_SPRITE_SIDE):
    """A PIL image of ``images`` (``(N, C, H, W)``, uint8 or float in [0, 1], C = 1 or 3) as thumbnails in
    a square grid of ``ceil(sqrt(N))`` per side (row-major, empty cells black); thumbnails are shrunk so
    that the sprite fits ``max_side`` pixels. Returns ``(image, (thumb_width, thumb_height))``."""
    from PIL import Image

    images = torch.as_tensor(images).detach().cpu()
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(f"images must be (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
    n, c, h, w = images.shape
    side = math.ceil(math.sqrt(n))
    scale = min(1.0, max_side / (side * h), max_side / (side * w))
    th, tw = max(1, int(h * scale)), max(1, int(w * scale))
    grid = torch.zeros(c, side * th, side * tw, dtype=torch.uint8)
    if (th, tw) != (h, w):
        images = torch.nn.functional.interpolate(images.float(), size=(th, tw), mode="area").round().to(torch.uint8)
    for i in range(n):
        r, q = divmod(i, side)
        grid[:, r * th:(r + 1) * th, q * tw:(q + 1) * tw] = images[i]
    array = grid.permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if c == 1 else array, mode="L" if c == 1 else "RGB"), (tw, th)


def _embedding_entry(name: str, tensor_path: str, shape: tuple[int, int], sprite: tuple[int, int] | None) -> str:
    lines = ["embeddings {", f'  tensor_name: "{name}"', f'  tensor_path: "{tensor_path}"',
             f"  tensor_shape: {shape[0]}", f"  tensor_shape: {shape[1]}", '  metadata_path: "metadata.tsv"']
    if sprite is not None:
        lines += ["  sprite {", '    image_path: "sprite.png"', f"    single_image_dim: {sprite[0]}",
                  f"    single_image_dim: {sprite[1]}", "  }"]
    return "\n".join(lines + ["}"]) + "\n"


def save_projector(folder: str | Path, feats, labels, classes: Sequence[str] | None = None,
                   split: str | Sequence[str] = "test", index=None, images=None, description: str | None = None,
                   ) -> Path:
    """Write a TensorBoard projector folder (see the module docstring) and return its path.

    ``feats``: ``(N, D)`` embeddings, or a mapping ``{name: (N, D_name)}`` of several embeddings of the
    same points (one ``tensors-<name>.tsv`` each, one shared metadata and sprite). ``labels``: ``(N,)``
    class indices, written as ``classes[label]`` when ``classes`` is given. ``split``: one split name or
    one per point; ``index``: each point's index in its split (default ``0 .. N-1``); ``images``:
    ``(N, C, H, W)`` images for ``sprite.png`` (none: no sprite); ``description``: a ``README.txt`` saying
    what the folder holds and how it was made (none: no README). Files of an earlier call are replaced."""
    named = dict(feats) if isinstance(feats, Mapping) else {"embedding": feats}
    if not named:
        raise ValueError("feats must hold at least one embedding")
    points = {name: _as_points(f, f"feats[{name!r}]" if isinstance(feats, Mapping) else "feats")
              for name, f in named.items()}
    for name in points:
        if not name or any(ch in name for ch in '"\\/\t\n'):
            raise ValueError(f"embedding names must be non-empty without quotes, slashes, tabs or newlines, "
                             f"got {name!r}")
    n = len(next(iter(points.values())))
    if any(len(p) != n for p in points.values()):
        raise ValueError(f"every embedding must have the same points, got {[len(p) for p in points.values()]} rows")
    labels = torch.as_tensor(labels).long().flatten()
    if len(labels) != n:
        raise ValueError(f"labels must have one entry per point, got {len(labels)} for {n} points")
    if classes is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes):
        raise ValueError(f"labels must index classes (0 .. {len(classes) - 1}), got {labels.min()} .. {labels.max()}")
    names = [classes[i] for i in labels.tolist()] if classes is not None else [str(i) for i in labels.tolist()]
    split_col = _column(split, n, "split")
    index_col = list(range(n)) if index is None else [int(i) for i in torch.as_tensor(index).flatten().tolist()]
    if len(index_col) != n:
        raise ValueError(f"index must have one entry per point, got {len(index_col)} for {n} points")
    for col, values in (("label", names), ("split", split_col)):
        if any("\t" in str(v) or "\n" in str(v) for v in values):
            raise ValueError(f"{col} values must not contain tabs or newlines")
    if images is not None and len(images) != n:
        raise ValueError(f"images must have one entry per point, got {len(images)} for {n} points")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("tensors*.tsv"):
        old.unlink()
    for old in ("sprite.png", "README.txt"):
        (folder / old).unlink(missing_ok=True)
    if description:
        (folder / "README.txt").write_text(description.rstrip("\n") + "\n")
    sprite = None
    if images is not None:
        image, sprite = sprite_image(images)
        image.save(folder / "sprite.png")
    rows = ["label\tsplit\tindex"] + [f"{a}\t{b}\t{c}" for a, b, c in zip(names, split_col, index_col)]
    (folder / "metadata.tsv").write_text("\n".join(rows) + "\n")
    config = []
    for name, p in points.items():
        tensor_path = "tensors.tsv" if len(points) == 1 else f"tensors-{name}.tsv"
        np.savetxt(folder / tensor_path, p.numpy(), fmt="%.7g", delimiter="\t")
        config.append(_embedding_entry(name, tensor_path, tuple(p.shape), sprite))
    (folder / PROJECTOR_CONFIG).write_text("".join(config))
    return folder


def load_projector(folder: str | Path) -> tuple[dict[str, torch.Tensor], object]:
    """Read a folder written by :func:`save_projector`: ``({tensor_name: (N, D) tensor}, metadata DataFrame)``
    (the tensor files are found through ``projector_config.pbtxt``)."""
    import pandas as pd

    folder = Path(folder)
    config = (folder / PROJECTOR_CONFIG).read_text()
    names = [line.split('"')[1] for line in config.splitlines() if line.strip().startswith("tensor_name:")]
    paths = [line.split('"')[1] for line in config.splitlines() if line.strip().startswith("tensor_path:")]
    tensors = {name: torch.from_numpy(np.loadtxt(folder / path, delimiter="\t", ndmin=2, dtype=np.float32))
               for name, path in zip(names, paths)}
    return tensors, pd.read_csv(folder / "metadata.tsv", sep="\t", keep_default_na=False)


def zip_folder(folder: str | Path) -> Path:
    """``<folder>.zip`` beside ``folder``, holding its files under ``<folder name>/`` (unzipped, it is a
    folder to give ``tensorboard --logdir``). Entries are written in name order with a fixed date, so the
    same files give the same archive."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {folder} is not a directory")
    target = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            entry = zipfile.ZipInfo(f"{folder.name}/{f.relative_to(folder).as_posix()}",
                                    date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, f.read_bytes())
    return target


def save_book_projector(page: str, feats, labels, classes: Sequence[str] | None = None,
                        split: str | Sequence[str] = "test", index=None, images=None,
                        description: str | None = None) -> Path:
    """A page's projector folder ``book/generated/projections/<page>/`` (see :data:`BOOK_PROJECTIONS`) and
    its zip ``<page>.zip`` beside it, which the page links with ``{download}`` as
    ``../book/generated/projections/<page>.zip``. Returns the folder."""
    if not page or Path(page).name != page:
        raise ValueError(f"page must be a plain name (the notebook's), got {page!r}")
    folder = save_projector(book_projections() / page, feats, labels, classes, split, index, images, description)
    zip_folder(folder)
    return folder
