"""The SupCon checkpoint-sweep chapter at smoke scale: one checkpoint per epoch, the best on validation, one
test table next to cross-entropy, the claim "SupCon beats cross-entropy" decided from the budget curve over
epochs (the verdict is recomputed with the rule in tests/experiments/test_supcon_sweep.py)."""

import json
import re
from pathlib import Path

from patchnb.experiments.verdict import VERDICTS


def num(text):
    return float(re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text.replace(",", ""))[0])


def test_supcon_sweep_notebook(glued):
    g = glued("supcon_sweep")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"]
    assert int(g["n_ckpts"]) >= 2 and "epoch_" in g["best_ckpt"]
    assert num(g["supcon_seconds"]) > 0 and num(g["ce_seconds"]) > 0
    assert num(g["best_val"]) >= num(g["last_val"])  # the chosen checkpoint is the best on validation
    assert 0 <= num(g["sup_acc"]) <= 100 and 0 <= num(g["ce_acc"]) <= 100 and 0 <= num(g["sup_f1"]) <= 100
    assert abs(num(g["diff"]) - (num(g["sup_acc"]) - num(g["ce_acc"]))) <= 0.11  # rounded to 0.1 each
    assert g["claim_supcon"] in VERDICTS and g["claim_supcon_gap"].split(" (")[0].endswith(" points")
    assert g["claim_supcon_curve"].count(" points at ") == 3 and g["claim_supcon_curve"].endswith("3 epochs")
    if g["claim_supcon"] == "holds":
        assert num(g["claim_supcon_gap"]) > 0
    assert g["budget_epochs"] == "1, 2, 3" and g["budget_seeds"] == "2 seeds (0, 1)"
    assert " ± " in g["budget_sup_acc"] and " ± " in g["budget_ce_acc"]
    for key in ("fig_sweep", "tab_sweep", "tab_test", "fig_confusion", "fig_budget"):
        assert key in g
    assert "SupCon + linear head (epoch_" in g["tab_test"] and "cross-entropy (epoch" in g["tab_test"]
    assert "SGD lr" in g["setup"] and "a checkpoint every" in g["setup"]


def test_supcon_page_cites_the_verdict_from_the_budget_curve():
    nb = json.loads((Path(__file__).parents[2] / "notebooks" / "supcon_sweep.ipynb").read_text())
    prose = " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for name in ("claim_supcon", "claim_supcon_gap", "claim_supcon_curve", "budget_epochs", "budget_seeds",
                 "fig_budget"):
        assert name in prose, name
    assert "{glue:text}`verdict`" not in prose and "not settled at this budget" in prose
