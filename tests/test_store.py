"""The weight cache keeps SPEC's contract and refuses every file it cannot trust."""

import dataclasses
import hashlib
import json
import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from superposition import store
from superposition.experiments import Experiment
from superposition.result import TrainResult

TINY = Experiment(
    name="tiny", label="T", title="tiny", n_features=3, n_hidden=2,
    feature_probs=(1.0, 0.1), importance_decay=0.9, seeds=(0, 1),
    steps=10, batch_size=8, lr=1e-3, weight_decay=0.0,
)  # fmt: skip


def fake_result(seed=0):
    g = torch.Generator().manual_seed(seed)
    k, m, n = TINY.n_instances, TINY.n_hidden, TINY.n_features
    return TrainResult(
        W1=torch.randn(k, m, n, generator=g), W2=torch.randn(k, n, m, generator=g),
        b=torch.randn(k, n, generator=g), final_loss=[0.1, 0.2, 0.3, 0.4],
        device="cpu", seconds=1.0,
    )  # fmt: skip


@pytest.fixture
def saved(tmp_path):
    result = fake_result()
    return store.save(TINY, result, tmp_path), result


def test_round_trip(saved, tmp_path):
    path, result = saved
    assert path == tmp_path / "tiny.safetensors"
    w = store.load(TINY, tmp_path)
    for name in ("W1", "W2", "b"):
        assert torch.equal(getattr(w, name), getattr(result, name))
        assert getattr(w, name).dtype == torch.float32
    assert w.feature_probs == [1.0, 1.0, 0.1, 0.1]
    assert w.seeds == [0, 1, 0, 1]
    assert w.final_loss == [0.1, 0.2, 0.3, 0.4]
    assert w.best(0.1) == 2 and w.instances_at(1.0) == [0, 1]
    assert w.versions["torch"] == torch.__version__
    assert w.experiment == TINY


def test_metadata_is_readable_without_our_code(saved):
    from safetensors import safe_open

    path, _ = saved
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert f.get_tensor("W1").shape == (4, 2, 3)
    assert json.loads(meta["config"])["n_hidden"] == 2
    assert json.loads(meta["feature_probs"]) == [1.0, 1.0, 0.1, 0.1]
    assert len(meta["tensor_sha256"]) == 64 and len(meta["content_hash"]) == 64


def test_the_same_weights_give_the_same_file(tmp_path):
    a = store.save(TINY, fake_result(), tmp_path / "a").read_bytes()
    b = store.save(TINY, fake_result(), tmp_path / "b").read_bytes()
    assert a == b


def test_missing_file_names_the_rebuild_command(tmp_path):
    with pytest.raises(store.WeightsMissing, match="make figures.*--only tiny"):
        store.load(TINY, tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 100, -40])
def test_truncated_file_is_refused(saved, keep):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(store.WeightsCorrupt, match="make figures"):
        store.load(TINY, path.parent)


def test_flipped_tensor_byte_is_caught(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside b's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(store.WeightsCorrupt, match="SHA-256"):
        store.load(TINY, path.parent)


def _rewrite(path, tensors=None, **meta_changes):
    """Rewrite a saved file with changed tensors or metadata (None deletes a key)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        old = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
    for key, value in meta_changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    tensors = old if tensors is None else tensors
    path.write_bytes(st_save(tensors, metadata=meta))


def test_wrong_shapes_are_refused(saved):
    path, result = saved
    tensors = {"W1": torch.zeros(4, 3, 3), "W2": result.W2, "b": result.b}
    _rewrite(path, tensors, tensor_sha256=store.tensor_sha256(tensors))
    with pytest.raises(store.WeightsCorrupt, match="W1 is .* expected float32 \\(4, 2, 3\\)"):
        store.load(TINY, path.parent)


def test_wrong_dtype_is_refused(saved):
    path, result = saved
    tensors = {"W1": result.W1.double(), "W2": result.W2, "b": result.b}
    _rewrite(path, tensors, tensor_sha256="0" * 64)
    with pytest.raises(store.WeightsCorrupt, match="float64"):
        store.load(TINY, path.parent)


def test_stale_code_hash_is_refused(saved):
    path, _ = saved
    _rewrite(path, content_hash="f" * 64)
    with pytest.raises(store.WeightsStale, match="training code changed.*make figures"):
        store.load(TINY, path.parent)


def test_file_from_another_config_is_stale(saved):
    path, _ = saved
    other = dataclasses.replace(TINY, steps=11)
    with pytest.raises(store.WeightsStale, match="different config"):
        store.load(other, path.parent)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(final_loss=None), "lacks final_loss"),
        (dict(seeds="[0, 1"), "malformed JSON"),
        (dict(final_loss="[0.1]"), "one entry per instance"),
        (dict(feature_probs="[1.0, 1.0, 0.2, 0.2]"), "do not match"),
        (dict(format="other/9"), "unknown format"),
    ],
)
def test_bad_metadata_is_refused(saved, change, message):
    path, _ = saved
    _rewrite(path, **change)
    with pytest.raises(store.WeightsCorrupt, match=message):
        store.load(TINY, path.parent)


def test_not_json_header_is_refused(tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes((10).to_bytes(8, "little") + b"not json!!" + b"\0" * 16)
    with pytest.raises(store.WeightsCorrupt, match="not valid JSON"):
        store.load(TINY, tmp_path)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(pickle.dumps(_Exploit()))
    # Control: unpickling this file really would run code.
    pickle.loads(path.read_bytes())
    assert (tmp_path / "PWNED").exists()
    (tmp_path / "PWNED").unlink()
    with pytest.raises(store.WeightsCorrupt):
        store.load(TINY, tmp_path)
    assert not (tmp_path / "PWNED").exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(saved, monkeypatch):
    path, _ = saved
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save(TINY, fake_result(seed=1), path.parent)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]


def test_status_never_raises(saved, tmp_path):
    path, _ = saved
    assert store.status(TINY, tmp_path)[0] == "fresh"
    path.write_bytes(b"junk")
    assert store.status(TINY, tmp_path)[0] == "corrupt"
    path.unlink()
    assert store.status(TINY, tmp_path)[0] == "missing"


def test_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(store.ENV_FOLDER, str(tmp_path))
    assert store.path_for(TINY) == tmp_path / "tiny.safetensors"


def test_fetch_downloads_validates_and_refuses_bad_files(saved, tmp_path, monkeypatch):
    import site_check

    path, _ = saved
    site = tmp_path / "site"
    site.mkdir()
    (site / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(store, "get", lambda name: TINY)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with site_check.serve(site) as url:
        local = tmp_path / "local"
        assert store.fetch("tiny", url, digest, local) == local / path.name
        assert store.load(TINY, local).tensor_sha256 == store.load(TINY, path.parent).tensor_sha256
        bad = tmp_path / "bad"
        (site / path.name).write_bytes(path.read_bytes()[:-7])
        with pytest.raises(store.WeightsCorrupt):
            store.fetch("tiny", url, digest, bad)
        assert not (bad / path.name).exists()
        with pytest.raises(ValueError, match="http"):
            store.fetch("tiny", "file:///etc/", digest, tmp_path / "other")


# --- Bad files and folders: every one a WeightsError naming the rebuild command ---------


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(final_loss='["x", "x", "x", "x"]'), "final_loss holds a value that is not finite"),
        (dict(final_loss="[{}, {}, {}, {}]"), "final_loss holds a value that is not finite"),
        (dict(final_loss="[0.1, NaN, 0.3, 0.4]"), "malformed JSON"),  # JSON has no NaN
        (dict(final_loss="[0.1, Infinity, 0.3, 0.4]"), "malformed JSON"),
        (dict(final_loss="[0.1, 1e999, 0.3, 0.4]"), "malformed JSON"),
        (dict(final_loss="[0.1, true, 0.3, 0.4]"), "not finite"),
        (dict(experiment="sparsity-sweep"), "holds experiment 'sparsity-sweep', not tiny"),
        (dict(versions='["torch"]'), "versions does not name exactly python, torch"),
    ],
)  # fmt: skip
def test_malformed_metadata_is_a_weights_error(saved, change, message):
    path, _ = saved
    _rewrite(path, **change)
    with pytest.raises(store.WeightsCorrupt, match=message + ".*make figures"):
        store.load(TINY, path.parent)
    assert store.status(TINY, path.parent)[0] == "corrupt"


def _fifo(path):
    import os

    os.mkfifo(path)


def _dev_zero(path):
    path.symlink_to("/dev/zero")


def _folder(path):
    path.mkdir()
    (path / "inside").write_text("x")


def _too_big(path):
    with open(path, "wb") as f:
        f.truncate(store.max_file_size(TINY) + 1)  # sparse: costs no disk


@pytest.mark.parametrize(
    "make,message",
    [(_fifo, "not a regular file"), (_dev_zero, "not a regular file"),
     (_folder, "is a folder"), (_too_big, "more than the .* its shapes allow")],
    ids=["fifo", "symlink-to-dev-zero", "folder", "too-big"],
)  # fmt: skip
def test_a_path_that_is_no_weight_file_is_refused_at_once(tmp_path, make, message):
    import threading

    make(tmp_path / "tiny.safetensors")
    outcome = []

    def attempt():
        try:
            store.load(TINY, tmp_path)
        except store.WeightsError as exc:
            outcome.append(exc)

    reader = threading.Thread(target=attempt, daemon=True)
    reader.start()
    reader.join(timeout=10)  # a FIFO would block a plain read forever, /dev/zero fill memory
    assert not reader.is_alive(), "load hung"
    assert len(outcome) == 1 and isinstance(outcome[0], store.WeightsCorrupt)
    assert re.search(message, str(outcome[0])) and "make figures" in str(outcome[0])


def test_a_weights_folder_that_is_a_file_is_reported(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(store.WeightsCorrupt, match="weights folder is not a folder"):
        store.load(TINY, tmp_path / "file")
    assert store.status(TINY, tmp_path / "file")[0] == "corrupt"
    with pytest.raises(store.WeightsUnwritable, match="Nothing was trained"):
        store.prepare(TINY, tmp_path / "file")


# --- Before training: the destination must take the file -----------------------------


def test_prepare_accepts_a_writable_folder_and_leaves_nothing(tmp_path):
    assert store.prepare(TINY, tmp_path / "new") == tmp_path / "new" / "tiny.safetensors"
    assert list((tmp_path / "new").iterdir()) == []


def test_prepare_removes_an_empty_folder_in_the_way_but_not_a_full_one(tmp_path):
    (tmp_path / "tiny.safetensors").mkdir()
    store.prepare(TINY, tmp_path)
    assert not (tmp_path / "tiny.safetensors").exists()
    _folder(tmp_path / "tiny.safetensors")
    with pytest.raises(store.WeightsUnwritable, match="not empty"):
        store.prepare(TINY, tmp_path)
    assert (tmp_path / "tiny.safetensors" / "inside").exists()


def test_prepare_refuses_a_folder_without_room(tmp_path, monkeypatch):
    usage = store.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(store.WeightsUnwritable, match="MiB free.*needed"):
        store.prepare(TINY, tmp_path)


def test_prepare_refuses_a_folder_where_replacing_fails(tmp_path, monkeypatch):
    def read_only(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(store.os, "replace", read_only)
    with pytest.raises(store.WeightsUnwritable, match="Read-only file system"):
        store.prepare(TINY, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- Temporary files: check names only its own, and never one being written ----------


def test_leftovers_are_only_our_unlocked_temporaries(tmp_path):
    import fcntl
    import os

    ours = tmp_path / ".tiny.safetensors.abcd1234.tmp"
    ours.write_bytes(b"half")
    (tmp_path / ".notes.tmp").write_text("someone else's")
    (tmp_path / ".tiny.safetensors.x.tmp").write_text("not our scheme")
    fd, writing = store._temporary(tmp_path / "tiny.safetensors")  # a write in progress
    try:
        assert store.leftover_temporaries(tmp_path) == [ours]
    finally:
        os.close(fd)
    assert sorted(store.leftover_temporaries(tmp_path)) == sorted([ours, Path(writing)])
    # Control: the lock really is what hides the write in progress.
    fd = os.open(ours, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert ours not in store.leftover_temporaries(tmp_path)
    finally:
        os.close(fd)


# --- Downloads: capped in size and in time -------------------------------------------


def _serve(body_chunks, declared=None):
    """A local HTTP server answering every GET with `body_chunks` (an iterable of (bytes,
    pause)), optionally declaring a Content-Length. Returns (server, base URL)."""
    import http.server
    import threading
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            self.send_response(200)
            if declared is not None:
                self.send_header("Content-Length", str(declared))
            self.end_headers()
            try:
                for chunk, pause in body_chunks():
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    time.sleep(pause)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_a_slow_download_stops_at_the_deadline(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(store, "get", lambda name: TINY)
    server, url = _serve(lambda: ((b"x", 0.05) for _ in range(10_000)))  # 20 bytes a second
    try:
        start = time.monotonic()
        with pytest.raises(store.WeightsMissing, match="took longer than 1 s"):
            store.fetch("tiny", url, "0" * 64, tmp_path, deadline_s=1.0)
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
def test_a_download_larger_than_the_shapes_allow_is_refused(tmp_path, monkeypatch, declared):
    monkeypatch.setattr(store, "get", lambda name: TINY)
    limit = store.max_file_size(TINY)

    def body():
        for _ in range(limit // 65536 + 100):  # about 6 MB past the limit, if all were read
            yield b"\0" * 65536, 0

    server, url = _serve(body, declared=limit + 1 if declared else None)
    try:
        with pytest.raises(store.WeightsCorrupt, match=f"more than {limit}"):
            store.fetch("tiny", url, "0" * 64, tmp_path)
    finally:
        server.shutdown()
    assert list(tmp_path.iterdir()) == []


def test_an_invalid_download_leaves_the_old_file_alone(saved, tmp_path, monkeypatch):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:-1])  # an unusable local copy, so fetch downloads
    before = path.read_bytes()
    monkeypatch.setattr(store, "get", lambda name: TINY)
    server, url = _serve(lambda: iter([(b"junk", 0)]))
    try:
        with pytest.raises(store.WeightsCorrupt):
            store.fetch("tiny", url, "0" * 64, path.parent)
    finally:
        server.shutdown()
    assert path.read_bytes() == before


# --- The code hash: code, not comments --------------------------------------------------

CODE = '''"""Module docstring."""

def f(x):
    """Docstring."""
    return x + 1  # a comment
'''


def test_the_code_hash_ignores_comments_docstrings_and_layout():
    same = CODE.replace("# a comment", "# another").replace("Docstring.", "Better words.")
    same = same.replace("x + 1", "x+1").replace("Module docstring.", "Other.")
    assert store.code_text(same) == store.code_text(CODE)
    assert store.code_text(CODE.replace("x + 1", "x + 2")) != store.code_text(CODE)
    assert store.code_text(CODE.replace('"""Docstring."""', '"""Docstring."""\n    y = 1')) != (
        store.code_text(CODE)
    )


def test_the_file_records_how_it_was_trained(saved):
    path, _ = saved
    w = store.load(TINY, path.parent)
    assert w.mode == "compiled" and w.hardware
    _rewrite(path, mode="sloppy")
    with pytest.raises(store.WeightsCorrupt, match="unknown training mode"):
        store.load(TINY, path.parent)
