"""The SupCon checkpoint-sweep chapter at smoke scale: one checkpoint per epoch, the best on validation, one
test table next to cross-entropy."""

import re


def num(text):
    return float(re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text.replace(",", ""))[0])


def test_supcon_sweep_notebook(glued):
    g = glued("supcon_sweep")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"]
    assert int(g["n_ckpts"]) >= 2 and "epoch_" in g["best_ckpt"]
    assert num(g["supcon_seconds"]) > 0 and num(g["ce_seconds"]) > 0
    assert num(g["best_val"]) >= num(g["last_val"])  # the chosen checkpoint is the best on validation
    assert 0 <= num(g["sup_acc"]) <= 100 and 0 <= num(g["ce_acc"]) <= 100 and 0 <= num(g["sup_f1"]) <= 100
    diff = num(g["sup_acc"]) - num(g["ce_acc"])
    assert g["verdict"] == ("above" if diff > 0 else "below" if diff < 0 else "equal to")
    for key in ("fig_sweep", "tab_sweep", "tab_test", "fig_confusion"):
        assert key in g
    assert "SupCon + linear head (epoch_" in g["tab_test"] and "cross-entropy (epoch" in g["tab_test"]
    assert "SGD lr" in g["setup"] and "a checkpoint every" in g["setup"]
