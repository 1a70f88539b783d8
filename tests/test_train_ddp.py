"""A process group the caller made (``init_process_group`` in ``mp.spawn`` workers, no torchrun environment)
is used by fit as it is: two gloo processes, each training on half of every batch, match one process.
(torchrun itself, where fit makes the group: tests/test_torchrun.py.)"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from patchnb import data, train

CFG = dict(epochs=2, batch_size=32, lr=0.05, schedule="constant", seed=1)


def model():
    torch.manual_seed(0)  # no BatchNorm: per-process batch statistics would differ on CPU (no SyncBN there)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10))


def splits():
    return data.load_splits("synthetic", train_size=128, val_size=32, test_size=32)


class Counting(train.Classification):
    seen = 0

    def step(self, model, images, *rest):
        Counting.seen += len(images)
        return super().step(model, images, *rest)

    def __repr__(self):
        return repr(train.Classification(pad=0, flip=False))


def worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    m = model()
    train.fit(m, splits(), train.TrainConfig(**CFG), Counting(pad=0, flip=False), progress=False)
    torch.save({"state": m.state_dict(), "seen": Counting.seen}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_two_gloo_processes_match_one(tmp_path):
    single = model()
    train.fit(single, splits(), train.TrainConfig(**CFG), train.Classification(pad=0, flip=False), progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(2, port, str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    assert [r["seen"] for r in ranks] == [2 * 128 // 2] * 2  # each process trained on half of each batch
    for k, v in single.state_dict().items():
        assert torch.allclose(v, ranks[0]["state"][k], atol=1e-5), k
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]), k
