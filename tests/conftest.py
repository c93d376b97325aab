"""Shared fixtures. Claims tests use the weights `make figures` cached in this run; if a
file is missing or stale they train it once here (never skip), and every test shares it."""

import pytest

from superposition import experiments, store


@pytest.fixture(scope="session")
def trained():
    cache: dict[str, store.Weights] = {}

    def get(name: str) -> store.Weights:
        if name not in cache:
            experiment = experiments.get(name)
            try:
                cache[name] = store.load(experiment)
            except store.WeightsError:
                from superposition.train import train

                code_hash = store.content_hash(experiment)
                store.save(experiment, train(experiment, progress=False), code_hash=code_hash)
                cache[name] = store.load(experiment)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def every_model(trained):
    """Every registered experiment, cached (trained here once if missing or stale): for the
    chapters whose findings read all of them."""
    return [trained(name) for name in experiments.REGISTRY]
