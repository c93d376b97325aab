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

import ast
import contextlib
import errno
import fcntl
import hashlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import safetensors
import torch
from safetensors.torch import load as st_load
from torch import Tensor

from . import __version__, escape
from .experiments import Experiment, get
from .paths import ENV_FOLDER as ENV_FOLDER  # re-exported: store.ENV_FOLDER
from .paths import weights_folder
from .result import TrainResult

FORMAT = "superposition-weights/1"
TENSORS = ("W1", "W2", "b")
_TRAINING_CODE = ("data.py", "model.py", "train.py", "compiling.py", "starts.py")
_LIST_KEYS = ("feature_probs", "seeds", "final_loss")
_REQUIRED = ("format", "experiment", "config", "content_hash", *_LIST_KEYS, "device",
             "mode", "hardware", "versions", "tensor_sha256")  # fmt: skip
MODES = ("compiled", "eager")
# The JSON header holds the config and per-instance lists: a few kB. Anything far larger is
# not one of our files, and a file is never read past what its shapes allow.
HEADER_MAX = 1 << 20
# The header's JSON: a tensor's shape is three deep; and no count of ours has 20 digits.
JSON_DEPTH = 8
JSON_DIGITS = 20
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}"]', re.DOTALL)
# What the provenance fields may hold: they reach the book's pages and terminals.
_DEVICE = re.compile(r"(cpu|cuda|mps)(:[0-9]{1,3})?")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}")
VERSION_KEYS = ("python", "torch", "safetensors", "superposition")
HARDWARE_MAX = 200
DEADLINE_MAX_S = 86_400.0  # a download's deadline: a day at most (time.monotonic() + it)
# A temporary file of ours: ".<experiment>.safetensors.<8 characters of mkstemp>.tmp".
_TEMPORARY = re.compile(r"^\.(?P<name>[a-z0-9-]+)\.safetensors\.[a-z0-9_]{8}\.tmp$")


class WeightsError(Exception):
    """A weight file that cannot be used; the message says how to rebuild it."""

    def __init__(self, path: Path, problem: str, name: str) -> None:
        # The problem may quote the file, a server or safetensors quoting either: shown, never
        # obeyed (escape.terminal leaves text that is already escaped as it is).
        self.path, self.problem, self.name = path, escape.terminal(problem), name
        super().__init__(f"{escape.terminal(path)}: {self.problem}. {self.hint()}")

    def hint(self) -> str:
        return (
            f"Rebuild it with `make figures` "
            f"(or `python -m superposition figures --only {self.name}`)."
        )


class WeightsMissing(WeightsError):
    pass


class WeightsCorrupt(WeightsError):
    pass


class WeightsStale(WeightsError):
    pass


class WeightsUnwritable(WeightsError):
    """The weights folder cannot take a new file (read-only, full, not a folder...)."""

    def hint(self) -> str:
        return (
            f"Nothing was trained. Make the folder writable, free space, or point "
            f"${ENV_FOLDER} at another folder, then run `make figures` again."
        )


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
    mode: str  # "compiled" or "eager"
    hardware: str  # the processor (or GPU) it was trained on
    versions: dict[str, str]
    content_hash: str
    tensor_sha256: str
    path: Path = field(compare=False)
    # The file as read (once): its size, SHA-256 and metadata keys, for the weights chapter.
    file_size: int = field(default=0, compare=False)
    file_sha256: str = field(default="", compare=False)
    metadata_keys: tuple[str, ...] = field(default=(), compare=False)

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
    """Changes whenever the config or the code that trains it changes; comments, docstrings
    and layout are not code, so editing them leaves every cached file fresh."""
    h = hashlib.sha256(experiment.to_json().encode())
    here = Path(__file__).parent
    for name in _TRAINING_CODE:
        h.update(name.encode() + b"\0" + code_text((here / name).read_text()).encode())
    if experiment.parent:  # a constructed start depends on the parent's trained weights
        h.update(b"parent\0" + content_hash(get(experiment.parent)).encode())
    return h.hexdigest()


def code_text(source: str) -> str:
    """The source with comments, docstrings and formatting removed: its syntax tree, printed."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def hardware(device: str) -> str:
    """The processor a run used: the CPU's model name, or the GPU's."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    if device.startswith("mps"):
        return f"Apple MPS ({platform.machine()})"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        "mode": result.mode,
        "hardware": hardware(result.device),
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


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside `path`, named by our scheme and locked while it is open:
    `check` reports only unlocked ones, so a write in progress is never called a leftover."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, tmp


@contextmanager
def _stops_held():
    """Hold SIGINT and SIGTERM back while a temporary file is created and its name stored:
    a stop in between would leave the file behind. One that arrives meanwhile is raised
    as the block ends, where the caller's clean-up knows the name."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        with _stops_held():
            fd, tmp = _temporary(path)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes the file private; weights are not
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)  # while the lock is held
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def max_file_size(experiment: Experiment) -> int:
    """The most bytes a weight file of this experiment can hold: its tensors and a header."""
    k, m, n = experiment.n_instances, experiment.n_hidden, experiment.n_features
    return 8 + HEADER_MAX + 4 * k * (2 * m * n + n)


def prepare(experiment: Experiment, where: Path | None = None) -> Path:
    """Before training: make sure a finished run can be saved, or raise `WeightsUnwritable`.

    Creates the folder if needed, removes an empty directory squatting on the file's path,
    creates a temporary file, replaces a second one with it and deletes it (what `save`
    does), and checks that the free space holds twice the largest possible file.
    """
    path, name = path_for(experiment, where), experiment.name
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError:
                raise WeightsUnwritable(
                    path, "a folder that is not empty stands where the weight file goes", name
                ) from None
        _probe_replace(path)
        free = shutil.disk_usage(path.parent).free
    except OSError as exc:
        problem = f"the weights folder cannot take a new file ({exc})"
        raise WeightsUnwritable(path, problem, name) from None
    needed = 2 * max_file_size(experiment)
    if free < needed:
        raise WeightsUnwritable(
            path, f"{free / 2**20:.1f} MiB free in the weights folder, {needed / 2**20:.1f} MiB "
            f"needed", name,
        )  # fmt: skip
    return path


def _probe_replace(path: Path) -> None:
    """Write a temporary file beside `path` and replace another with it, as `save` will."""
    fds, names = [], []
    try:
        for _ in range(2):
            with _stops_held():
                fd, name = _temporary(path)
                fds.append(fd)
                names.append(name)
        os.write(fds[0], b"probe")
        os.fsync(fds[0])
        os.replace(names[0], names[1])
    finally:
        for fd in fds:
            os.close(fd)
        for name in names:
            Path(name).unlink(missing_ok=True)


def leftover_temporaries(where: Path | None = None) -> list[Path]:
    """Temporary files of our naming scheme that no running write holds: interrupted writes."""
    base = where or folder()
    if not base.is_dir():
        return []
    found = []
    for path in sorted(base.iterdir()):
        if not _TEMPORARY.match(path.name) or not path.is_file() or path.is_symlink():
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:  # a write in progress holds it
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            continue
        finally:
            os.close(fd)
        found.append(path)
    return found


def bounded_json(text: bytes | str) -> object:
    """JSON from a weight file, within limits that no file of ours comes near: nesting at
    most JSON_DEPTH deep (Python's parser would recurse until RecursionError), integers of
    at most JSON_DIGITS digits, every number finite. Anything else is a ValueError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="strict")  # UnicodeDecodeError is a ValueError
    depth = deepest = 0
    for token in _TOKENS.finditer(text):  # strings are skipped whole: one pass, linear time
        kind = token.group()
        if kind == '"':
            raise ValueError("a string that never ends")
        if kind in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif kind in "]}":
            depth -= 1
    if deepest > JSON_DEPTH:
        raise ValueError(f"JSON nested {deepest} deep, more than {JSON_DEPTH}")
    return json.loads(text, parse_int=_bounded_int, parse_float=_finite_float,
                      parse_constant=_no_constant)  # fmt: skip


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > JSON_DIGITS:
        raise ValueError(f"an integer of {len(digits)} digits")
    return int(digits)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range: {text[:20]}")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file's bytes, parsed from its JSON header."""
    name = path.stem
    if len(data) < 8:
        raise WeightsCorrupt(path, "file is truncated (no safetensors header)", name)
    size = int.from_bytes(data[:8], "little")
    if size > HEADER_MAX:
        raise WeightsCorrupt(path, "header length is implausible", name)
    raw = data[8 : 8 + size]
    if len(raw) < size:
        raise WeightsCorrupt(path, "file is truncated inside its header", name)
    try:
        header = bounded_json(raw)
        meta = header.get("__metadata__") or {}
    except (ValueError, AttributeError):
        raise WeightsCorrupt(path, "header is not valid JSON within our limits", name) from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsCorrupt(path, "metadata is not a map of strings", name)
    return meta


def read_bytes(experiment: Experiment, where: Path | None = None) -> bytes:
    """The weight file's bytes, if it is a regular file no larger than its shapes allow
    (unvalidated: `parse` checks them). Opened without blocking, so a FIFO or a device at
    the path is refused, not read."""
    path, name, limit = path_for(experiment, where), experiment.name, max_file_size(experiment)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise WeightsMissing(path, "weight file is missing", name) from None
    except NotADirectoryError:
        raise WeightsCorrupt(path, "the weights folder is not a folder", name) from None
    except OSError as exc:
        raise WeightsCorrupt(path, f"cannot be opened ({exc.strerror})", name) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise WeightsCorrupt(path, "is a folder, not a weight file", name)
        if not stat.S_ISREG(info.st_mode):
            raise WeightsCorrupt(path, "is not a regular file (a device, FIFO or socket)", name)
        if info.st_size > limit:
            raise WeightsCorrupt(
                path, f"is {info.st_size} bytes, more than the {limit} its shapes allow", name
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit + 1)[:limit]  # a file growing while read is cut, then refused
    except OSError as exc:
        raise WeightsCorrupt(path, f"cannot be read ({exc.strerror})", name) from None
    finally:
        os.close(fd)


def load(experiment: Experiment | str, where: Path | None = None) -> Weights:
    """Load and validate one experiment's weights, or raise a `WeightsError`."""
    if isinstance(experiment, str):
        experiment = get(experiment)
    return parse(read_bytes(experiment, where), experiment, path_for(experiment, where))


def _numbers(values: list, kind: type) -> bool:
    """Every entry a finite number of that kind (JSON's true and false do not count)."""
    return all(
        isinstance(v, kind | int) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def parse(data: bytes, experiment: Experiment, path: Path) -> Weights:
    """Validate a weight file's bytes against `experiment`; raise a `WeightsError` if unusable."""
    name = experiment.name
    meta = read_metadata(data, path)
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise WeightsCorrupt(path, f"metadata lacks {', '.join(missing)}", name)
    if meta["format"] != FORMAT:
        raise WeightsCorrupt(path, f"unknown format {meta['format']!r}", name)
    if meta["experiment"] != name:
        raise WeightsCorrupt(path, f"it holds experiment {meta['experiment']!r}, not {name}", name)
    if meta["config"] != experiment.to_json():
        raise WeightsStale(path, "it was trained with a different config", name)
    if meta["content_hash"] != content_hash(experiment):
        raise WeightsStale(path, "the training code changed since it was trained", name)
    try:
        lists = {k: bounded_json(meta[k]) for k in _LIST_KEYS}
        versions = bounded_json(meta["versions"])
    except ValueError:
        raise WeightsCorrupt(path, "metadata holds malformed JSON", name) from None
    for key, value in lists.items():
        if not isinstance(value, list) or len(value) != experiment.n_instances:
            raise WeightsCorrupt(path, f"metadata {key} is not one entry per instance", name)
    if lists["feature_probs"] != experiment.instance_probs or lists["seeds"] != (
        experiment.instance_seeds
    ):
        raise WeightsCorrupt(path, "per-instance sparsities or seeds do not match", name)
    if not _numbers(lists["final_loss"], float):
        raise WeightsCorrupt(path, "metadata final_loss holds a value that is not finite", name)
    if meta["mode"] not in MODES:
        raise WeightsCorrupt(path, f"unknown training mode {meta['mode']!r}", name)
    _check_provenance(meta, versions, path, name)
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for bad bytes
        raise WeightsCorrupt(path, f"tensor data is unreadable ({exc})", name) from None
    _check_shapes(experiment, tensors, path)
    if tensor_sha256(tensors) != meta["tensor_sha256"]:
        raise WeightsCorrupt(path, "tensor bytes do not match their SHA-256", name)
    for key in TENSORS:
        if not torch.isfinite(tensors[key]).all():
            raise WeightsCorrupt(path, f"{key} holds a value that is not finite", name)
    return Weights(
        experiment=experiment,
        W1=tensors["W1"],
        W2=tensors["W2"],
        b=tensors["b"],
        feature_probs=[float(x) for x in lists["feature_probs"]],
        seeds=[int(x) for x in lists["seeds"]],
        final_loss=[float(x) for x in lists["final_loss"]],
        device=meta["device"],
        mode=meta["mode"],
        hardware=meta["hardware"],
        versions=versions,
        content_hash=meta["content_hash"],
        tensor_sha256=meta["tensor_sha256"],
        path=path,
        file_size=len(data),
        file_sha256=hashlib.sha256(data).hexdigest(),
        metadata_keys=tuple(sorted(meta)),
    )


def _check_provenance(meta: dict[str, str], versions: object, path: Path, name: str) -> None:
    """Where and with what a file was trained: shown in the book and by `list`, so each
    field must have the shape of one we write (the hardware: printable, one short line)."""
    if not _DEVICE.fullmatch(meta["device"]):
        raise WeightsCorrupt(path, "metadata device is not cpu, cuda[:N] or mps", name)
    hardware = meta["hardware"]
    if not (0 < len(hardware) <= HARDWARE_MAX and hardware.isprintable()):
        raise WeightsCorrupt(
            path, f"metadata hardware is not one printable line of at most {HARDWARE_MAX} "
            f"characters", name,
        )  # fmt: skip
    if not isinstance(versions, dict) or set(versions) != set(VERSION_KEYS):
        raise WeightsCorrupt(
            path, f"metadata versions does not name exactly {', '.join(VERSION_KEYS)}", name
        )
    for key, value in versions.items():
        if not isinstance(value, str) or not _VERSION.fullmatch(value):
            raise WeightsCorrupt(path, f"metadata versions.{key} is not a version number", name)


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
    except WeightsError as e:
        return "corrupt", e.problem
    return "fresh", f"{len(w.final_loss)} instances"


def fetch(
    experiment: Experiment | str,
    base_url: str,
    sha256: str,
    where: Path | None = None,
    deadline_s: float = 600.0,
) -> Path:
    """Download an experiment's weight file from `base_url` (e.g. the book's site, which
    publishes them under weights/) into the local folder, unless a valid file is there: the
    folder is the caller's own, so a file in it that validates (one trained here, say) is
    kept whatever its SHA-256, and `sha256` pins only what is downloaded.

    `sha256` is the SHA-256 of the whole file as published, taken from somewhere other than
    the file (the weights page lists it; the book's notebooks carry it): a file that does not
    match it is refused, however well it validates. The download follows redirects only
    within its own site (scheme, host and port), stops at the most bytes the experiment's
    shapes allow and after `deadline_s` seconds in all, connecting and headers included, and
    is validated like any file before it is written (atomically). Every failure is a
    `WeightsError` that leaves the folder as it was.
    """
    if isinstance(experiment, str):
        experiment = get(experiment)
    path, name = path_for(experiment, where), experiment.name
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError("sha256 must be the 64 hex digits of the published file's SHA-256")
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be a string, not {type(base_url).__name__}")
    url = escape.web_address(base_url.rstrip("/") + "/" + path.name, "base_url")
    if not isinstance(deadline_s, int | float) or not 0 < deadline_s <= DEADLINE_MAX_S:
        raise ValueError(f"deadline_s must be a number of seconds in (0, {DEADLINE_MAX_S}]")
    if status(experiment, where)[0] == "fresh":
        return path
    _can_hold(path, name)  # a folder that cannot take the file fails before the download
    data = _download(url, max_file_size(experiment), deadline_s, path, name)
    got = hashlib.sha256(data).hexdigest()
    if got != sha256.lower():
        raise WeightsCorrupt(
            path, f"the download from {escape.terminal(url)} has SHA-256 {got}, not the "
            f"{sha256.lower()} it was fetched for", name,
        )  # fmt: skip
    parse(data, experiment, path)
    prepare(experiment, where)
    try:
        _atomic_write(path, data)
    except OSError as exc:
        raise WeightsUnwritable(path, f"the download could not be written ({exc})", name) from None
    return path


def _can_hold(path: Path, name: str) -> None:
    """Before a download, changing nothing: the folder, or the nearest folder above it that
    exists, is a folder this process may write in (`prepare` does the rest afterwards)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise WeightsUnwritable(path, f"the weights folder cannot take a new file ({folder} is "
                                "not a folder this process may write in)", name)  # fmt: skip


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _SameSiteRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to the same scheme, host and port."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            raise _Refused(f"it redirects to {target}, another site")
        return super().redirect_request(req, fp, code, msg, headers, target)


class _Refused(Exception):
    pass


def _download(url: str, limit: int, deadline_s: float, path: Path, name: str) -> bytes:
    """The body at `url`, at most `limit` bytes, within `deadline_s` seconds in all. The
    request runs in a worker thread, so a server slow at any stage (connecting, headers,
    body) cannot hold the caller past the deadline; at the deadline its connection is shut,
    so the worker ends too."""
    end = time.monotonic() + deadline_s
    outcome: dict[str, object] = {}
    connections: list[http.client.HTTPConnection] = []

    def work() -> None:
        try:
            outcome["data"] = _get(url, limit, end, connections)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"fetch {name}", daemon=True)
    worker.start()
    worker.join(deadline_s)
    late = worker.is_alive()  # decided before the shutdown below, which ends the worker with
    for connection in list(connections) if late else []:  # an error of its own (BadStatusLine)
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
    error = outcome.get("error")
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, TimeoutError):
        error = error.reason
    shown = escape.terminal(url)
    if late or isinstance(error, _Late | TimeoutError):
        late = f"the download from {shown} took longer than {deadline_s:g} s"
        raise WeightsMissing(path, late, name)
    if error is not None:
        kind, problem = _problem(error)
        raise kind(path, f"the download from {shown} {problem}", name)
    return outcome["data"]


def _problem(error: BaseException) -> tuple[type[WeightsError], str]:
    """What went wrong in a download, as an error class and a clause (terminal-safe)."""
    if isinstance(error, _TooLarge):
        return WeightsCorrupt, f"sent {error}"
    if isinstance(error, urllib.error.HTTPError):
        return WeightsMissing, f"was answered HTTP {error.code} {escape.terminal(error.reason)}"
    if isinstance(error, _Refused):
        return WeightsMissing, f"was refused: {escape.terminal(error)}"
    if isinstance(error, urllib.error.URLError):
        return WeightsMissing, f"could not connect ({escape.terminal(error.reason)})"
    if isinstance(error, OSError | http.client.HTTPException | ValueError):
        return WeightsMissing, f"failed ({type(error).__name__}: {escape.terminal(error)})"
    raise error


class _TooLarge(Exception):
    pass


class _Late(Exception):
    pass


class _Tracked(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """http and https, each connection also put in `connections` (so it can be shut)."""

    def __init__(self, connections: list) -> None:
        urllib.request.HTTPHandler.__init__(self)
        urllib.request.HTTPSHandler.__init__(self)
        self.connections = connections

    def do_open(self, http_class: Callable, req, **kwargs):  # urllib's http(s)_open call it
        def connection(*args, **kw):
            made = http_class(*args, **kw)
            self.connections.append(made)
            return made

        return super().do_open(connection, req, **kwargs)


def _get(url: str, limit: int, end: float, connections: list) -> bytes:
    """The request itself (http and https only, redirects within the site)."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), _Tracked(connections), _SameSiteRedirects(),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):  # fmt: skip
        opener.add_handler(handler)
    chunks, size = [], 0
    response = opener.open(url, timeout=max(0.1, end - time.monotonic()))
    if response is None:  # no handler for the address (urllib returns None): not http(s)
        raise _Refused("it is not an http(s) address")
    with response:
        if response.length is not None and response.length > limit:
            raise _TooLarge(f"{response.length} bytes, more than {limit}")
        while chunk := response.read1(1 << 20):  # returns as soon as any bytes arrive
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _TooLarge(f"more than {limit} bytes")
            if time.monotonic() > end:
                raise _Late
    return b"".join(chunks)
