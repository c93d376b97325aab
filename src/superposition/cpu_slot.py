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

import errno
import fcntl
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .escape import terminal

LOCK_ENV = "SUPERPOSITION_CPU_LOCK"  # another lock file (the tests use their own)
# One place per user, whatever TMPDIR says: two runs with different TMPDIRs still take turns.
LOCK_FOLDER = Path("/tmp")


class LockError(RuntimeError):
    """The lock file cannot be used safely (a link, or someone else's file)."""


def lock_path() -> Path:
    default = LOCK_FOLDER / f"superposition-cpu-{os.getuid()}.lock"
    return Path(os.environ.get(LOCK_ENV) or default)


def _open_lock(path: Path) -> int:
    """The lock file, opened for writing without following a link (one planted in /tmp
    would otherwise be truncated and written through), and only if it is our own file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockError(f"the CPU lock {path} is a symbolic link, which could point "
                            f"anywhere: it was not opened. Remove it, or set {LOCK_ENV} to "
                            "another file.") from None  # fmt: skip
        raise LockError(f"cannot open the CPU lock {path} ({exc.strerror})") from None
    info = os.fstat(fd)
    # A second name (a hard link) would let the lock's writes land in another file.
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_nlink != 1:
        os.close(fd)
        raise LockError(f"the CPU lock {path} is not a file of this user's: it was not "
                        f"written. Remove it, or set {LOCK_ENV} to another file.")  # fmt: skip
    return fd


@contextmanager
def cpu_slot(what: str) -> Iterator[None]:
    """Hold the machine's CPU-training lock for the duration; wait (saying so) if it is held."""
    fd = _open_lock(lock_path())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            print(
                f"waiting for the CPU: {terminal(holder)} is training on it. Two runs at once "
                f"on {os.cpu_count()} cores take far longer than one after the other.",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
        yield
    finally:
        os.close(fd)
