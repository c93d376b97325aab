"""Where the weight files live (no heavy imports, so build scripts can ask cheaply)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_FOLDER = "SUPERPOSITION_WEIGHTS"


def weights_folder() -> Path:
    """$SUPERPOSITION_WEIGHTS, else `weights/` at the repository root, else ./weights."""
    if os.environ.get(ENV_FOLDER):
        return Path(os.environ[ENV_FOLDER])
    root = Path(__file__).resolve().parents[2]
    return root / "weights" if (root / "pyproject.toml").exists() else Path.cwd() / "weights"
