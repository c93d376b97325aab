"""Facts of the weights chapter (and of the provenance tables of the setup and reproducing
chapters): one record per cached weight file of the registry, read from the file itself.

    from superposition import findings
    for f in findings.weights().files:
        print(f.label, f.name, f.file_name, f.size_bytes, f.file_sha256)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .. import experiments, store


@dataclass(frozen=True)
class CachedFile:
    """One experiment's weight file as this copy of the book was built from it."""

    label: str  # "A", "B", ... as the book calls it
    name: str  # the experiment's name, also the file's stem
    n: int  # features
    m: int  # hidden neurons
    feature_probs: tuple[float, ...]  # the settings p = 1 - S, in the registry's order
    seeds_per_setting: int
    instances: int  # settings x seeds: the leading axis of every tensor
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # ("W1", (instances, m, n)), ...
    lowest_loss: tuple[tuple[float, float], ...]  # (p, the lowest final loss over its seeds)
    file_name: str
    size_bytes: int
    file_sha256: str  # of the whole file, as published (what `sha256sum` prints)
    tensor_sha256: str  # of the tensor bytes, from the metadata (checked on every load)
    content_hash: str  # of the config and the training code
    metadata_keys: tuple[str, ...]
    device: str
    mode: str  # "compiled" or "eager"
    hardware: str  # the processor it was trained on
    torch: str
    python: str


@dataclass(frozen=True)
class WeightsFindings:
    files: tuple[CachedFile, ...]  # one per experiment of the registry, in its order
    tensor_names: tuple[str, ...]  # the tensors every file holds


def _cached_file(name: str) -> CachedFile:
    w = store.load(name)  # the file read once: its hash and size are of the bytes validated
    e = w.experiment
    return CachedFile(
        label=e.label,
        name=e.name,
        n=e.n_features,
        m=e.n_hidden,
        feature_probs=tuple(e.feature_probs),
        seeds_per_setting=len(set(w.seeds)),
        instances=len(w.final_loss),
        shapes=tuple((t, tuple(getattr(w, t).shape)) for t in store.TENSORS),
        lowest_loss=tuple(
            (p, min(w.final_loss[k] for k in w.instances_at(p))) for p in e.feature_probs
        ),
        file_name=w.path.name,
        size_bytes=w.file_size,
        file_sha256=w.file_sha256,
        tensor_sha256=w.tensor_sha256,
        content_hash=w.content_hash,
        metadata_keys=w.metadata_keys,
        device=w.device,
        mode=w.mode,
        hardware=w.hardware,
        torch=w.versions["torch"],
        python=w.versions["python"],
    )


@functools.cache
def weights() -> WeightsFindings:
    return WeightsFindings(
        files=tuple(_cached_file(name) for name in experiments.REGISTRY),
        tensor_names=store.TENSORS,
    )
