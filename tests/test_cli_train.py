"""`patchnb train` (Brutzkus et al., ICML 2022, the original main.py's options): every command of the
original README parses to the intended configuration, bad options fail clearly, and a tiny run on
synthetic data trains, writes its run folder and summary. The run itself (``run_network``) is tested in
tests/experiments/test_patch_network.py."""

import json
import shlex

import pytest

from patchnb.cli_train import README_COMMANDS, main, parse_config
from patchnb.experiments.patch.network import RunConfig


def test_readme_commands_parse():
    assert len(README_COMMANDS) >= 30
    for name, cmd in README_COMMANDS.items():
        cfg, _ = parse_config(shlex.split(cmd))
        assert isinstance(cfg, RunConfig), name
    cfg = parse_config(shlex.split(README_COMMANDS["Table 1 - Phi_hard with random patches"]))[0]
    assert (cfg.embedding, cfg.dictionary, cfg.n_centroids, cfg.k, cfg.lr) == ("hard", "gaussian", 1024, None, 0.003)
    cfg = parse_config(shlex.split(README_COMMANDS["Table 4 - Phi_full"]))[0]
    assert cfg.depth == 4 and cfg.kernel_size == [5, 3, 3, 3] and cfg.avg_pool == [True, False, False, False]
    assert cfg.layers("k") == [256, 128, 128, 128] and cfg.pool_size == 2
    cfg = parse_config(shlex.split(README_COMMANDS["Table 4 - CNN Depth 3"]))[0]
    assert cfg.model == "vgg" and cfg.depth == 3 and cfg.mlp_hidden_layers == 0 and cfg.relu_after_bottleneck
    cfg = parse_config(shlex.split(README_COMMANDS["Table 2 - Simple"]))[0]
    assert cfg.embedding == "simple" and cfg.batch_size == 32 and cfg.lr == 1e-5 and not cfg.bottleneck
    assert cfg.layers("avg_pool") == [False] and cfg.layers("batch_norm") == [False]
    # depth > 1 defaults are Table 4's, depth 1's the paper's single layer
    cfg = RunConfig(depth=3)
    assert cfg.layers("kernel_size") == [5, 3, 3] and cfg.layers("padding") == [0, 0, 0]
    assert cfg.layers("avg_pool") == [True, False, False] and cfg.layers("k") == [256, 128, 128]
    assert RunConfig(depth=6).layers("k") == [256, 128, 128, 128, 128, 128]
    assert RunConfig().layers("k") == [256] and RunConfig(k=[7], depth=2).layers("k") == [7, 7]


def test_bad_options(capsys):
    with pytest.raises(ValueError, match="embedding"):
        RunConfig(embedding="soft")
    with pytest.raises(ValueError, match="depth=2"):
        RunConfig(depth=2, k=[1, 2, 3])
    assert main(["--depth", "2", "--k", "1", "2", "3"]) == 2
    assert "depth=2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--avg-pool", "maybe"])
    assert main(["--dry-run", "--k", "7"]) == 0
    assert json.loads(capsys.readouterr().out)["k"] == [7]
    # the Simple model (one linear layer over the whole embedding) has no pooling, BatchNorm or bottleneck,
    # as the original asserts, and no layer to stack
    assert main(["--dry-run", "--embedding", "simple"]) == 2
    err = capsys.readouterr().err
    assert "--avg-pool false" in err and "--batch-norm false" in err and "--bottleneck false" in err
    with pytest.raises(ValueError, match="depth=2"):
        RunConfig(embedding="simple", depth=2, avg_pool=[False], batch_norm=[False], bottleneck=False)
    with pytest.raises(ValueError, match="dictionary"):
        RunConfig(dictionary="uniform")


TINY = "--dataset synthetic --train-size 192 --val-size 64 --test-size 64 --n-centroids 16 --k 4 --n-patches 1000 " \
       "--epochs 1 --kmeans-iters 3 --batch-size 32"


@pytest.mark.parametrize("extra", ["--embedding full", "--embedding hard --dictionary gaussian", "--embedding conv",
                                   "--embedding simple --avg-pool false --batch-norm false --bottleneck false",
                                   "--embedding full --dictionary gaussian_centroids",
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
