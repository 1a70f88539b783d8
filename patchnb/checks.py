"""Validation of parameters at the API boundary: every error names the parameter, its value and
what is allowed, so a bad input fails where it was given, never deep inside torch or numpy."""

from __future__ import annotations

import math
import numbers
import os
import stat
import tempfile
from pathlib import Path


def check_choice(name: str, value, allowed) -> None:
    """Raise ``ValueError`` naming the parameter and its allowed values."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed values: {', '.join(map(repr, allowed))}")


def check_int(name: str, value, minimum: int | None = None, allow_none: bool = False) -> None:
    """``value`` is an int (not a bool, not a float such as 2.5), at least ``minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer{' or None' if allow_none else ''}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None,
                strict_min: bool = False) -> None:
    """``value`` is a finite real number in the given range (``strict_min``: above ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict_min else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}")


def check_seeds(name: str, seeds) -> tuple[int, ...]:
    """A non-empty list/tuple of distinct integers, returned as a tuple."""
    if not isinstance(seeds, (list, tuple)) or not seeds:
        raise ValueError(f"{name} must be a non-empty list of integers, got {seeds!r}")
    for s in seeds:
        check_int(name, s)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must not repeat a seed, got {list(seeds)}")
    return tuple(int(s) for s in seeds)


class NonFiniteError(ValueError):
    """A tensor given to a function holds NaN or infinity (raised by :func:`check_finite`; the training loop
    turns one raised inside a step into its ``TrainingDiverged``, naming the method and step)."""


def check_finite(name: str, tensor) -> None:
    """``tensor`` holds no NaN or infinity (counted in the message, a :class:`NonFiniteError`); non-floating
    tensors pass."""
    import torch

    t = torch.as_tensor(tensor)
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        n_nan, n_inf = int(torch.isnan(t).sum()), int((~finite).sum()) - int(torch.isnan(t).sum())
        what = " and ".join(w for w, n in ((f"{n_nan} NaN", n_nan), (f"{n_inf} inf", n_inf)) if n)
        raise NonFiniteError(f"{name} contains {what} of its {t.numel()} values (shape {tuple(t.shape)}); "
                             f"it must be finite")


def check_tensor(name: str, value, ndim: int | None = None, dtypes=None, finite: bool = False):
    """``value`` is a torch tensor (of ``ndim`` dimensions and one of ``dtypes`` when given; finite when
    ``finite``); returns it."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if dtypes is not None and value.dtype not in dtypes:
        raise ValueError(f"{name} has dtype {value.dtype}; allowed: {', '.join(map(str, dtypes))}")
    if finite:
        check_finite(name, value)
    return value


def check_labels(name: str, labels, n_classes: int | None = None):
    """Integer class labels in ``0 .. n_classes - 1`` (float labels would be truncated, negative or too
    large ones dropped or out of bounds); returns them as a long tensor."""
    import torch

    t = torch.as_tensor(labels)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class labels, got a {t.dtype} tensor (float labels would be "
                         f"truncated); cast them with .long() if they are whole numbers")
    t = t.long()
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0:
            raise ValueError(f"{name} must be >= 0, got a label {lo}")
        if n_classes is not None and hi >= n_classes:
            raise ValueError(f"{name} holds a label {hi} but n_classes={n_classes}; allowed: 0..{n_classes - 1}")
    return t


def check_device(name: str, device) -> None:
    """``"auto"``, a ``torch.device`` or a device string torch understands (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``); whether that device exists is checked where it is used (a configuration may be written on
    another machine than the one that runs it)."""
    import torch

    if isinstance(device, torch.device) or device == "auto":
        return
    if not isinstance(device, str):
        raise ValueError(f"{name} must be a device string ('auto', 'cpu', 'cuda', 'cuda:0', ...), got {device!r}")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name}={device!r} is not a device; allowed values: 'auto', 'cpu', 'cuda', 'cuda:<index>', "
                         f"'mps'") from None


# ----------------------------------------------------------------------------- files and folders patchnb trusts


class UnsafePathError(ValueError):
    """A folder or file that patchnb would trust (its cache: results it returns, code it loads) could
    have been written by someone else: it belongs to another user, group or others may write it, or it
    is a symbolic link inside the cache. The message names the path and how to fix it."""


def _write_problem(st) -> str | None:
    """Why a file or folder of ``os.stat`` result ``st`` is not this user's alone, or None."""
    uid = os.getuid()
    if st.st_uid != uid:
        return f"is owned by uid {st.st_uid}, not by you (uid {uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = ("group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH
               else "group" if st.st_mode & stat.S_IWGRP else "others")
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def check_not_link(path, what: str = "the patchnb cache ($PATCHNB_CACHE)") -> None:
    """``path``, when it exists, is no symbolic link (:class:`UnsafePathError` naming it and its target)."""
    path = Path(path)
    if path.is_symlink():
        raise UnsafePathError(f"{path} is a symbolic link (to {os.readlink(path)}) inside {what}; patchnb never "
                              f"follows links there, so that nothing it reads or writes can lie outside it. "
                              f"Remove the link (rm {path}) and run again")


def private_root(path, what: str = "the patchnb cache folder", setting: str = "PATCHNB_CACHE") -> Path:
    """``path`` as a folder this user alone may write, created (mode 0700) when missing and returned
    resolved (it may itself be a link the user made, to a folder of theirs). :class:`UnsafePathError`
    when it is not a folder, belongs to another user or group/others may write it: what it holds could
    then have been put there by someone else."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = path.resolve()
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} {path} is not a folder; set {setting} to a folder of your own")
    problem = _write_problem(st)
    if problem:
        fix = f"`chmod go-w {path}`" if st.st_uid == os.getuid() else "choose a folder of your own"
        raise UnsafePathError(f"{what} {path} {problem}, so someone else could have written the results and the "
                              f"compiled code patchnb would take from it. It must be private to you: {fix}, or set "
                              f"{setting} to another folder (e.g. one under your home, created by patchnb)")
    return path


def private_dir(root, *parts: str) -> Path:
    """The folder ``root/parts...`` (each created mode 0700 when missing), none of whose components below
    ``root`` is a symbolic link or another user's folder (:class:`UnsafePathError`); a folder of this
    user's there that group or others may write is made writable by its owner only (it lies in a private
    root, which :func:`private_root` checks, so no one else could reach it). Opened with ``O_NOFOLLOW``,
    so a link put in place meanwhile is refused as well."""
    path = Path(root)
    for part in parts:
        path = path / part
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        check_not_link(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as e:
            raise UnsafePathError(f"{path} inside the patchnb cache is not a folder ({e.strerror}); remove it "
                                  f"(rm {path}) and run again") from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid():
                raise UnsafePathError(f"{path} inside the patchnb cache {_write_problem(st)}: someone else made it. "
                                      f"Remove it (rm -r {path}) if you do not know why, or set PATCHNB_CACHE to "
                                      f"another folder")
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
        finally:
            os.close(fd)
    return path


def atomic_write(path, content) -> None:
    """Write ``content`` to ``path`` whole or not at all: into a temporary file of its own in the same
    folder (``str`` as UTF-8 text, ``bytes`` as they are, or a function ``write(tmp_path)`` that writes
    it, e.g. ``lambda tmp: table.to_csv(tmp)``), flushed to disk, then renamed over ``path``. Readers
    see the old file or the new one, never half of one; a crash leaves no temporary behind; a link at
    ``path`` is replaced, never written through. The file is readable by its owner only when
    ``content`` is text or bytes (``mkstemp``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if callable(content):
            os.close(fd)
            content(Path(tmp))
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else bytes(content))
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- YAML without aliases


class YAMLAliasError(ValueError):
    """A YAML document uses an alias (``*name``), refused by :func:`load_yaml_plain`."""


def load_yaml_plain(text: str):
    """``yaml.safe_load(text)`` refusing aliases (``*name``, and so ``<<: *name`` merges): each alias
    repeats a whole subtree, so a few lines of nested aliases ("billion laughs") expand to gigabytes.
    :class:`YAMLAliasError` names the alias and its line; other errors are ``yaml.YAMLError``."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise YAMLAliasError(f"line {event.start_mark.line + 1} uses the YAML alias *{event.anchor}; "
                                     f"aliases are not allowed here (each one repeats a whole value, so a few "
                                     f"nested ones expand past any memory): write every value out")
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
