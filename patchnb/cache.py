"""The run cache: "load if cached, else compute" for every expensive run of the book.

A run is keyed by its name, its configuration and the version of the code it can execute: the
import closure of the module that defines the function computing it (:func:`patchnb.track.code_version`),
so an edit to a recipe re-runs that recipe's runs and nothing else. A cached value holds only tensors
and plain containers (dict, list, tuple, str, int, float, bool, None) and is read back with
``torch.load(weights_only=True)``: no code runs from a cache file.

The cache is safe for parallel jobs on one filesystem: a file lock (``filelock``) around
compute-or-load makes two processes asking for the same run compute it once, the other waiting and
then loading it; the lock goes with the process that holds it, even one killed with SIGKILL. Every
finished run also writes ``run.json`` beside its value (name, config, seconds, code version, the
value's numbers), which ``patchnb runs`` lists and ``patchnb runs --clean`` selects from.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from .checkpoint import CheckpointError, load_checkpoint, save_atomic
from .checks import atomic_write, check_not_link, private_dir
from .data import cache_dir
from .track import code_version

VALUE, RECORD, LOCK = "cached.pt", "run.json", ".lock"

PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(value, where: str = "value") -> None:
    """Raise ``TypeError`` naming the first part of ``value`` that is not a tensor or plain container
    (what a cached result may hold, so that it loads with ``weights_only=True``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}; cached results use str/int keys")
            check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, PLAIN):
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; a cached result holds only "
                        f"tensors and plain containers (convert arrays with torch.as_tensor or .tolist(), "
                        f"dataclasses with dataclasses.asdict)")


def run_key(name: str, config: dict, modules=None) -> str:
    """Folder name of a cached run: its name, config and the version of the patchnb code it can use:
    ``modules`` and what they import, or, without ``modules``, every patchnb module loaded in this
    process."""
    if modules is None:
        modules = sorted(m for m in sys.modules if m == "patchnb" or m.startswith("patchnb."))
    blob = json.dumps({"name": name, "config": config, "code": code_version(modules).split("+")[0]},
                      sort_keys=True, default=repr)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def runs_dir() -> Path:
    """The cache's ``runs/`` folder (created private; :func:`patchnb.checks.private_dir`)."""
    return private_dir(cache_dir(), "runs")


def _load(path: Path):
    """The cached value at ``path`` (``weights_only`` load, checksum verified: :func:`load_checkpoint`),
    or ``_MISSING`` after a warning naming the file when it is damaged (the run is then recomputed)."""
    try:
        return load_checkpoint(path, require_checksum=True)["value"]
    except (CheckpointError, KeyError, TypeError) as e:
        warnings.warn(f"cached result {path} is unreadable ({e}); the run is recomputed", stacklevel=3)
        return _MISSING


_MISSING = object()


def _stamp(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def cached(name: str, config: dict, fn, refresh: bool = False):
    """Return ``fn(run_dir)``'s result, computed once per (name, config, code version).

    The key covers the code ``fn`` can run: its module's import closure when ``fn`` is defined in
    patchnb, else every loaded patchnb module. ``fn`` receives its own run folder (for checkpoints,
    so an interrupted run resumes) and returns tensors and plain containers (:func:`check_plain`);
    the value is stored atomically as ``cached.pt`` with the config and its wall-clock, and
    ``run.json`` records the run for ``patchnb runs``.

    Computing holds the run folder's lock (``.lock``): a second process asking for the same run
    meanwhile says that it waits, waits, and then loads what the first stored (with ``refresh``, it
    loads a value stored while it waited instead of computing it again).
    """
    home = getattr(fn, "__module__", None) or ""
    # a function defined in patchnb is keyed by its own module's import closure, so a run is shared by
    # every notebook that asks for it, whatever else each notebook imported
    modules = [home] if home == "patchnb" or home.startswith("patchnb.") else None
    folder = private_dir(runs_dir(), run_key(name, config, modules))  # no link: nothing outside the cache
    path = folder / VALUE
    for file in (path, folder / RECORD, folder / LOCK):
        check_not_link(file)
    if path.is_file() and not refresh:  # the value is renamed into place whole: no lock needed to read it
        value = _load(path)
        if value is not _MISSING:
            return value
    before = _stamp(path)
    lock = FileLock(folder / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"patchnb: run {name!r} is being computed by another process; waiting for it ({folder / LOCK})",
              file=sys.stderr, flush=True)
        lock.acquire()
    try:
        if path.is_file() and (not refresh or _stamp(path) != before):  # stored while this process waited
            value = _load(path)
            if value is not _MISSING:
                return value
        t0 = time.perf_counter()
        value = fn(folder)
        check_plain(value, f"the result of run {name!r}")
        seconds = time.perf_counter() - t0
        plain_config = json.loads(json.dumps(config, default=repr))
        save_atomic({"value": value, "config": plain_config, "seconds": seconds}, path)
        _write_record(folder, {"name": name, "config": plain_config, "seconds": round(seconds, 3),
                               "code_version": code_version(modules), "modules": modules,
                               "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "metrics": metrics(value)})
        return value
    finally:
        lock.release()


def _write_record(folder: Path, record: dict) -> None:
    atomic_write(folder / RECORD, json.dumps(record, indent=1, default=repr))


_METRIC = re.compile(r"acc|score|loss|err|knn|top\d|probe|auc|alignment|uniformity|bias|f1", re.IGNORECASE)
_NOT_METRICS = ("config", "history", "curve", "curves", "params", "hparams")


def metrics(value, limit: int = 12) -> dict:
    """The metrics of a cached value, at most ``limit``, by dotted path (``results.0.test_acc``): its
    numbers whose key names a metric (accuracy, score, loss, error, kNN, ...), outside configs and
    per-epoch histories; what ``patchnb runs`` shows of a run."""
    found: dict = {}

    def walk(v, where, key):
        if len(found) >= limit or isinstance(v, bool) or v is None or isinstance(v, (str, torch.Tensor)):
            return
        if isinstance(v, (int, float)):
            if _METRIC.search(key):
                found[where] = v
        elif isinstance(v, dict):
            for k, x in v.items():
                if str(k).lower() not in _NOT_METRICS:
                    walk(x, f"{where}.{k}" if where else str(k), str(k))
        elif isinstance(v, (list, tuple)) and len(v) <= 16:
            for i, x in enumerate(v):
                walk(x, f"{where}.{i}" if where else str(i), key)

    walk(value, "", "")
    return found


# ----------------------------------------------------------------------------- patchnb runs


_RECORD_TYPES = {"name": str, "config": dict, "metrics": dict, "seconds": (int, float), "code_version": str,
                 "finished": str}


def _read_record(folder: Path) -> dict | None:
    """``run.json`` of a run folder, its fields of the wrong type left out; None when it is missing, and
    None after a warning naming it when it is no JSON record (the run is then listed without it)."""
    path = folder / RECORD
    if path.is_symlink() or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"{path} is unreadable ({type(e).__name__}: {e}); the run is listed without it", stacklevel=3)
        return None
    if not isinstance(record, dict):
        warnings.warn(f"{path} holds a {type(record).__name__}, not a run record (a JSON object); the run is "
                      f"listed without it", stacklevel=3)
        return None
    bad = [k for k, t in _RECORD_TYPES.items() if k in record and record[k] is not None
           and (not isinstance(record[k], t) or isinstance(record[k], bool))]
    if bad:
        warnings.warn(f"{path}: {', '.join(f'{k}={record[k]!r}' for k in bad)} of the wrong type; left out",
                      stacklevel=3)
    return {k: v for k, v in record.items() if k not in bad}


def _files(folder: Path) -> list[os.stat_result]:
    """``lstat`` of every file of a run folder but its locks (no part of a run), links not followed."""
    found = []
    for top, _, names in os.walk(folder):  # os.walk descends into no link to a folder
        for n in names:
            p = os.path.join(top, n)
            if n != LOCK and not os.path.islink(p):
                found.append(os.lstat(p))
    return found


def list_runs() -> list[dict]:
    """Every run folder of the cache, newest first: ``{"name", "key", "folder", "config", "metrics",
    "seconds", "code_version", "finished" (ISO time or None), "age" (seconds since the last write),
    "size" (bytes of the folder, checkpoints included), "complete" (whether a value is stored),
    "link" (None, or the target of a run folder that is a symbolic link: listed, never followed)}``.
    A folder without a readable ``run.json`` (a run that never finished, a damaged record: reported
    with a warning) is listed with what its ``cached.pt`` holds, or as incomplete."""
    rows = []
    root = runs_dir()
    for folder in sorted(root.iterdir()):
        name, _, key = folder.name.rpartition("-")
        if folder.is_symlink():
            age = max(time.time() - os.lstat(folder).st_mtime, 0.0)
            rows.append({"name": name or folder.name, "key": key, "folder": str(folder), "config": None,
                         "metrics": {}, "seconds": None, "code_version": None, "finished": None, "age": age,
                         "size": 0, "complete": False, "link": os.readlink(folder)})
            continue
        if not folder.is_dir():
            continue
        record = _read_record(folder)
        value = folder / VALUE
        if record is None:
            record = {}
            if value.is_file() and not value.is_symlink():
                try:
                    stored = load_checkpoint(value, require_checksum=True)
                    record = {"config": stored.get("config"), "seconds": stored.get("seconds"),
                              "metrics": metrics(stored.get("value"))}
                except (CheckpointError, AttributeError):
                    pass
        files = _files(folder)
        newest = max((st.st_mtime for st in files), default=folder.stat().st_mtime)
        rows.append({"name": record.get("name", name or folder.name), "key": key, "folder": str(folder),
                     "config": record.get("config"), "metrics": record.get("metrics") or {},
                     "seconds": record.get("seconds"), "code_version": record.get("code_version"),
                     "finished": record.get("finished"), "age": max(time.time() - newest, 0.0),
                     "size": sum(st.st_size for st in files),
                     "complete": value.is_file() and not value.is_symlink(), "link": None})
    return sorted(rows, key=lambda r: r["age"])


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"`` (or a plain number of days) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise ValueError(f"--older-than must be a number with a unit s, m, h, d or w (e.g. 7d), got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "d"]


def select_runs(older_than: float | None = None, name: str | None = None) -> list[dict]:
    """The runs of :func:`list_runs` older than ``older_than`` seconds (last write) and whose name
    matches the shell pattern ``name`` (``fnmatch``: ``patch_*``); all of them without filters."""
    return [r for r in list_runs() if (older_than is None or r["age"] >= older_than)
            and (name is None or fnmatch.fnmatchcase(r["name"], name))]


def clean_runs(older_than: float | None = None, name: str | None = None, dry_run: bool = False) -> list[dict]:
    """Delete the runs :func:`select_runs` picks and return them, each with ``"removed"``: True, or
    False when a process is computing it (its lock is held: the run is left alone) or ``dry_run``. A run
    folder that is a symbolic link is unlinked: its target is left as it is."""
    done = []
    for row in select_runs(older_than, name):
        folder = Path(row["folder"])
        if row["link"] is not None:  # only the link goes: never its target, never a lock written through it
            if not dry_run:
                folder.unlink()
            done.append({**row, "removed": not dry_run,
                         "why": "dry run" if dry_run else f"the link only; its target {row['link']} is left"})
            continue
        if (folder / LOCK).is_symlink():
            done.append({**row, "removed": False, "why": f"its {LOCK} is a symbolic link; remove it by hand"})
            continue
        lock = FileLock(folder / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            done.append({**row, "removed": False, "why": "being computed"})
            continue
        why = "dry run" if dry_run else ""
        try:
            if not dry_run:
                shutil.rmtree(folder)
        except OSError as e:
            why = f"{type(e).__name__}: {e}"
        finally:
            lock.release()
        done.append({**row, "removed": not why, "why": why})
    return done


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _age(seconds: float) -> str:
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _short(d: dict | None, width: int) -> str:
    if not d:
        return "-"
    text = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_runs(rows: list[dict], width: int = 60) -> str:
    """The table ``patchnb runs`` prints: one run a line."""
    head = f"{'name':24s} {'key':12s} {'seconds':>8s} {'age':>5s} {'size':>9s} {'code':10s} config | metrics"
    lines = [head]
    for r in rows:
        seconds = f"{r['seconds']:.1f}" if isinstance(r["seconds"], (int, float)) else "-"
        code = (r["code_version"] or "-")[:10]
        status = f"(link to {r['link']}, not followed) " if r.get("link") else "" if r["complete"] else "(incomplete) "
        lines.append(f"{r['name'][:24]:24s} {r['key'][:12]:12s} {seconds:>8s} {_age(r['age']):>5s} "
                     f"{_human(r['size']):>9s} {code:10s} {status}{_short(r['config'], width)} | "
                     f"{_short(r['metrics'], width)}")
    total = sum(r["size"] for r in rows)
    lines.append(f"{len(rows)} run(s), {_human(total)} in {runs_dir()}")
    return "\n".join(lines)


def add_parser(sub) -> None:
    """The ``patchnb runs`` subcommand (registered by :mod:`patchnb.cli`)."""
    r = sub.add_parser("runs", help="list the cached runs (name, config, metrics, seconds, code version, size), "
                                    "or remove them with --clean")
    r.add_argument("--clean", action="store_true", help="remove the selected runs (all without filters)")
    r.add_argument("--older-than", default=None, metavar="AGE",
                   help="only runs last written longer ago than AGE: 90s, 30m, 12h, 7d, 2w")
    r.add_argument("--name", default=None, metavar="PATTERN", help="only runs whose name matches (shell pattern)")
    r.add_argument("--dry-run", action="store_true", help="with --clean: say what would be removed")
    r.add_argument("--json", action="store_true", help="print the runs as JSON")


def run_cli(args) -> int:
    """``patchnb runs [--clean] [--older-than AGE] [--name PATTERN] [--dry-run] [--json]``."""
    older = parse_age(args.older_than) if args.older_than is not None else None
    if not args.clean:
        rows = select_runs(older, args.name)
        try:
            print(json.dumps(rows, indent=1, default=repr) if args.json else format_runs(rows), flush=True)
        except BrokenPipeError:  # `patchnb runs | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    done = clean_runs(older, args.name, dry_run=args.dry_run)
    for r in done:
        verb = "removed" if r["removed"] else f"kept ({r['why']})"
        note = f" ({r['why']})" if r["removed"] and r["why"] else ""
        print(f"{verb:24s} {r['name']} {r['key']} {_human(r['size'])}{note}")
    freed = sum(r["size"] for r in done if r["removed"])
    print(f"{sum(r['removed'] for r in done)} of {len(done)} selected run(s) removed, {_human(freed)} freed")
    return 0
