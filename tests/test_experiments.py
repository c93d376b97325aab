import dataclasses

import pytest

from superposition import experiments
from superposition.experiments import REGISTRY, Experiment


def test_registry_holds_the_spec_experiments():
    a, b = REGISTRY["no-superposition"], REGISTRY["sparsity-sweep"]
    assert (a.n_features, a.n_hidden) == (3, 6)
    assert (b.n_features, b.n_hidden) == (100, 40)
    assert b.feature_probs == (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
    assert b.importance()[:3] == pytest.approx([1.0, 0.8, 0.64])
    grids = (*experiments.CAPACITY, *experiments.SCALING, *experiments.READOUT_VARIANTS)
    for e in REGISTRY.values():  # the grids of the last two chapters take three seeds
        if e.start == "constructed":  # two constructed starts per setting
            assert e.seeds == experiments.CONSTRUCTED_SEEDS and e.parent in REGISTRY
            continue
        assert len(e.seeds) >= (3 if e in grids else 4)
    assert len(experiments.CAPACITY) == 5 and all(e.name in REGISTRY for e in experiments.CAPACITY)


def test_instances_enumerate_every_setting_and_seed():
    b = REGISTRY["sparsity-sweep"]
    pairs = list(zip(b.instance_probs, b.instance_seeds, strict=True))
    assert len(pairs) == b.n_instances == len(b.feature_probs) * len(b.seeds)
    assert len(set(pairs)) == len(pairs)


def test_json_round_trip_and_stable_hash():
    for e in REGISTRY.values():
        again = Experiment.from_json(e.to_json())
        assert again == e
        assert again.config_hash() == e.config_hash()


def test_hash_changes_with_any_field():
    b = REGISTRY["sparsity-sweep"]
    assert dataclasses.replace(b, steps=b.steps + 1).config_hash() != b.config_hash()
    assert dataclasses.replace(b, seeds=(9, 8, 7, 6)).config_hash() != b.config_hash()


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["sparsity-sweep"].steps = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(feature_probs=(0.0,)), "probabilit"),
        (dict(seeds=(1, 1)), "seeds"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(lr_schedule="linear"), "lr_schedule"),
    ],
)
def test_bad_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(REGISTRY["no-superposition"], **change)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="sparsity-sweep"):
        experiments.get("nope")
