"""Every recipe's cpu preset through its canary (patchnb.experiments.canary): the data, patch moments,
whitenings, dictionaries and embeddings at the cpu sizes, which the smoke-scale tests never reach, and a
few training steps of every model the canary trains. Checked: the sizes the stages ran at are the
preset's, each covariance is symmetric and its whitenings were built, each dictionary has the preset's
shape (N, D), and every loss and score is finite. The dictionary page runs whole at cpu scale instead
(tests/notebooks/test_dictionary_cpu.py)."""

import importlib
import math
import re

import pytest

from patchnb.experiments.canary import PATCH_VARIANTS, RECIPES, TABLE4_DEPTH, canary

from ..conftest import needs_fmnist

STEPS = 3
#: Fashion-MNIST's training split less the 10% validation split (a preset's train_size=None)
FMNIST_TRAIN = 54_000
D = 25  # a 5x5 patch of a one-channel image


def preset(recipe):
    return importlib.import_module(f"patchnb.experiments.{recipe}").Config.preset("cpu")


def training_images(cfg) -> int:
    """Training images of a cpu preset."""
    size = cfg.train_size if hasattr(cfg, "train_size") else cfg.n_train
    return size or FMNIST_TRAIN


def expected_dictionaries(recipe, cfg) -> dict:
    """(N, D) of the dictionaries each canary builds, from the cpu preset."""
    if recipe == "ssl_zoo":
        return {"phi_full": (cfg.phi_n_centroids, cfg.phi_patch_size ** 2)}
    if recipe == "patch.table1":
        return {"Phi_hard, random patches": (cfg.n_centroids, D), "Phi_full, clustered patches": (cfg.n_centroids, D)}
    if recipe in ("patch.table2", "patch.table3"):
        return {name: (cfg.n_centroids, D) for name in PATCH_VARIANTS[recipe]}
    if recipe == "patch.table4":
        return {"Phi_full": (cfg.n_centroids, D)}  # layer 1's (the deeper layers' dictionaries train their layers)
    if recipe == "patch.figures":
        return {"largest k": (cfg.n_centroids, D), "Figure 6 (ZCA)": (cfg.n_centroids, D)}
    return {}


def finite(values) -> bool:
    return len(values) > 0 and all(math.isfinite(v) for v in values)


@needs_fmnist
@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_cpu_canary(recipe):
    cfg = preset(recipe)
    r = canary(recipe, "cpu", steps=STEPS)
    print(f"canary {recipe}: {r.seconds:.1f} s")
    if recipe != "shape_bias":  # its stimuli are drawn inside each run (checked below: the silhouettes)
        assert r.sizes["train"] == training_images(cfg)
    assert r.dictionaries == expected_dictionaries(recipe, cfg)
    for setting, asymmetry in r.covariances.items():  # symmetric by construction (patches.patch_moments)
        assert asymmetry == 0, setting
    for setting, shape in r.whitenings.items():  # "<size>x<size> <kind>": a (D, D) matrix, D = size^2
        side = int(re.search(r"(\d+)x\1", setting).group(1))
        assert shape == (side * side, side * side), setting
    for name, losses in r.losses.items():
        assert finite(losses), (name, losses)
    assert finite(list(r.scores.values())), r.scores

    if recipe == "intrinsic_dimension":
        assert r.sizes["points"] == cfg.n_points and set(r.covariances) == {"5x5"}
        assert len(r.scores) == 5  # the five point sets of Figure 5
    elif recipe.startswith("patch."):
        assert set(r.losses) == set(PATCH_VARIANTS[recipe])
        if recipe == "patch.table4":  # one fit per layer of the layerwise models
            assert len(r.losses["Phi_full"]) == len(r.losses["CNN (layerwise)"]) == TABLE4_DEPTH
    elif recipe == "ssl_zoo":
        assert set(r.losses) == {*cfg.methods, "supervised", "phi_full"}
    elif recipe == "emp_ssl":
        assert set(r.losses) == {"emp_ssl", "simclr"}
    elif recipe == "supcon_sweep":
        assert set(r.losses) == {"supcon", "cross-entropy"}
    elif recipe == "shape_bias":
        assert r.sizes["masks_train"] == 10 * cfg.masks_train and r.sizes["transfer_train"] == cfg.fmnist
        assert set(r.scores) == {*(f"{m} (consistent)" for m in cfg.models), f"{cfg.transfer_arch} (stylized)",
                                 "transfer frozen", "transfer finetune"}
