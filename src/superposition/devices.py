"""Which device trains: CUDA, then Apple's MPS, then the CPU, or exactly the one asked for.

pick_device("auto")   # or None, "cpu", "cuda", "cuda:1", "mps"
"""

from __future__ import annotations

import re

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA, then MPS, then the CPU; or exactly `requested`, failing clearly if unavailable."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    kind, _, index = requested.partition(":")
    if kind not in available or not re.fullmatch(r"(cpu|cuda|mps)(:\d+)?", requested):
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
    if not available[kind]:
        raise ValueError(f"device {requested!r} is not available on this machine")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ValueError(f"no device {requested!r}: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")  # fmt: skip
    return torch.device(requested)
