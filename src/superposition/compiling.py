"""torch.compile with a way back, for the training step and the analysis's error sums.

A `CompiledOrEager` runs its function compiled (fused loops, no graph breaks) from the first
call on, or eagerly when compiling is not wanted (SUPERPOSITION_COMPILE=0, or an MPS device)
or fails (for example without a C++ compiler): slower, the same computation up to rounding.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import torch

COMPILE_ENV = "SUPERPOSITION_COMPILE"
_OFF, _ON = ("0", "false", "no", "off"), ("", "1", "true", "yes", "on")


def compile_setting() -> bool:
    """$SUPERPOSITION_COMPILE: on unless it says 0, false, no or off (any case); a value that
    is neither on nor off is a ValueError, not silently taken as on."""
    raw = os.environ.get(COMPILE_ENV, "1")
    value = raw.strip().lower()
    if value not in _OFF + _ON:
        shown = raw.encode("unicode_escape").decode("ascii")[:40]
        raise ValueError(f"{COMPILE_ENV}={shown!r} is neither on (1) nor off (0)")
    return value in _ON


def compile_wanted(device: torch.device) -> bool:
    """torch.compile fuses the sampler and the masks into a few loops (CPU and CUDA);
    SUPERPOSITION_COMPILE=0 turns it off, and MPS always runs eagerly."""
    return compile_setting() and device.type in ("cpu", "cuda")


class CompiledOrEager:
    """`fn` compiled with torch.compile(fullgraph=True) on its first call; `eager` (by
    default `fn` itself) runs instead when `wanted` is false or a compiled call fails, and
    from then on. `compiled` says which ran."""

    def __init__(
        self,
        fn: Callable,
        eager: Callable | None = None,
        *,
        dynamic: bool = False,
        wanted: bool = True,
    ) -> None:
        self.fn, self.eager, self.dynamic = fn, eager or fn, dynamic
        self.compiled = wanted
        self._compiled: Callable | None = None

    def __call__(self, *args):
        if not self.compiled:
            return self.eager(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=self.dynamic, fullgraph=True)
        try:
            return self._compiled(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            print(f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly",
                  file=sys.stderr)  # fmt: skip
            self.compiled = False
            return self.eager(*args)
