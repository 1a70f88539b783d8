import pytest
import torch

from patchnb import cache


def test_cached_runs_once_per_config(tmp_cache):
    calls = []

    def fn(run_dir):
        calls.append(run_dir)
        return {"x": len(calls)}

    assert cache.cached("t", {"a": 1}, fn) == {"x": 1}
    assert cache.cached("t", {"a": 1}, fn) == {"x": 1}
    assert cache.cached("t", {"a": 2}, fn) == {"x": 2}
    assert len(calls) == 2 and calls[0] != calls[1]


def test_cached_run_of_a_patchnb_function_is_keyed_by_its_own_module(tmp_cache, monkeypatch):
    """A run computed by patchnb code is shared by notebooks that loaded different patchnb modules;
    code from outside patchnb (a notebook's lambda) is keyed by every loaded patchnb module."""
    import sys
    import types

    def fn(run_dir):
        return str(run_dir)

    fn.__module__ = "patchnb.cluster"
    first = cache.cached("t", {}, fn)
    monkeypatch.setitem(sys.modules, "patchnb.plots", types.ModuleType("patchnb.plots"))
    assert cache.cached("t", {}, fn) == first
    assert first.endswith(cache.run_key("t", {}, ["patchnb.cluster"]))
    fn.__module__ = "__main__"
    assert cache.cached("t", {}, fn).endswith(cache.run_key("t", {}))
    fn.__module__ = "patchnb.plots"  # another closure, another key
    assert cache.cached("t", {}, fn) != first


def test_cached_values_are_plain_and_load_without_code(tmp_cache):
    """A cached result holds only tensors and plain containers; anything else is refused before it is
    written, so every cache file loads with weights_only=True."""
    value = {"acc": 0.5, "curve": [1, 2.5], "w": torch.ones(2), "nested": {"t": (1, "a", None, True)}}
    assert cache.cached("plain", {}, lambda d: value)["w"].sum() == 2
    assert cache.cached("plain", {}, lambda d: 1 / 0)["curve"] == [1, 2.5]  # loaded, not recomputed

    class Thing:
        pass

    with pytest.raises(TypeError, match=r"\['bad'\]\[1\] is a .*Thing"):
        cache.cached("bad", {}, lambda d: {"bad": [1, Thing()]})
    import numpy as np

    with pytest.raises(TypeError, match="numpy.ndarray.*tolist"):
        cache.check_plain(np.zeros(2))
