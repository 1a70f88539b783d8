"""The patch chapter's shared recipe (Brutzkus et al., ICML 2022): one run (RunConfig -> run_network),
the chapter's budget (ChapterConfig, presets) and summary rows (the verdicts: test_patch_budget.py)."""

import shlex

import pytest
import torch

from patchnb.cli_train import parse_config
from patchnb.experiments.patch import network, table1
from patchnb.experiments.patch.network import BUDGETS, ChapterConfig, RunConfig, run_network

TINY = "--dataset synthetic --train-size 192 --val-size 64 --test-size 64 --n-centroids 16 --k 4 --n-patches 1000 " \
       "--epochs 1 --kmeans-iters 3 --batch-size 32"


def test_run_network_returns_kernels():
    cfg, _ = parse_config(shlex.split(TINY + " --embedding full"))
    out = run_network(cfg, progress=False)
    assert out["first_conv"].shape == (16, 1, 5, 5) and out["dictionary"]["kernel"].shape == (16, 1, 5, 5)
    assert out["results"][0]["history"] and out["seconds"] > 0
    assert out["config"]["embedding"] == "full" and 0 <= out["results"][0]["test_acc"] <= 1


@pytest.mark.parametrize("extra", ["--embedding conv", "--model vgg --width 8 --depth 2 --mlp-hidden-layers 0",
                                   "--depth 2 --embedding full --pool-size 2 --pool-stride 2"])
def test_same_seed_same_run_whatever_came_before(extra):
    """The seed alone determines a run: initialisation must not draw from whatever global random
    state earlier code left (a notebook's second run of a config used to differ from its first)."""
    cfg, _ = parse_config(shlex.split(f"{TINY} {extra} --seed 3"))
    first = run_network(cfg, progress=False)
    torch.rand(17)  # disturb the global random state
    second = run_network(cfg, progress=False)
    assert [r["test_acc"] for r in first["results"]] == [r["test_acc"] for r in second["results"]]
    assert torch.equal(first["first_conv"], second["first_conv"])
    other, _ = parse_config(shlex.split(f"{TINY} {extra} --seed 4"))
    assert not torch.equal(run_network(other, progress=False)["first_conv"], first["first_conv"])


def test_train_config_is_the_runs_optimisation():
    t = RunConfig(epochs=3, batch_size=16, lr=0.01, momentum=0.5, milestones=[2], seed=7).train_config()
    assert (t.epochs, t.batch_size, t.lr, t.momentum, tuple(t.milestones), t.seed) == (3, 16, 0.01, 0.5, (2,), 7)


def test_chapter_budget_becomes_run_configs():
    cfg = table1.Config.preset("smoke")
    assert cfg.seeds == (0,) and cfg.train_size == 256 and cfg.k == 8 and cfg.BUDGET == "train_size"
    run = cfg.run_config(5, embedding="hard", k=[4])
    assert (run.seed, run.embedding, run.k, run.epochs, run.dataset, run.n_centroids) == \
        (5, "hard", [4], 1, "fashion_mnist", 32)
    assert cfg.run_config(0).k == [8] and cfg.run_config(0).milestones == [100, 150]
    assert table1.Config.preset("paper").dataset == "cifar10" and table1.Config.preset("cpu").seeds == (0, 1)
    assert BUDGETS["smoke"]["epochs"] == 1 and cfg.at_budget(0.5).train_size == 128
    with pytest.raises(TypeError):
        cfg.run_config(0, epoch=3)


def test_page_text_states_the_budget(tmp_cache):
    cfg = ChapterConfig(scale="smoke", dataset="synthetic", train_size=100, val_size=50, test_size=50, batch_size=32,
                        lr=0.01, k=4, n_centroids=16)
    text = network.page_text(cfg, cfg.load_data())
    assert text["data_desc"] == "synthetic: 100 train / 50 val / 50 test images of shape (1, 16, 16), 10 classes; " \
                                "scale=smoke"
    assert "batch 32, SGD lr 0.01 " in text["budget_desc"] and "N=16, k=4" in text["budget_desc"]
    assert text["budget_desc"].endswith("seeds [0]")


@pytest.mark.parametrize("field, value", [
    ("dataset", "mnist"), ("train_size", 0), ("epochs", 1.5), ("k", 300), ("lr", 0.0), ("momentum", 1.5),
    ("milestones", (0,)), ("augment", "yes"), ("seeds", (0, 0)), ("scale", "huge"), ("budget_fractions", (1.0,)),
])
def test_chapter_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        table1.Config(**{field: value})


def test_preset_rejects_unknown_parameters():
    with pytest.raises(ValueError, match="epoch"):
        table1.Config.preset("smoke", epoch=3)
    with pytest.raises(ValueError, match="scales"):
        network.presets(tiny={})


def _out(seed: int, test: float, val: float, final: float, seconds: float = 2.0) -> dict:
    return {"config": {"seed": seed}, "seconds": seconds,
            "results": [{"test_acc": test, "val_acc": val, "final_val_acc": final}]}


def test_summarise_reports_mean_std_over_seeds_and_hides_raw_columns():
    row = network.summarise("Phi_full", [_out(0, 0.80, 0.81, 0.79), _out(1, 0.90, 0.91, 0.89, seconds=4.0)])
    assert row["_mean"] == pytest.approx(0.85) and row["_accs"] == pytest.approx([0.8, 0.9])
    assert row["_std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std (ddof=1) of 0.80, 0.90
    assert row["test acc. (%)"] == "85.0 ± 7.1"
    assert row["selected val acc. (%)"] == "86.0 ± 7.1"
    assert row["seeds"] == "0, 1" and row["wall-clock / run (s)"] == "3" and row["_seconds"] == 3.0
    frame = network.table([row, network.summarise("CNN", [_out(0, 0.7, 0.7, 0.7)])])
    assert list(frame.index) == ["Phi_full", "CNN"]
    assert not any(c.startswith("_") for c in frame.columns)
