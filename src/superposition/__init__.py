"""Computation in superposition: the absolute-value toy models of Elhage et al. (2022).

python -m superposition figures   # train what is missing or stale, cache the weights
python -m superposition list      # what is cached, fresh or stale, with losses
python -m superposition check     # validate every cached file (non-zero exit on a problem)

from superposition import store
weights = store.load("sparsity-sweep")       # validated; raises a clear error if not usable
"""

__version__ = "0.1.0"
