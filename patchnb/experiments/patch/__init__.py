"""The chapter "Learning with patch-based features" (Brutzkus et al., "Efficient Learning of CNNs using
Patch Based Features", ICML 2022), one recipe module per page:

* :mod:`.network`: one run of the patch network or a CNN baseline (:class:`~.network.RunConfig`, what
  ``patchnb train`` runs) and what the pages share (budget per scale, data, cached runs over seeds,
  summary rows, the verdict rule);
* :mod:`.table1` (embeddings and dictionaries against a vanilla CNN), :mod:`.table2` (the constrained
  linear map), :mod:`.table3` (pooling and bottleneck), :mod:`.table4` (depth, layerwise), :mod:`.figures`
  (Figures 6, 8 and 9).

A page imports its module (``from patchnb.experiments.patch import table1``); this package imports
nothing, so a run's cache key (its module's import closure) does not depend on the other pages.
"""
