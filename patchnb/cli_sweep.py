"""``patchnb sweep NOTEBOOK --grid grid.yaml``: the command line of :mod:`patchnb.sweep` (a notebook over a grid
of parameters, as local processes or Slurm jobs, into one results table)."""

from __future__ import annotations

from pathlib import Path

from .sweep import RESULTS, SweepError, collect, default_out, load_grid, sweep

__all__ = ["add_parser", "run_cli"]


def add_parser(sub) -> None:
    """The ``patchnb sweep`` subcommand (registered by :mod:`patchnb.cli`)."""
    s = sub.add_parser("sweep", help="run a notebook over a grid of parameters (local processes or Slurm jobs)")
    s.add_argument("notebook")
    s.add_argument("--grid", required=True, help="YAML: parameter -> list of values, or a list of mappings")
    s.add_argument("--executor", default="local", help="local (processes on this host) or slurm (submitit)")
    s.add_argument("--out", default=None, help="sweep folder (default: runs/sweeps/<notebook>-<grid hash>)")
    s.add_argument("--jobs", type=int, default=1, help="local: points run at once")
    s.add_argument("--no-wait", action="store_true", help="slurm: return after submitting (then --collect)")
    s.add_argument("--collect", action="store_true", help="collect the results of an earlier sweep, run nothing")
    s.add_argument("--partition", default=None, help="slurm partition")
    s.add_argument("--time", type=int, default=60, help="slurm time limit per point, minutes")
    s.add_argument("--cpus-per-task", type=int, default=None)
    s.add_argument("--gpus-per-node", type=int, default=None)
    s.add_argument("--mem-gb", type=float, default=None)
    s.add_argument("--array-parallelism", type=int, default=None, help="slurm: jobs of the sweep running at once")


def run_cli(args) -> int:
    points = load_grid(args.grid)
    out = Path(args.out) if args.out else default_out(args.notebook, points)
    if args.collect:
        table = collect(out)
    else:
        from .slurm import SlurmOptions

        opts = SlurmOptions(args.partition, args.time, args.cpus_per_task, args.gpus_per_node, args.mem_gb,
                            args.array_parallelism)
        table = sweep(args.notebook, points, out, args.executor, args.jobs, opts, wait=not args.no_wait)
        if table is None:
            print(f"[sweep] collect with: patchnb sweep {args.notebook} --grid {args.grid} --out {out} --collect")
            return 0
    counts = table["status"].value_counts().to_dict()
    print(f"[sweep] {out / (RESULTS + '.csv')}: {len(table)} points, "
          + ", ".join(f"{n} {s}" for s, n in counts.items()))
    failed = table[table["status"] == "failed"]
    if len(failed):
        raise SweepError(f"{len(failed)} of {len(table)} points failed: " + "; ".join(
            f"point {r.point} {r.parameters}: {r.error} (log: {r.log})" for r in failed.itertuples()))
    return 0
