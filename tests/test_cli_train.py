"""`patchnb train`: every command of the seed README parses to the intended configuration, bad options
fail clearly, and a tiny run on synthetic data trains, writes its run folder and summary."""

import json
import shlex

import pytest
import torch

from patchnb import cli_train
from patchnb.cli_train import README_COMMANDS, ExperimentConfig, main, parse_config


def test_readme_commands_parse():
    assert len(README_COMMANDS) >= 30
    for name, cmd in README_COMMANDS.items():
        cfg, _ = parse_config(shlex.split(cmd))
        assert isinstance(cfg, ExperimentConfig), name
    cfg = parse_config(shlex.split(README_COMMANDS["Table 1 - Phi_hard with random patches"]))[0]
    assert (cfg.embedding, cfg.dictionary, cfg.n_centroids, cfg.k, cfg.lr) == ("hard", "gaussian", 1024, None, 0.003)
    cfg = parse_config(shlex.split(README_COMMANDS["Table 4 - Phi_full"]))[0]
    assert cfg.depth == 4 and cfg.kernel_size == [5, 3, 3, 3] and cfg.avg_pool == [True, False, False, False]
    assert cfg.layers("k", 256, ()) == [256, 128, 128, 128] and cfg.pool_size == 2
    cfg = parse_config(shlex.split(README_COMMANDS["Table 4 - CNN Depth 3"]))[0]
    assert cfg.model == "vgg" and cfg.depth == 3 and cfg.mlp_hidden_layers == 0 and cfg.relu_after_bottleneck
    cfg = parse_config(shlex.split(README_COMMANDS["Table 2 - Simple"]))[0]
    assert cfg.embedding == "simple" and cfg.batch_size == 32 and cfg.lr == 1e-5 and not cfg.bottleneck
    # depth > 1 defaults are Table 4's
    cfg = ExperimentConfig(depth=3)
    assert cfg.layers("kernel_size", 5, (5, 3, 3, 3)) == [5, 3, 3]
    assert cfg.layers("avg_pool", True, (True, False, False, False)) == [True, False, False]


def test_bad_options(capsys):
    with pytest.raises(ValueError, match="embedding"):
        ExperimentConfig(embedding="soft")
    with pytest.raises(ValueError, match="depth=2"):
        ExperimentConfig(depth=2, k=[1, 2, 3])
    assert main(["--depth", "2", "--k", "1", "2", "3"]) == 2
    assert "depth=2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--avg-pool", "maybe"])
    assert main(["--dry-run", "--k", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["k"] == [7]


TINY = "--dataset synthetic --train-size 192 --val-size 64 --test-size 64 --n-centroids 16 --k 4 --n-patches 1000 " \
       "--epochs 1 --kmeans-iters 3 --batch-size 32"


@pytest.mark.parametrize("extra", ["--embedding full", "--embedding hard --dictionary gaussian", "--embedding conv",
                                   "--model vgg --width 8 --depth 2 --mlp-hidden-layers 0",
                                   "--depth 2 --embedding hard --pool-size 2 --pool-stride 2"])
def test_tiny_run(tmp_path, extra, capsys):
    run_dir = tmp_path / "run"
    assert main(shlex.split(f"{TINY} {extra} --run-dir {run_dir}")) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    depth = 2 if "--depth 2" in extra else 1
    rows = summary["results"]
    assert [r["depth"] for r in rows] == ([1, 2] if "--depth 2" in extra and "vgg" not in extra else [depth])
    for r in rows:
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["val_acc"] <= 1 and r["images_per_second"] > 0
    assert "test acc" in capsys.readouterr().out
    assert any(run_dir.rglob("*.yaml")) or any(run_dir.rglob("*.json"))


def test_run_experiment_returns_kernels():
    cfg, _ = parse_config(shlex.split(TINY + " --embedding full"))
    out = cli_train.run_experiment(cfg, progress=False)
    assert out["first_conv"].shape == (16, 1, 5, 5) and out["dictionary"]["kernel"].shape == (16, 1, 5, 5)
    assert out["results"][0]["history"] and out["seconds"] > 0


@pytest.mark.parametrize("extra", ["--embedding conv", "--model vgg --width 8 --depth 2 --mlp-hidden-layers 0",
                                   "--depth 2 --embedding full --pool-size 2 --pool-stride 2"])
def test_same_seed_same_run_whatever_came_before(extra):
    """The seed alone determines a run: initialisation must not draw from whatever global random
    state earlier code left (a notebook's second run of a config used to differ from its first)."""
    cfg, _ = parse_config(shlex.split(f"{TINY} {extra} --seed 3"))
    first = cli_train.run_experiment(cfg, progress=False)
    torch.rand(17)  # disturb the global random state
    second = cli_train.run_experiment(cfg, progress=False)
    assert [r["test_acc"] for r in first["results"]] == [r["test_acc"] for r in second["results"]]
    assert torch.equal(first["first_conv"], second["first_conv"])
    other, _ = parse_config(shlex.split(f"{TINY} {extra} --seed 4"))
    assert not torch.equal(cli_train.run_experiment(other, progress=False)["first_conv"], first["first_conv"])
