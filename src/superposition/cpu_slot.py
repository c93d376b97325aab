"""One CPU training at a time: a second run waits for the first instead of sharing the cores.

Two trainings (or a training and `make bench`) that each run two threads on a two-core
machine do not take twice as long: they thrash, and a 40-second run took 6 to 10 minutes.
So every CPU run of `figures` and of the benchmark holds an exclusive lock on one file in
the temporary folder; a second one says who holds it and waits, and the two finish one
after the other. The lock is released by the kernel when its holder exits, however it exits.

    with cpu_slot("figures"):
        train(...)
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_ENV = "SUPERPOSITION_CPU_LOCK"  # another lock file (the tests use their own)


def lock_path() -> Path:
    default = Path(tempfile.gettempdir()) / f"superposition-cpu-{os.getuid()}.lock"
    return Path(os.environ.get(LOCK_ENV) or default)


@contextmanager
def cpu_slot(what: str) -> Iterator[None]:
    """Hold the machine's CPU-training lock for the duration; wait (saying so) if it is held."""
    fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            print(
                f"waiting for the CPU: {holder} is training on it. Two runs at once on "
                f"{os.cpu_count()} cores take far longer than one after the other.",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
        yield
    finally:
        os.close(fd)
