"""Facts of the introduction: the experiments the book trains (its labels A, B, C, B0), how
many models that is, and the headline numbers of experiment B (polysemantic neurons, dense
against sparse; the sparsity chapter measures the rest).

    from superposition import findings
    f = findings.intro()
    [(e.label, e.name) for e in f.experiments]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .. import analysis, experiments, store
from .motif import motif

SWEEP = "sparsity-sweep"


@dataclass(frozen=True)
class ExperimentRow:
    """One experiment of the registry, as the book's table of experiments lists it."""

    label: str
    name: str
    n: int
    m: int
    feature_probs: tuple[float, ...]
    importance_decay: float  # I_i = decay ** i; 1 is equal importance
    seeds: int  # per setting
    models: int  # settings x seeds, as cached


@dataclass(frozen=True)
class IntroFindings:
    experiments: tuple[ExperimentRow, ...]
    n_models: int  # trained models in all the cached files
    m: int  # experiment B's neurons
    capacity: int  # m / 2: features B computes without superposition
    p_dense: float
    p_sparsest: float
    poly_dense: int  # polysemantic neurons of B's lowest-loss model at p_dense
    dead_dense: int
    poly_sparsest: int
    live_sparsest: int
    # The motif detector (findings.motif) runs on every model of experiments C and B:
    motif_c_seeds: int  # C's models
    motif_c_with: int  # of those, how many it finds a motif in
    motif_b_models: int  # B's models
    motif_b_with: int


@functools.cache
def intro() -> IntroFindings:
    rows = []
    for name, e in experiments.REGISTRY.items():
        rows.append(ExperimentRow(
            label=e.label, name=name, n=e.n_features, m=e.n_hidden,
            feature_probs=tuple(e.feature_probs), importance_decay=e.importance_decay,
            seeds=len(e.seeds), models=len(store.load(name).final_loss),
        ))  # fmt: skip

    w = store.load(SWEEP)
    probs = list(w.experiment.feature_probs)
    dense, sparsest = max(probs), min(probs)
    best = {p: w.best(p) for p in probs}
    poly = analysis.polysemantic_neurons(w.W1, w.W2)
    dead = analysis.dead_neurons(w.W1, w.W2)
    motifs = motif()
    return IntroFindings(
        experiments=tuple(rows),
        n_models=sum(r.models for r in rows),
        m=w.experiment.n_hidden,
        capacity=w.experiment.n_hidden // 2,
        p_dense=dense,
        p_sparsest=sparsest,
        poly_dense=int(poly[best[dense]].sum()),
        dead_dense=int(dead[best[dense]].sum()),
        poly_sparsest=int(poly[best[sparsest]].sum()),
        live_sparsest=int((~dead[best[sparsest]]).sum()),
        motif_c_seeds=motifs.c_seeds,
        motif_c_with=motifs.c_with_motif,
        motif_b_models=motifs.b_models,
        motif_b_with=motifs.b_models_with,
    )
