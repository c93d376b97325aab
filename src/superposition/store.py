"""The weight cache: one safetensors file per experiment, validated on every load.

File `<folder>/<experiment>.safetensors` (folder: $SUPERPOSITION_WEIGHTS, else the
repository's `weights/`) holds float32 tensors W1 [instances, m, n], W2 [instances, n, m]
and b [instances, n], raw (not rescaled), and string metadata:

    format          "superposition-weights/1"
    experiment      the experiment's name
    config          the experiment config as canonical JSON (see experiments.py)
    content_hash    SHA-256 of the config and of the training code (data, model, train)
    feature_probs   JSON list, p = 1 - S of each instance
    seeds           JSON list, initialisation seed of each instance
    final_loss      JSON list, loss of each instance on the fixed evaluation batch
    device          where it was trained
    versions        JSON object: python, torch, safetensors, superposition
    tensor_sha256   SHA-256 of the raw little-endian bytes of W1, then W2, then b

Loading parses the file with safetensors (never pickle), and refuses a missing, truncated,
corrupt, mis-shaped or stale file with an error that names the command that rebuilds it.
Writes go to a temporary file that replaces the old one atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import torch
from safetensors.torch import load as st_load
from torch import Tensor

from . import __version__
from .experiments import Experiment, get
from .paths import ENV_FOLDER as ENV_FOLDER  # re-exported: store.ENV_FOLDER
from .paths import weights_folder
from .train import TrainResult

FORMAT = "superposition-weights/1"
TENSORS = ("W1", "W2", "b")
_TRAINING_CODE = ("data.py", "model.py", "train.py")
_LIST_KEYS = ("feature_probs", "seeds", "final_loss")
_REQUIRED = ("format", "experiment", "config", "content_hash", *_LIST_KEYS, "device",
             "versions", "tensor_sha256")  # fmt: skip


class WeightsError(Exception):
    """A weight file that cannot be used; the message says how to rebuild it."""

    def __init__(self, path: Path, problem: str, name: str) -> None:
        self.path, self.problem, self.name = path, problem, name
        super().__init__(
            f"{path}: {problem}. Rebuild it with `make figures` "
            f"(or `python -m superposition figures --only {name}`)."
        )


class WeightsMissing(WeightsError):
    pass


class WeightsCorrupt(WeightsError):
    pass


class WeightsStale(WeightsError):
    pass


@dataclass(frozen=True)
class Weights:
    experiment: Experiment
    W1: Tensor  # [instances, m, n]
    W2: Tensor  # [instances, n, m]
    b: Tensor  # [instances, n]
    feature_probs: list[float]
    seeds: list[int]
    final_loss: list[float]
    device: str
    versions: dict[str, str]
    content_hash: str
    tensor_sha256: str
    path: Path = field(compare=False)

    def instances_at(self, p: float) -> list[int]:
        """Instance indices trained at feature probability p."""
        found = [k for k, q in enumerate(self.feature_probs) if q == p]
        if not found:
            raise KeyError(f"no instance at p = {p}; have {sorted(set(self.feature_probs))}")
        return found

    def best(self, p: float) -> int:
        """The lowest-loss instance at feature probability p (the one the book shows)."""
        return min(self.instances_at(p), key=lambda k: self.final_loss[k])


def folder() -> Path:
    """$SUPERPOSITION_WEIGHTS, else `weights/` at the repository root, else ./weights."""
    return weights_folder()


def path_for(experiment: Experiment, where: Path | None = None) -> Path:
    return (where or folder()) / f"{experiment.name}.safetensors"


def content_hash(experiment: Experiment) -> str:
    """Changes whenever the config or the code that trains it changes."""
    h = hashlib.sha256(experiment.to_json().encode())
    here = Path(__file__).parent
    for name in _TRAINING_CODE:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()


def _raw_bytes(tensor: Tensor) -> bytes:
    """The tensor as the file stores it: little-endian float32, row-major."""
    return tensor.contiguous().numpy().astype("<f4", copy=False).tobytes()


def tensor_sha256(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for name in TENSORS:
        h.update(_raw_bytes(tensors[name]))
    return h.hexdigest()


def save(
    experiment: Experiment,
    result: TrainResult,
    where: Path | None = None,
    code_hash: str | None = None,
) -> Path:
    """Write the weights atomically. Pass `code_hash` = `content_hash(experiment)` taken
    before training, so code edited during a run is not credited to its weights."""
    tensors = {
        "W1": result.W1.float().contiguous(),
        "W2": result.W2.float().contiguous(),
        "b": result.b.float().contiguous(),
    }
    _check_shapes(experiment, tensors, path_for(experiment, where))
    metadata = {
        "format": FORMAT,
        "experiment": experiment.name,
        "config": experiment.to_json(),
        "content_hash": code_hash or content_hash(experiment),
        "feature_probs": json.dumps(experiment.instance_probs),
        "seeds": json.dumps(experiment.instance_seeds),
        "final_loss": json.dumps([float(x) for x in result.final_loss]),
        "device": result.device,
        "versions": json.dumps(
            {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "safetensors": safetensors.__version__,
                "superposition": __version__,
            },
            sort_keys=True,
        ),
        "tensor_sha256": tensor_sha256(tensors),
    }
    path = path_for(experiment, where)
    _atomic_write(path, serialise(tensors, metadata))
    return path


def serialise(tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """Safetensors bytes with a sorted header, so equal weights give equal files.

    (The safetensors library orders its header by hash, which changes from run to run.)
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks, offset = [], 0
    for name in sorted(tensors):
        data = _raw_bytes(tensors[name])
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8-byte alignment
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes the file private; weights are not
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file's bytes, parsed from its JSON header."""
    name = path.stem
    if len(data) < 8:
        raise WeightsCorrupt(path, "file is truncated (no safetensors header)", name)
    size = int.from_bytes(data[:8], "little")
    if size > 100_000_000:
        raise WeightsCorrupt(path, "header length is implausible", name)
    raw = data[8 : 8 + size]
    if len(raw) < size:
        raise WeightsCorrupt(path, "file is truncated inside its header", name)
    try:
        header = json.loads(raw)
        meta = header.get("__metadata__") or {}
    except (ValueError, AttributeError):
        raise WeightsCorrupt(path, "header is not valid JSON", name) from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsCorrupt(path, "metadata is not a map of strings", name)
    return meta


def load(experiment: Experiment | str, where: Path | None = None) -> Weights:
    """Load and validate one experiment's weights, or raise a `WeightsError`."""
    if isinstance(experiment, str):
        experiment = get(experiment)
    path, name = path_for(experiment, where), experiment.name
    try:
        data = path.read_bytes()  # read once: the header, then the tensors, from these bytes
    except FileNotFoundError:
        raise WeightsMissing(path, "weight file is missing", name) from None
    meta = read_metadata(data, path)
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise WeightsCorrupt(path, f"metadata lacks {', '.join(missing)}", name)
    if meta["format"] != FORMAT:
        raise WeightsCorrupt(path, f"unknown format {meta['format']!r}", name)
    if meta["config"] != experiment.to_json():
        raise WeightsStale(path, "it was trained with a different config", name)
    if meta["content_hash"] != content_hash(experiment):
        raise WeightsStale(path, "the training code changed since it was trained", name)
    try:
        lists = {k: json.loads(meta[k]) for k in _LIST_KEYS}
        versions = json.loads(meta["versions"])
    except ValueError:
        raise WeightsCorrupt(path, "metadata holds malformed JSON", name) from None
    for key, value in lists.items():
        if not isinstance(value, list) or len(value) != experiment.n_instances:
            raise WeightsCorrupt(path, f"metadata {key} is not one entry per instance", name)
    if lists["feature_probs"] != experiment.instance_probs or lists["seeds"] != (
        experiment.instance_seeds
    ):
        raise WeightsCorrupt(path, "per-instance sparsities or seeds do not match", name)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for bad bytes
        raise WeightsCorrupt(path, f"tensor data is unreadable ({exc})", name) from None
    _check_shapes(experiment, tensors, path)
    if tensor_sha256(tensors) != meta["tensor_sha256"]:
        raise WeightsCorrupt(path, "tensor bytes do not match their SHA-256", name)
    return Weights(
        experiment=experiment,
        W1=tensors["W1"],
        W2=tensors["W2"],
        b=tensors["b"],
        feature_probs=[float(x) for x in lists["feature_probs"]],
        seeds=[int(x) for x in lists["seeds"]],
        final_loss=[float(x) for x in lists["final_loss"]],
        device=meta["device"],
        versions=versions,
        content_hash=meta["content_hash"],
        tensor_sha256=meta["tensor_sha256"],
        path=path,
    )


def _check_shapes(experiment: Experiment, tensors: dict[str, Tensor], path: Path) -> None:
    k, m, n = experiment.n_instances, experiment.n_hidden, experiment.n_features
    expected = {"W1": (k, m, n), "W2": (k, n, m), "b": (k, n)}
    if set(tensors) != set(expected):
        raise WeightsCorrupt(path, f"holds tensors {sorted(tensors)}, not W1, W2, b", path.stem)
    for name, shape in expected.items():
        t = tensors[name]
        if tuple(t.shape) != shape or t.dtype != torch.float32:
            raise WeightsCorrupt(
                path,
                f"{name} is {t.dtype} {tuple(t.shape)}, expected float32 {shape}",
                path.stem,
            )


def status(experiment: Experiment, where: Path | None = None) -> tuple[str, str]:
    """("fresh" | "missing" | "stale" | "corrupt", detail) without raising."""
    try:
        w = load(experiment, where)
    except WeightsMissing as e:
        return "missing", e.problem
    except WeightsStale as e:
        return "stale", e.problem
    except WeightsCorrupt as e:
        return "corrupt", e.problem
    return "fresh", f"{len(w.final_loss)} instances"


def fetch(experiment: Experiment | str, base_url: str, where: Path | None = None) -> Path:
    """Download an experiment's weight file from `base_url` (e.g. the book's site, which
    publishes them under weights/) into the local folder, unless a valid copy is there.

    The download is written atomically and then validated by `load` like any other file;
    an unusable download raises a `WeightsError` and is removed.
    """
    import urllib.request

    if isinstance(experiment, str):
        experiment = get(experiment)
    path = path_for(experiment, where)
    if status(experiment, where)[0] == "fresh":
        return path
    url = base_url.rstrip("/") + "/" + path.name
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    with urllib.request.urlopen(url, timeout=60) as response:
        _atomic_write(path, response.read())
    try:
        load(experiment, where)
    except WeightsError:
        path.unlink(missing_ok=True)
        raise
    return path
