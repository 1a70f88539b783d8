import pytest

from patchnb import study


def _out(seed: int, test: float, val: float, final: float, seconds: float = 2.0) -> dict:
    return {"config": {"seed": seed}, "seconds": seconds,
            "results": [{"test_acc": test, "val_acc": val, "final_val_acc": final}]}


def test_summarise_reports_mean_std_over_seeds_and_hides_raw_columns():
    row = study.summarise("Phi_full", [_out(0, 0.80, 0.81, 0.79), _out(1, 0.90, 0.91, 0.89, seconds=4.0)])
    assert row["_mean"] == pytest.approx(0.85)
    assert row["_std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std (ddof=1) of 0.80, 0.90
    assert row["test acc. (%)"] == "85.0 ± 7.1"
    assert row["selected val acc. (%)"] == "86.0 ± 7.1"
    assert row["seeds"] == "0, 1" and row["wall-clock / run (s)"] == "3"
    frame = study.table([row, study.summarise("CNN", [_out(0, 0.7, 0.7, 0.7)])])
    assert list(frame.index) == ["Phi_full", "CNN"]
    assert not any(c.startswith("_") for c in frame.columns)


def test_verdict_compares_means():
    a, b = study.summarise("a", [_out(0, 0.9, 0, 0)]), study.summarise("b", [_out(0, 0.8, 0, 0)])
    assert study.verdict(a, b) == "holds"
    assert study.verdict(b, a) == "does not hold"
    assert study.verdict(a, a) == "does not hold"


def test_study_budget_and_config(tmp_cache):
    s = study.PatchStudy("smoke", dataset="synthetic", budget={"epochs": 3})
    assert s.seeds == study.SEEDS["smoke"] and s.budget["epochs"] == 3
    assert study.BUDGETS["smoke"]["epochs"] == 1  # the module's budgets are not modified
    cfg = s.config(5, embedding="hard", k=[4])
    assert (cfg.seed, cfg.embedding, cfg.k, cfg.epochs, cfg.dataset) == (5, "hard", [4], 3, "synthetic")
    assert s.config(0).k == [study.BUDGETS["smoke"]["k"]]
    assert "scale=smoke" in s.describe() and "batch 64" in s.describe()
    assert "batch 32, SGD lr 0.01 " in study.PatchStudy("smoke", dataset="synthetic",
                                                        budget={"batch_size": 32, "lr": 0.01}).describe()


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale="huge"), "scale"),
    (dict(scale="smoke", budget={"epoch": 3}), "epoch"),
    (dict(scale="smoke", seeds=[0.5]), "seeds"),
])
def test_study_rejects_bad_parameters(tmp_cache, kwargs, match):
    with pytest.raises(ValueError, match=match):
        study.PatchStudy(dataset="synthetic", **kwargs)
