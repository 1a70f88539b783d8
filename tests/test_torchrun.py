"""``torchrun --nproc_per_node 2 -m patchnb train ...`` on CPUs (gloo), as a user runs it (issue 14, part 1).

fit joins torchrun's processes itself (no hand-made process group), each process trains on half of
every global batch, and only rank 0 writes the run folder. The run matches the single-process run of
the same command, and a torchrun job killed with SIGKILL (agent and workers) resumes from rank 0's
checkpoint to the same result as the uninterrupted torchrun job, bit for bit.

Tolerance against the single process: the two runs compute the same gradients in a different order
(the mean of two half-batch means, all-reduced, instead of one mean over the batch), so float32
rounding differs in the last bits (about 1e-7 relative per step; 5e-8 on the losses measured here).
Losses are compared to 1e-4 and accuracies to one image of the 64 (1/64), which such rounding could
flip only for an image whose two largest logits are within rounding of each other; the selected
epoch must be the same. The model has no BatchNorm (``--batch-norm false``) and no augmentation:
on CPUs BatchNorm normalises each process's share by its own statistics (there is no SyncBatchNorm
on CPUs) and augmentation is drawn per share, so those runs differ from one process by more than
rounding (documented in :func:`patchnb.train.fit`).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patchnb import checkpoint

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
TRAIN = ["train", "--dataset", "synthetic", "--train-size", "640", "--val-size", "64", "--test-size", "64",
         "--n-centroids", "16", "--k", "4", "--n-patches", "2048", "--kmeans-iters", "3", "--epochs", "6",
         "--batch-size", "32", "--batch-norm", "false", "--augment", "false", "--lr", "0.01", "--milestones", "4",
         "--seed", "0", "--device", "cpu"]
LOSS_TOLERANCE = 1e-4
ACCURACY_TOLERANCE = 1 / 64 + 1e-9  # one image of the 64 validation / test images

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not TORCHRUN.is_file(), reason=f"no {TORCHRUN}")]


def env():
    # one thread per process: two workers on a small machine; PATCHNB_CACHE comes from conftest
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(run_dir: Path) -> list[str]:
    return [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "patchnb", *TRAIN, "--run-dir", str(run_dir)]


def run(cmd, **kwargs):
    done = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=240, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd[:6])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def result(run_dir: Path) -> dict:
    return checkpoint.load_checkpoint(run_dir / "result.pt", require_checksum=True)["result"]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts each worker in a session of its own)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    run([sys.executable, "-m", "patchnb", *TRAIN, "--run-dir", str(root / "single")])
    ddp = run(torchrun(root / "ddp"))
    return root, ddp


def test_torchrun_matches_one_process(runs):
    root, ddp = runs
    one, two = result(root / "single"), result(root / "ddp")
    assert ddp.stdout.count("run folder:") == 1  # rank 0 reports; rank 1 writes nothing
    assert {p.name for p in (root / "ddp").iterdir()} == {"last.pt", "previous.pt", "result.pt", "record.yaml",
                                                          "summary.json"}
    assert two["best_epoch"] == one["best_epoch"]
    assert two["test"]["score"] == pytest.approx(one["test"]["score"], abs=ACCURACY_TOLERANCE)
    assert two["val"]["score"] == pytest.approx(one["val"]["score"], abs=ACCURACY_TOLERANCE)
    assert len(two["history"]) == len(one["history"]) == 6
    for a, b in zip(one["history"], two["history"]):
        assert b["loss"] == pytest.approx(a["loss"], abs=LOSS_TOLERANCE)  # averaged over the two processes
        assert b["train_acc"] == pytest.approx(a["train_acc"], abs=ACCURACY_TOLERANCE)
        assert b["val_score"] == pytest.approx(a["val_score"], abs=ACCURACY_TOLERANCE)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=LOSS_TOLERANCE)
    summary = json.loads((root / "ddp" / "summary.json").read_text())
    assert summary["results"][0]["test_acc"] == two["test"]["score"]


def test_torchrun_killed_with_sigkill_resumes_to_the_same_result(runs):
    root, _ = runs
    killed = root / "killed"
    agent = subprocess.Popen(torchrun(killed), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (killed / "previous.pt").exists():  # two epochs checkpointed
            assert agent.poll() is None, "the torchrun job ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.02)
        for pid in [*descendants(agent.pid), agent.pid]:  # the workers, then the agent: a crashed node
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        agent.kill()
        agent.wait()
    assert not (killed / "result.pt").exists(), "the job finished before the kill"
    epoch = checkpoint.load_checkpoint(killed / "last.pt")["epoch"]
    assert epoch < 5
    resumed = run(torchrun(killed))
    assert resumed.stdout.count("run folder:") == 1
    got, want = result(killed), result(root / "ddp")
    assert got["history"] == want["history"]  # bit for bit: the resumed epochs continue rank 0's checkpoint
    assert got["best_epoch"] == want["best_epoch"] and got["test"]["score"] == want["test"]["score"]
    assert got["test"]["loss"] == want["test"]["loss"]
