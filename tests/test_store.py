"""The weight cache keeps SPEC's contract and refuses every file it cannot trust."""

import dataclasses
import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save

from superposition import store
from superposition.experiments import Experiment
from superposition.train import TrainResult

TINY = Experiment(
    name="tiny", label="T", title="tiny", n_features=3, n_hidden=2,
    feature_probs=(1.0, 0.1), importance_decay=0.9, seeds=(0, 1),
    steps=10, batch_size=8, lr=1e-3, weight_decay=0.0,
)  # fmt: skip


def fake_result(seed=0):
    g = torch.Generator().manual_seed(seed)
    k, m, n = TINY.n_instances, TINY.n_hidden, TINY.n_features
    return TrainResult(
        W1=torch.randn(k, m, n, generator=g), W2=torch.randn(k, n, m, generator=g),
        b=torch.randn(k, n, generator=g), final_loss=[0.1, 0.2, 0.3, 0.4],
        device="cpu", seconds=1.0,
    )  # fmt: skip


@pytest.fixture
def saved(tmp_path):
    result = fake_result()
    return store.save(TINY, result, tmp_path), result


def test_round_trip(saved, tmp_path):
    path, result = saved
    assert path == tmp_path / "tiny.safetensors"
    w = store.load(TINY, tmp_path)
    for name in ("W1", "W2", "b"):
        assert torch.equal(getattr(w, name), getattr(result, name))
        assert getattr(w, name).dtype == torch.float32
    assert w.feature_probs == [1.0, 1.0, 0.1, 0.1]
    assert w.seeds == [0, 1, 0, 1]
    assert w.final_loss == [0.1, 0.2, 0.3, 0.4]
    assert w.best(0.1) == 2 and w.instances_at(1.0) == [0, 1]
    assert w.versions["torch"] == torch.__version__
    assert w.experiment == TINY


def test_metadata_is_readable_without_our_code(saved):
    from safetensors import safe_open

    path, _ = saved
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert f.get_tensor("W1").shape == (4, 2, 3)
    assert json.loads(meta["config"])["n_hidden"] == 2
    assert json.loads(meta["feature_probs"]) == [1.0, 1.0, 0.1, 0.1]
    assert len(meta["tensor_sha256"]) == 64 and len(meta["content_hash"]) == 64


def test_the_same_weights_give_the_same_file(tmp_path):
    a = store.save(TINY, fake_result(), tmp_path / "a").read_bytes()
    b = store.save(TINY, fake_result(), tmp_path / "b").read_bytes()
    assert a == b


def test_missing_file_names_the_rebuild_command(tmp_path):
    with pytest.raises(store.WeightsMissing, match="make figures.*--only tiny"):
        store.load(TINY, tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 100, -40])
def test_truncated_file_is_refused(saved, keep):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(store.WeightsCorrupt, match="make figures"):
        store.load(TINY, path.parent)


def test_flipped_tensor_byte_is_caught(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside b's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(store.WeightsCorrupt, match="SHA-256"):
        store.load(TINY, path.parent)


def _rewrite(path, tensors=None, **meta_changes):
    """Rewrite a saved file with changed tensors or metadata (None deletes a key)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        old = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    for key, value in meta_changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    tensors = old if tensors is None else tensors
    path.write_bytes(st_save(tensors, metadata=meta))


def test_wrong_shapes_are_refused(saved):
    path, result = saved
    tensors = {"W1": torch.zeros(4, 3, 3), "W2": result.W2, "b": result.b}
    _rewrite(path, tensors, tensor_sha256=store.tensor_sha256(tensors))
    with pytest.raises(store.WeightsCorrupt, match="W1 is .* expected float32 \\(4, 2, 3\\)"):
        store.load(TINY, path.parent)


def test_wrong_dtype_is_refused(saved):
    path, result = saved
    tensors = {"W1": result.W1.double(), "W2": result.W2, "b": result.b}
    _rewrite(path, tensors, tensor_sha256="0" * 64)
    with pytest.raises(store.WeightsCorrupt, match="float64"):
        store.load(TINY, path.parent)


def test_stale_code_hash_is_refused(saved):
    path, _ = saved
    _rewrite(path, content_hash="f" * 64)
    with pytest.raises(store.WeightsStale, match="training code changed.*make figures"):
        store.load(TINY, path.parent)


def test_file_from_another_config_is_stale(saved):
    path, _ = saved
    other = dataclasses.replace(TINY, steps=11)
    with pytest.raises(store.WeightsStale, match="different config"):
        store.load(other, path.parent)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(final_loss=None), "lacks final_loss"),
        (dict(seeds="[0, 1"), "malformed JSON"),
        (dict(final_loss="[0.1]"), "one entry per instance"),
        (dict(feature_probs="[1.0, 1.0, 0.2, 0.2]"), "do not match"),
        (dict(format="other/9"), "unknown format"),
    ],
)
def test_bad_metadata_is_refused(saved, change, message):
    path, _ = saved
    _rewrite(path, **change)
    with pytest.raises(store.WeightsCorrupt, match=message):
        store.load(TINY, path.parent)


def test_not_json_header_is_refused(tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes((10).to_bytes(8, "little") + b"not json!!" + b"\0" * 16)
    with pytest.raises(store.WeightsCorrupt, match="not valid JSON"):
        store.load(TINY, tmp_path)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(pickle.dumps(_Exploit()))
    # Control: unpickling this file really would run code.
    pickle.loads(path.read_bytes())
    assert (tmp_path / "PWNED").exists()
    (tmp_path / "PWNED").unlink()
    with pytest.raises(store.WeightsCorrupt):
        store.load(TINY, tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(saved, monkeypatch):
    path, _ = saved
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(TINY, fake_result(seed=1), path.parent)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]


def test_status_never_raises(saved, tmp_path):
    path, _ = saved
    assert store.status(TINY, tmp_path)[0] == "fresh"
    path.write_bytes(b"junk")
    assert store.status(TINY, tmp_path)[0] == "corrupt"
    path.unlink()
    assert store.status(TINY, tmp_path)[0] == "missing"


def test_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(store.ENV_FOLDER, str(tmp_path))
    assert store.path_for(TINY) == tmp_path / "tiny.safetensors"


def test_fetch_downloads_validates_and_refuses_bad_files(saved, tmp_path, monkeypatch):
    import site_check

    path, _ = saved
    site = tmp_path / "site"
    site.mkdir()
    (site / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(store, "get", lambda name: TINY)
    with site_check.serve(site) as url:
        local = tmp_path / "local"
        assert store.fetch("tiny", url, local) == local / path.name
        assert store.load(TINY, local).tensor_sha256 == store.load(TINY, path.parent).tensor_sha256
        bad = tmp_path / "bad"
        (site / path.name).write_bytes(path.read_bytes()[:-7])
        with pytest.raises(store.WeightsCorrupt):
            store.fetch("tiny", url, bad)
        assert not (bad / path.name).exists()
        with pytest.raises(ValueError, match="http"):
            store.fetch("tiny", "file:///etc/", tmp_path / "other")
