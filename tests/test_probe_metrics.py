"""patchnb.eval.probe's metrics: computed by sklearn.metrics, checked against sklearn on random labels and
against one 3-class case worked by hand; a class never predicted (zero_division=0) and bad labels."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from patchnb.eval import classification_metrics, confusion_matrix

# the hand-worked case: 6 samples, 3 classes
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]


def test_hand_worked_three_classes():
    # rows = true class, columns = predicted: class 0 -> (0, 0, 1), class 1 -> (1, 2), class 2 -> (2)
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    m = classification_metrics(Y_TRUE, Y_PRED)
    # true positives (2, 1, 1); predicted (2, 2, 2); support (3, 2, 1)
    assert m["per_class"]["precision"] == pytest.approx([1.0, 0.5, 0.5])
    assert m["per_class"]["recall"] == pytest.approx([2 / 3, 0.5, 1.0])
    assert m["per_class"]["f1"] == pytest.approx([0.8, 0.5, 2 / 3])  # 2PR / (P + R)
    assert m["per_class"]["support"] == [3, 2, 1]
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(13 / 18)          # (2/3 + 1/2 + 1) / 3
    assert m["f1"] == pytest.approx(59 / 90)              # (4/5 + 1/2 + 2/3) / 3: the mean of per-class F1
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    json.dumps(m)  # plain floats, ints and lists


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 7, (300,), generator=g)
    p = torch.where(torch.rand(300, generator=g) < 0.5, y, torch.randint(0, 6, (300,), generator=g))
    m = classification_metrics(y, p, 8)  # class 7 occurs nowhere: a zero row and column, left out of the means
    cm = confusion_matrix(y, p, 8)
    assert cm.dtype == torch.int64 and cm.shape == (8, 8) and int(cm.sum()) == 300
    assert np.array_equal(cm.numpy(), skm.confusion_matrix(y, p, labels=range(8)))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert m[name] == pytest.approx(fn(y, p, average="macro", zero_division=0)), name
        assert m["per_class"][name] == pytest.approx(
            fn(y, p, labels=range(8), average=None, zero_division=0).tolist()), name
    assert m["per_class"]["support"][7] == 0 and len(m["per_class"]["f1"]) == 8


def test_class_never_predicted_counts_zero_without_warning():
    y_true, y_pred = [0, 1, 2, 2], [0, 1, 1, 1]  # class 2 is in the labels, never predicted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0 is stated, so sklearn must not warn
        m = classification_metrics(y_true, y_pred, 4)  # class 3: in neither vector
    assert m["per_class"]["precision"] == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    assert m["per_class"]["recall"] == pytest.approx([1.0, 1.0, 0.0, 0.0])
    # macro over the classes present (0, 1, 2): class 2 counts as 0, class 3 is left out
    assert m["precision"] == pytest.approx(4 / 9)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.5)  # (1 + 1/2 + 0) / 3


def test_bad_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, n_classes=3\), got label 5 in y_pred"):
        confusion_matrix([0, 1, 2], [0, 1, 5], 3)
    with pytest.raises(ValueError, match="labels.*label 3 in y_true"):
        classification_metrics([0, 3], [0, 1], n_classes=3)
    with pytest.raises(ValueError, match="labels.*label -1"):
        confusion_matrix([0, -1], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="n_classes"):
        confusion_matrix([0], [0], n_classes=0)
    with pytest.raises(ValueError, match="no samples"):
        classification_metrics([], [])
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
