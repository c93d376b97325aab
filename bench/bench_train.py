"""Training speed, measured side by side: our trainer against the two common ways to train
these models, and against the matrix-multiply bound of this machine.

    make bench        # or: .venv/bin/python bench/bench_train.py [--steps N] [--part P]

Work: experiment B (every sparsity and seed, batch 1024) and experiment A. Each method runs
in its own process (so peak memory is its own), in `--repeats` rounds of every method in
turn; the table shows the median steps/s with its range, and ratios as the median of the
ratios within a round, because this kind of machine drifts by tens of percent over minutes.
"Ours" is `train()` itself, the function `make figures` runs, with the book's recipe
(small init, mean bias, warm-up, cosine schedule, recycling, evaluation) on a shortened run;
its steps/s excludes the first step (which compiles), and its other phases are printed
beneath the table. The "full run" column is the steps alone. Ratios are against the einsum
loop, the loop of ARENA's superposition exercises and of the official notebook: Adam at
lr 1e-3, a fresh `torch.rand` batch every step, autograd.

A second table (`--part capacity`) times the capacity chapter's five experiments trained
together (`train_together`, as `make figures` trains them) and one after the other, against B
in the same rounds: the chapter's training budget is B's time. A short run's ratio to B
depends on its length, so the budget itself is read off a whole `make figures` (on a 2-core
AMD EPYC, seven fresh clones: capacity 551, 503, 525, 549, 447, 541 and 510 s against B's
565, 559, 609, 519, 614, 614 and 620 s, ratios 0.73-1.06, for the machine's speed drifts
within a run; at 300 steps the ratio was 0.85 and 0.97 in two sessions, and for the earlier
grid with E40 in place of E5, 1.19 at 60 steps and 0.92 at 300, where whole runs gave
0.99-1.16).

The benchmark holds the CPU lock (superposition.cpu_slot), so it never runs beside a training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from superposition import experiments
from superposition.cpu_slot import cpu_slot


def flops_per_step(e: experiments.Experiment) -> float:
    """Multiply-adds of the five matrix products of one step (forward 2, backward 3), x2."""
    return 2 * 5 * e.n_instances * e.batch_size * e.n_features * e.n_hidden


def _short(e: experiments.Experiment, steps: int) -> experiments.Experiment:
    """The experiment cut to `steps` steps, its warm-up and recycling steps scaled to fit."""
    return dataclasses.replace(
        e,
        steps=steps,
        warmup_steps=min(e.warmup_steps, steps // 4),
        recycle_at=tuple(sorted({max(1, r * steps // e.steps) for r in e.recycle_at})),
    )


def run_ours(e: experiments.Experiment, steps: int) -> dict:
    """`train()` itself, the function `make figures` runs, on `steps` steps of the experiment
    (its recycling steps scaled to the shorter run), end to end and per phase."""
    from superposition.train import train

    return _phases(e, steps, train(_short(e, steps), device="cpu", progress=False).phases)


def run_together(e: None, steps: int) -> dict:
    """The five capacity experiments as `make figures` trains them: `train_together`."""
    from superposition.train import train_together

    short = [_short(c, steps) for c in experiments.CAPACITY]
    result = train_together(short, device="cpu", progress=False)[0]
    return _phases(experiments.CAPACITY[0], steps, result.phases)


def run_apart(e: None, steps: int) -> dict:
    """The five capacity experiments one after the other, each its own `train()`."""
    from superposition.train import PHASES, train

    phases = dict.fromkeys(PHASES, 0.0)
    for c in experiments.CAPACITY:
        for key, seconds in train(_short(c, steps), device="cpu", progress=False).phases.items():
            phases[key] += seconds
    return _phases(experiments.CAPACITY[0], steps, phases)


def _phases(e: experiments.Experiment, steps: int, phases: dict) -> dict:
    """Steps/s without the first step (which compiles), and the other phases per full run."""
    short = _short(e, steps)
    return {
        "steps_per_s": (steps - 1) / phases["steps"],  # the loop without its first step
        "compile_s": phases["first step (compiles)"],
        # per recycling round, times the rounds of a full run
        "recycling_s": phases["recycling"] * len(e.recycle_at) / max(1, len(short.recycle_at)),
        "evaluation_s": phases["evaluation"],
        "setup_s": phases["setup"],
        "end_to_end_s": sum(phases.values()),
    }


def run_einsum(e: experiments.Experiment, steps: int) -> dict:
    g = torch.Generator().manual_seed(0)
    std = (2 / (e.n_features + e.n_hidden)) ** 0.5
    W1 = (torch.randn(e.n_instances, e.n_hidden, e.n_features, generator=g) * std).requires_grad_()
    W2 = (torch.randn(e.n_instances, e.n_features, e.n_hidden, generator=g) * std).requires_grad_()
    b = torch.zeros(e.n_instances, e.n_features, requires_grad=True)
    optimiser = torch.optim.Adam([W1, W2, b], lr=1e-3)
    probs = torch.tensor(e.instance_probs)[None, :, None]
    importance = torch.tensor(e.importance())

    def step(t: int) -> None:
        shape = (e.batch_size, e.n_instances, e.n_features)
        x = torch.where(torch.rand(shape) <= probs, torch.rand(shape) * 2 - 1, 0.0)
        h = torch.relu(torch.einsum("bif,ihf->bih", x, W1))
        out = torch.relu(torch.einsum("bih,ifh->bif", h, W2) + b)
        loss = (importance * (x.abs() - out) ** 2).mean(dim=(0, 2)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return _timed(step, steps)


def run_naive(e: experiments.Experiment, steps: int) -> dict:
    models, optimisers = [], []
    for _ in range(e.n_instances):
        model = torch.nn.Sequential(
            torch.nn.Linear(e.n_features, e.n_hidden, bias=False),
            torch.nn.ReLU(),
            torch.nn.Linear(e.n_hidden, e.n_features),
            torch.nn.ReLU(),
        )
        models.append(model)
        optimisers.append(torch.optim.Adam(model.parameters(), lr=1e-3))
    importance = torch.tensor(e.importance())

    def step(t: int) -> None:
        for p, model, optimiser in zip(e.instance_probs, models, optimisers, strict=True):
            shape = (e.batch_size, e.n_features)
            x = torch.where(torch.rand(shape) <= p, torch.rand(shape) * 2 - 1, 0.0)
            loss = (importance * (x.abs() - model(x)) ** 2).sum(-1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    return _timed(step, steps)


def run_bound(e: experiments.Experiment, steps: int) -> dict:
    """Only the five batched matrix products of a dense step, at the step's shapes and in
    its layout (model.py: the hidden axis first), all instances in one call."""
    k, B, n, m = e.n_instances, e.batch_size, e.n_features, e.n_hidden
    x, d = torch.rand(k, B, n), torch.rand(k, B, n)
    hT, W1, W2 = torch.rand(k, m, B), torch.rand(k, m, n), torch.rand(k, n, m)

    def step(t: int) -> None:
        torch.bmm(W1, x.transpose(1, 2))  # h^T
        torch.bmm(hT.transpose(1, 2), W2.transpose(1, 2))  # outputs
        torch.bmm(hT, d)  # dW2^T
        torch.bmm(W2.transpose(1, 2), d.transpose(1, 2))  # d pre-activation^T
        torch.bmm(hT, x)  # dW1

    return _timed(step, steps)


def _timed(step, steps: int) -> dict:
    for t in range(min(20, steps)):  # warm-up
        step(t)
    start = time.perf_counter()
    for t in range(steps):
        step(t)
    seconds = time.perf_counter() - start
    return {"steps_per_s": steps / seconds}


METHODS = {"ours": run_ours, "einsum": run_einsum, "naive": run_naive, "bound": run_bound}
CAPACITY = "capacity"  # the capacity chapter's five experiments, as one "experiment" here
CAPACITY_METHODS = {"together": run_together, "apart": run_apart}


def child(method: str, name: str, steps: int) -> None:
    torch.manual_seed(0)
    if name == CAPACITY:
        result = CAPACITY_METHODS[method](None, steps)
    else:
        result = METHODS[method](experiments.get(name), steps)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_child(method: str, name: str, steps: int) -> dict:
    """One timed run of `method` on experiment `name`, in a fresh process."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, name, "--steps", str(steps)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def paired(rounds: list[dict], method: str, against: str) -> float:
    """The median over rounds of method's steps/s over `against`'s in the same round."""
    return statistics.median(r[method]["steps_per_s"] / r[against]["steps_per_s"] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--part",
        choices=("all", "speed", "capacity"),
        default="all",
        help="speed: train() against the common loops; capacity: the capacity experiments "
        "trained together and apart, against B",
    )
    parser.add_argument(
        "--child", nargs=2, metavar=("METHOD", "EXPERIMENT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.steps)
        return
    with cpu_slot("make bench"):  # no training beside it to share the cores
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"{args.repeats} rounds")  # fmt: skip
        if args.part in ("all", "speed"):
            bench(args)
        if args.part in ("all", "capacity"):
            bench_capacity(args)


def bench_capacity(args: argparse.Namespace) -> None:
    """The capacity experiments trained together and apart, against B, paired by round."""
    B = experiments.SPARSITY_SWEEP
    rounds = [
        {
            "together": run_child("together", CAPACITY, args.steps),
            "apart": run_child("apart", CAPACITY, args.steps),
            "B": run_child("ours", B.name, args.steps),
        }
        for _ in range(args.repeats)
    ]
    labels = " + ".join(c.label for c in experiments.CAPACITY)
    count = sum(c.n_instances for c in experiments.CAPACITY)
    print(f"\ncapacity ({labels}: {count} instances) against B ({B.n_instances} instances)")
    print(f"{'method':<42}{'steps/s':>10}{'(range)':>16}{'÷ apart':>10}{'÷ B':>8}"
          f"{'full run s':>12}")  # fmt: skip
    rows = {
        "together": "train_together() (what figures runs)",
        "apart": "train() on each, one after the other",
        "B": f"B: train() ({B.name})",
    }
    for method, label in rows.items():
        runs = [r[method]["steps_per_s"] for r in rounds]
        spread = f"{min(runs):.1f}-{max(runs):.1f}"
        # a step of each method is one step of all its models: time ratios are speed ratios
        apart, over_b = paired(rounds, "apart", method), paired(rounds, "B", method)
        full = statistics.median(_full_run(r[method], B.steps) for r in rounds)
        print(f"{label:<42}{statistics.median(runs):>10.1f}{spread:>16}{apart:>10.2f}"
              f"{over_b:>8.2f}{full:>12.0f}")  # fmt: skip
    print("(÷ apart, ÷ B: time per step over that of the other in the same round; full run: "
          "steps, compilation, recycling and evaluation of a 20,000-step run)")  # fmt: skip


def _full_run(result: dict, steps: int) -> float:
    return (result["setup_s"] + result["compile_s"] + steps / result["steps_per_s"]
            + result["recycling_s"] + result["evaluation_s"])  # fmt: skip


def bench(args: argparse.Namespace) -> None:
    for name in ("sparsity-sweep", "no-superposition"):
        e = experiments.get(name)
        # Round-robin: each round runs every method once, so a slow minute of the machine
        # hits all methods alike, and each ratio is taken within a round (paired).
        rounds = [
            {method: run_child(method, name, args.steps) for method in METHODS}
            for _ in range(args.repeats)
        ]
        rows = {
            method: {key: statistics.median(r[method][key] for r in rounds) for key in result}
            for method, result in rounds[0].items()
        }
        flops = flops_per_step(e)
        print(
            f"\n{e.label} {name}: {e.n_instances} instances, batch {e.batch_size}, "
            f"n {e.n_features}, m {e.n_hidden}; {flops / 1e9:.3f} GFLOP of matmul per step"
        )
        print(
            f"{'method':<32}{'steps/s':>10}{'(range)':>16}{'x einsum':>10}{'GFLOP/s':>10}"
            f"{'of bound':>10}{'RSS MiB':>10}{'steps s':>12}"
        )
        labels = {
            "ours": "ours: train() (the real recipe)",
            "einsum": "einsum loop (autograd)",
            "naive": "naive per-model loop",
            "bound": "matmul bound (5 bmm only)",
        }
        for method, row in rows.items():
            sps = row["steps_per_s"]
            runs = [r[method]["steps_per_s"] for r in rounds]
            spread = f"{min(runs):.1f}-{max(runs):.1f}"
            full = e.steps / sps
            x_einsum, of_bound = paired(rounds, method, "einsum"), paired(rounds, method, "bound")
            print(
                f"{labels[method]:<32}{sps:>10.1f}{spread:>16}{x_einsum:>10.2f}"
                f"{sps * flops / 1e9:>10.1f}{of_bound:>10.0%}"
                f"{row['peak_rss_mib']:>10.0f}{full:>12.0f}"
            )
        ours = rows["ours"]
        full = _full_run(ours, e.steps)
        print(
            f"(ours, train() itself: setup {ours['setup_s']:.1f} s, first step with compilation "
            f"{ours['compile_s']:.1f} s, recycling {ours['recycling_s']:.1f} s and evaluation "
            f"{ours['evaluation_s']:.1f} s in a full run of {e.steps} steps: about {full:.0f} s)"
        )


if __name__ == "__main__":
    main()
