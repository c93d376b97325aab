"""The command line.

    python -m superposition figures [--only NAME] [--device D] [--force] [--quiet]
    python -m superposition list
    python -m superposition check

`figures` trains every registered experiment whose cached weights are missing, corrupt or
stale and skips the fresh ones; experiments that draw the same batches, like the capacity
experiments, train in one run that draws each batch once. `list` shows each file's
freshness and losses; `check` validates every file and exits 1 on any problem. Bad
arguments exit 2 with usage.
"""

from __future__ import annotations

import argparse
import errno
import os
import resource
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext

from . import experiments, store
from .escape import terminal as _t  # file metadata and paths are shown, never obeyed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m superposition",
        description="Train, cache and check the models of the computation-in-superposition book.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{figures,list,check}")
    figures = sub.add_parser("figures", help="train what is missing or stale, cache the weights")
    figures.add_argument(
        "--only",
        action="append",
        choices=list(experiments.REGISTRY),
        metavar="NAME",
        help=f"train only this experiment (repeatable); one of: {', '.join(experiments.REGISTRY)}",
    )
    figures.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps",
    )
    figures.add_argument("--force", action="store_true", help="retrain even if the cache is fresh")
    figures.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="show each experiment's weight file, freshness and losses")
    sub.add_parser("check", help="validate every cached weight file; exit 1 on any problem")
    return parser


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# The signal that asked this process to stop, if any. The handler also raises SystemExit,
# but an exception raised while Python runs a finaliser or a library's catch-all can be
# swallowed, so `figures` checks this before it saves and `main` before it returns.
_stopped_by: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _stopped_by.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C as usual, but remembered
    sys.exit(128 + signum)


def _raise_if_stopped() -> None:
    if _stopped_by:
        sys.exit(128 + _stopped_by[0])


def cmd_figures(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .compiling import compile_setting
    from .cpu_slot import LockError, cpu_slot
    from .devices import pick_device  # torch start-up only when training
    from .train import train_together

    try:
        device = str(pick_device(args.device))
    except (ValueError, RuntimeError) as exc:  # torch's own parse errors are RuntimeErrors
        parser.error(f"--device: {_t(exc)}")
    try:
        compile_setting()
    except ValueError as exc:
        parser.error(str(exc))
    names = list(dict.fromkeys(args.only or experiments.REGISTRY))  # each once, in order
    todo = []
    for name in names:
        experiment = experiments.get(name)
        state, detail = store.status(experiment)
        if state == "fresh" and not args.force:
            print(f"{name}: fresh, skipped ({_t(store.path_for(experiment))})")
        else:
            todo.append((experiment, "forced" if state == "fresh" else f"{state}: {detail}"))
    try:  # every destination is checked before anything trains
        for experiment, _ in todo:
            store.prepare(experiment)
    except store.WeightsUnwritable as exc:
        print(f"error: {_t(exc)}", file=sys.stderr)
        return 1
    for run in _runs(todo):
        names = ", ".join(experiment.name for experiment, _ in run)
        for experiment, reason in run:
            together = f", together with {len(run) - 1} more" if len(run) > 1 else ""
            print(
                f"{experiment.name}: training {experiment.n_instances} instances on {device}"
                f"{together} ({reason})"
            )
        code_hashes = [store.content_hash(experiment) for experiment, _ in run]
        only = " ".join(f"--only {experiment.name}" for experiment, _ in run)
        try:
            starts = [_start(experiment) for experiment, _ in run]
        except store.WeightsError as exc:
            print(f"error: a constructed start needs its parent's weights: {_t(exc)}",
                  file=sys.stderr)  # fmt: skip
            return 1
        with ExitStack() as held:
            try:
                cpu = cpu_slot(f"figures {only}") if device == "cpu" else nullcontext()
                held.enter_context(cpu)
            except LockError as exc:
                print(f"error: {_t(exc)}", file=sys.stderr)
                return 1
            results = train_together(
                [experiment for experiment, _ in run], device, not args.quiet, _raise_if_stopped,
                starts,
            )  # fmt: skip
        if _stopped_by:
            return 128 + _stopped_by[0]  # a stop that was swallowed: never save after it
        steps, seconds = run[0][0].steps, results[0].seconds
        print(f"{names}: {steps} steps in {seconds:.1f} s ({steps / seconds:.0f} steps/s), "
              f"process peak RSS {_peak_rss_mib():.0f} MiB")  # fmt: skip
        for (experiment, _), result, code_hash in zip(run, results, code_hashes, strict=True):
            saved = store.save(experiment, result, code_hash=code_hash)
            print(f"{experiment.name}: saved {_t(saved)}")
    return 0


def _start(experiment: experiments.Experiment):
    """The starting weights of a constructed experiment (None for a random start): its
    parent, trained earlier in the same command or before, must be fresh."""
    if experiment.start != "constructed":
        return None
    from .starts import initial

    return initial(experiment, store.load(experiment.parent))


def _runs(todo: list[tuple]) -> list[list[tuple]]:
    """The experiments to train, as training runs: those that draw the same batches
    (`Experiment.batch_stream`) and train the same kind of model (`model_kind`) share one
    run, which draws each batch once. Runs are in the order of their first experiment."""
    runs: dict[tuple, list[tuple]] = {}
    for item in todo:
        runs.setdefault((item[0].batch_stream(), item[0].model_kind()), []).append(item)
    return list(runs.values())


def _loss_summary(weights: store.Weights) -> str:
    parts = []
    for p in dict.fromkeys(weights.feature_probs):
        ks = weights.instances_at(p)
        losses = [weights.final_loss[k] for k in ks]
        parts.append(f"p={p:g}: best {min(losses):.4g}, worst {max(losses):.4g}")
    return "; ".join(parts)


def cmd_list(args: argparse.Namespace) -> int:
    for experiment in experiments.REGISTRY.values():
        path = store.path_for(experiment)
        try:
            weights = store.load(experiment)
        except store.WeightsError as exc:
            state = type(exc).__name__.removeprefix("Weights").lower()
            print(f"{experiment.label} {experiment.name}: {state} ({_t(exc.problem)})  {_t(path)}")
            continue
        print(
            f"{experiment.label} {experiment.name}: fresh ({len(weights.seeds)} instances)  "
            f"{_t(path)}"
        )
        print(f"    trained on {_t(weights.device)} ({weights.mode}, {_t(weights.hardware)})")
        print("    final loss per setting over seeds:")
        print(f"    {_loss_summary(weights)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    problems = 0
    for experiment in experiments.REGISTRY.values():
        state, detail = store.status(experiment)
        if state == "fresh":
            print(f"ok       {experiment.name}")
        else:
            problems += 1
            print(f"{state:8} {experiment.name}: {_t(detail)}")
    for path in store.leftover_temporaries():
        print(f"leftover {_t(path)} (an interrupted write of ours, no longer open; safe to delete)")
    if problems:
        print(f"{problems} problem(s); rebuild with `make figures`", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # A polite kill (SIGTERM) unwinds like Ctrl-C, so a half-written temporary file is
    # removed; the cached file is only ever replaced whole. Both are remembered, so a stop
    # that some library swallows still ends the run before anything is saved. A SIGINT that
    # this process was started ignoring (a background job) stays ignored.
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)
    try:
        if args.command == "figures":
            code = cmd_figures(args, parser)
        elif args.command == "list":
            code = cmd_list(args)
        else:
            code = cmd_check(args)
        if sys.stdout is not None:  # None when started with stdout closed (`list >&-`)
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("interrupted; the cached weights are unchanged", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`list | head -1`): stop quietly, as `ls` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:
        if sys.stdout is None or exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to lose
        print(f"error: the output could not be written ({exc.strerror})", file=sys.stderr)
        return 1
    return 128 + _stopped_by[0] if _stopped_by else code


if __name__ == "__main__":
    sys.exit(main())
