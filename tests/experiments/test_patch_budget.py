"""The patch chapter's budget curves and figures (Brutzkus et al., ICML 2022): the budgets of a page
(fractions of its training images, ``train_size=None`` resolved from the split), the claims decided by the
book's rule (:func:`patchnb.experiments.verdict.budget_verdict`) with their gap, and the figure styles
(labelled axes)."""

import matplotlib
import pytest

from patchnb.experiments.patch import budget, network, plots, table1

matplotlib.use("Agg")


def _cfg(**kw):
    return network.ChapterConfig(scale="smoke", dataset="synthetic", val_size=50, test_size=50, batch_size=32,
                                 k=4, n_centroids=16, **{"budget_fractions": (0.25, 0.5, 1.0), **kw})


def test_budget_configs_scale_the_pages_images_and_keep_the_full_run(tmp_cache):
    cfg = _cfg(train_size=400)
    points = cfg.budget_configs(cfg.load_data())
    assert [n for n, _ in points] == [100, 200, 400]
    assert points[-1][1] is cfg  # the page's own runs: the same cache key as the table's
    assert [c.train_size for _, c in points[:2]] == [100, 200]
    assert all(c.epochs == cfg.epochs and c.milestones == cfg.milestones for _, c in points)  # the page's schedule


def test_budget_configs_resolve_all_of_the_split(tmp_cache):
    """train_size=None (paper scale: all the data) is the split's length before scaling."""
    cfg = _cfg(train_size=None)
    splits = cfg.load_data()
    full = len(splits.train)
    points = cfg.budget_configs(splits)
    assert [n for n, _ in points] == [round(full / 4), round(full / 2), full] and points[-1][1].train_size is None


def test_cpu_presets_share_table1s_quarter_budget_runs_and_decay_the_rate():
    """At cpu scale Table 1 trains on the whole split (54,000 images: 3,375 / 13,500 / 54,000 on its curve);
    Table 3 and the Figures train on 13,500, so their default runs are Table 1's quarter-budget runs (one
    cache key) and Table 3's second budget is Table 1's first; every run decays the rate (cosine)."""
    from dataclasses import asdict

    from patchnb.experiments.patch import figures, table3

    c1, c3, cf = (m.Config.preset("cpu") for m in (table1, table3, figures))
    sizes = {"train": 54000, "val": 6000}
    points = [(round(sizes["train"] * f), c1.replace(train_size=round(sizes["train"] * f))) for f in (0.0625, 0.25)]
    assert c1.train_size is None and c1.budget_fractions == (0.0625, 0.25, 1.0) and c1.epochs == 1
    quarter = asdict(points[1][1].run_config(0, embedding="full"))
    assert asdict(c3.run_config(0, embedding="full")) == quarter == asdict(cf.run_config(0, embedding="full", k=[64]))
    assert asdict(c3.at_budget(0.25).run_config(1, embedding="full")) == \
        asdict(points[0][1].run_config(1, embedding="full"))
    tc = c1.run_config(0).train_config()
    assert tc.schedule == "cosine" and tc.epochs == 1
    assert table1.Config.preset("paper").run_config(0).train_config().schedule == "multistep"
    with pytest.raises(ValueError, match="schedule"):
        _cfg(schedule="linear")
    with pytest.raises(ValueError, match="schedule"):
        network.RunConfig(schedule="linear")


def test_budget_configs_refuse_collapsed_budgets(tmp_cache):
    cfg = _cfg(train_size=2, budget_fractions=(0.1, 0.2, 1.0))
    with pytest.raises(ValueError, match="budget_fractions"):
        cfg.budget_configs(cfg.load_data())


@pytest.mark.parametrize("value", [(0.5, 1.0), (0.25, 0.5, 0.75), (0.0, 0.5, 1.0), (0.5, 0.5, 1.0), [0.25, "a", 1],
                                   (0.25, 0.5, 1.5), (0.25, float("nan"), 1.0), 0.5])
def test_budget_fractions_validation_names_the_parameter(value):
    with pytest.raises(ValueError, match="budget_fractions"):
        table1.Config.preset("smoke", budget_fractions=value)


def test_every_preset_has_three_budgets():
    for scale in ("smoke", "paper"):
        assert table1.Config.preset(scale).budget_fractions == (0.25, 0.5, 1.0)
    assert table1.Config.preset("cpu").budget_fractions == (0.0625, 0.25, 1.0)  # 3,375 / 13,500 / 54,000 images


def test_claims_follow_the_books_rule():
    budgets = [100, 200, 400]
    a = [[0.60, 0.62, 0.61], [0.70, 0.71, 0.72], [0.80, 0.82, 0.81]]
    b = [[0.50, 0.51, 0.50], [0.60, 0.60, 0.61], [0.70, 0.71, 0.70]]
    v = budget.decide(budgets, a, b)
    assert v.word == "holds" and budget.claim_text("claim_x", v) == {
        "claim_x": "holds", "claim_x_gap": v.gap(),
        "claim_x_reach": "the largest budget already has the claimed sign"}
    assert v.gap().startswith("+10.7 points (95 % CI ")
    assert budget.claim_numbers("claim_x", v) == {"claim_x_diff": pytest.approx(0.32 / 3)}
    assert budget.decide(budgets, b, a).word == "does not hold"
    assert budget.decide(budgets, a, 0.9).word == "does not hold"  # a threshold
    one_seed = budget.decide(budgets, [[0.6], [0.7], [0.8]], [[0.5], [0.6], [0.7]])
    assert one_seed.word == "not settled at this budget" and "one seed" in one_seed.gap()


def test_budget_text_says_the_schedule():
    t = budget.budget_text(_cfg(train_size=400, epochs=3, milestones=(2, 150), schedule="multistep"), [100, 200, 400])
    assert t == {"budget_images": "100, 200, 400",
                 "budget_schedule": "3 epoch(s) at every budget, batch 32, SGD lr 0.003, 10x drops after epochs 2"}
    assert budget.budget_text(_cfg(train_size=400, schedule="multistep"), [1, 2, 3])["budget_schedule"].endswith(
        "constant (no drop within the run)")
    assert budget.budget_text(_cfg(train_size=400), [1, 2, 3])["budget_schedule"] == (
        "1 epoch(s) at every budget, batch 32, SGD lr 0.003 with a cosine decay to 0 over each run")


def _record(seed, accs, vals):
    return {"config": {"seed": seed}, "seconds": 1.0,
            "results": [{"test_acc": a, "val_acc": a, "final_val_acc": a,
                         "history": [{"epoch": i, "val_score": v} for i, v in enumerate(vals)]} for a in accs]}


def _labelled(fig):
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


def test_figures_have_labelled_axes():
    outs = {"a": [_record(0, [0.5], [0.3, 0.4]), _record(1, [0.6], [0.5, 0.6])], "b": [_record(0, [0.4], [0.2, 0.3])]}
    rows = [network.summarise(name, o) for name, o in outs.items()]
    assert _labelled(plots.accuracy_figure(rows, "t")) == [("test accuracy (%)", "variant")]
    assert plots.val_curve(outs["a"]) == ([1, 2], [pytest.approx(40.0), pytest.approx(50.0)])
    layerwise = [_record(0, [0.5, 0.6], [0.3, 0.4])]
    assert plots.val_curve(layerwise, stages=2)[0] == [1, 2, 3, 4]  # the stages one after another
    fig = plots.curves_figure({"p": {n: plots.val_curve(o) for n, o in outs.items()}, "q": {}})
    assert _labelled(fig) == [("epoch", "validation accuracy (%)")] * 2
    bud = budget.figure([100, 200, 400], {"a": [[0.5], [0.6], [0.7]]}, "t", target=0.9)
    assert _labelled(bud) == [("training images", "test accuracy (%)")]
