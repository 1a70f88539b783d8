"""The processes and device of a training run: one process, or the several that ``torchrun`` starts.

``torchrun --nproc_per_node P -m patchnb train ...`` starts P copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment. The first
:func:`setup` of each process (``patchnb.train.fit`` calls it) then joins them into one process group
(``gloo`` on CPUs, ``nccl`` on CUDA GPUs, through torchrun's rendezvous address) and gives every
process its own GPU, ``cuda:LOCAL_RANK``. Outside torchrun, and under ``torchrun --nproc_per_node 1``,
a run is one process on the device it asks for; a process group made by the caller
(``torch.distributed.init_process_group``) is used as it is.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

from .checks import check_device

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> cuda if available else cpu; otherwise the named device (``cpu``, ``cuda``, ``cuda:<index>``,
    ``mps`` or a ``torch.device``), checked to exist: ``ValueError`` naming ``device`` and what to use."""
    check_device("device", device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for but no CUDA GPU is available; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r} was asked for but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s); use cuda:0..cuda:{torch.cuda.device_count() - 1} or device='cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was asked for but no MPS device is available; use device='cpu'")
    return dev


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (its environment variables are all set)."""
    return all(os.environ.get(k) for k in TORCHRUN_ENV)


def rank_and_world() -> tuple[int, int]:
    """(rank, number of processes) of this run: those of the process group once it exists, else
    torchrun's ``RANK`` / ``WORLD_SIZE`` (before :func:`setup`), else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if under_torchrun():
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def is_main_process() -> bool:
    """True in the one process that writes checkpoints, records and results (rank 0)."""
    return rank_and_world()[0] == 0


def setup(device: str = "auto") -> tuple[torch.device, int, int]:
    """``(device, rank, world)`` of this process, joining torchrun's process group on first use.

    Under torchrun with more than one process, a CUDA device (``cuda``, ``auto`` on a GPU machine,
    or ``cuda:i``) becomes ``cuda:LOCAL_RANK`` (one GPU per process, as torchrun intends) and the
    group uses ``nccl``; on CPUs it uses ``gloo``. The group lives until the process exits."""
    dev = resolve_device(device)
    if under_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        local = int(os.environ["LOCAL_RANK"])
        if dev.type == "cuda":
            if local >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} GPU(s); "
                                 f"start torchrun with --nproc_per_node at most the number of GPUs")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                    device_id=dev if dev.type == "cuda" else None)
            atexit.register(_leave)
    if dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
        if backend == "nccl" and dev.type != "cuda":
            raise ValueError(f"the process group uses nccl, which needs CUDA tensors, but device={device!r} is "
                             f"{dev}; use a CUDA device or a gloo process group")
    rank, world = rank_and_world()
    return dev, rank, world


def _leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _reduce_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def mean_over_processes(values: list[float], device: torch.device) -> list[float]:
    """The mean of ``values`` (one list per process, same length everywhere) over the processes; the
    values themselves outside a process group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_reduce_device(device))
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def from_main_process(values: list[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` in every process (so every process takes the same decisions)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1 or not values:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_reduce_device(device))
    dist.broadcast(t, src=0)
    return t.tolist()
