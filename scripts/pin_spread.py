"""How far the trained smoke numbers the tests pin move when only the rounding changes.

Training on a few hundred images is chaotic: another CPU (another ISA, another BLAS kernel) or another
thread count changes the reduction order of a GEMM in its last bit, and a few hundred SGD steps amplify
that into points of accuracy. Thread counts are a cheap proxy for another CPU. This script runs every
recipe the tests pin at smoke scale, in a fresh cache, and writes every number of ``result.numbers`` and
every number under ``result.runs`` to a JSON file; with several files it prints, per recipe, the largest
change of each kind of number between them. The tests' bands (``tests/pins.py``) are set from it.

    OMP_NUM_THREADS=1 python scripts/pin_spread.py run /tmp/t1.json
    OMP_NUM_THREADS=2 python scripts/pin_spread.py run /tmp/t2.json
    python scripts/pin_spread.py compare /tmp/t1.json /tmp/t2.json
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import tempfile
import time

#: (recipe module, smoke overrides): the runs the tests pin
RECIPES = {
    "dictionary": ("patchnb.experiments.dictionary", {}),
    "intrinsic_dimension": ("patchnb.experiments.intrinsic_dimension", {}),
    "table1": ("patchnb.experiments.patch.table1", {}),
    "table2": ("patchnb.experiments.patch.table2", {}),
    "table3": ("patchnb.experiments.patch.table3", {}),
    "table4": ("patchnb.experiments.patch.table4", {}),
    "figures": ("patchnb.experiments.patch.figures", {}),
    "emp_ssl": ("patchnb.experiments.emp_ssl", {"simclr_epochs": 1}),
    "ssl_zoo": ("patchnb.experiments.ssl_zoo", {}),
    "supcon_sweep": ("patchnb.experiments.supcon_sweep", {}),
    "shape_bias": ("patchnb.experiments.shape_bias", {}),
}


#: numbers that measure the machine, not the computation
TIMING = ("second", "speedup", "per_s", "ips", "time", "_s/")


def leaves(value, path=""):
    """Every finite number under ``value`` (dicts, lists, tuples), keyed by its path."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {path: float(value)} if math.isfinite(value) else {}
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(leaves(v, f"{path}/{k}"))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out.update(leaves(v, f"{path}/{i}"))
    return out


def run(out: str, names: list[str]) -> None:
    os.environ["PATCHNB_CACHE"] = tempfile.mkdtemp(prefix="pin-spread-")  # nothing cached: every run trains
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("PATCHNB_GENERATED", tempfile.mkdtemp(prefix="pin-spread-gen-"))
    import matplotlib
    import torch

    matplotlib.use("Agg")
    record = {"threads": torch.get_num_threads(), "recipes": {}}
    for name in names or RECIPES:
        module, overrides = RECIPES[name]
        exp = importlib.import_module(module)
        t0 = time.perf_counter()
        result = exp.run(exp.Config.preset("smoke", **overrides))
        record["recipes"][name] = {"seconds": time.perf_counter() - t0, "numbers": leaves(result.numbers),
                                   "runs": leaves(result.runs)}
        print(f"{name}: {record['recipes'][name]['seconds']:.0f} s", flush=True)
        with open(out, "w") as f:
            json.dump(record, f, indent=1)


def compare(paths: list[str], verbose: int = 0) -> None:
    records = [json.load(open(p)) for p in paths]
    print("recipe | numbers | largest change | median nonzero change | which")
    for name in RECIPES:
        got = [r["recipes"].get(name) for r in records]
        if any(g is None for g in got):
            continue
        flat = [{**{"numbers" + k: v for k, v in g["numbers"].items()}, **{"runs" + k: v for k, v in g["runs"].items()}}
                for g in got]
        keys = {k for k in set.intersection(*(set(f) for f in flat)) if not any(w in k for w in TIMING)}
        diffs = {k: max(f[k] for f in flat) - min(f[k] for f in flat) for k in keys}
        nonzero = sorted(d for d in diffs.values() if d > 0)
        worst = max(diffs, key=diffs.get) if diffs else "-"
        med = nonzero[len(nonzero) // 2] if nonzero else 0.0
        print(f"{name} | {len(keys)} | {diffs.get(worst, 0):.4g} | {med:.3g} ({len(nonzero)} moved) | {worst}")
        if verbose:
            for k in sorted(diffs, key=diffs.get, reverse=True)[:verbose]:
                print(f"    {diffs[k]:.4g}  {k}  {[round(f[k], 6) for f in flat]}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "compare":
        compare(sys.argv[2:], int(os.environ.get("VERBOSE", "0")))
    else:
        sys.exit(__doc__)
