"""Inference sufficiency: lossy and reduced representations scored by the errors of the science done on them.

- :mod:`~cubebench.sufficiency.representations`: the representations (lossless, quantized, binned, events, ...);
- :mod:`~cubebench.sufficiency.targets`: the inference targets (bright field, ADF, centre of mass, mean pattern)
  in pure NumPy, computed per chunk and combined;
- :mod:`~cubebench.sufficiency.config`: the ``sufficiency:`` settings of an experiment;
- :mod:`~cubebench.sufficiency.run`: representations written, read back, verified and scored on the cluster;
- :mod:`~cubebench.sufficiency.results`: the ``sufficiency.nc`` schema and its loader;
- :mod:`~cubebench.sufficiency.stats`: answers ("the smallest representation within a tolerance") from it.

This package imports nothing from its submodules, so that the experiment can validate its settings through
:mod:`~cubebench.sufficiency.config` without loading the cluster machinery of :mod:`~cubebench.sufficiency.run`.
"""
