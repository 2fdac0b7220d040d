"""IDX parsing, checksums, the fetch path (against a local HTTP server), the safe unpickler, CSV."""

import gzip
import hashlib
import http.server
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from fastnet import datasets as D

SUBSET = Path(__file__).parent / "data" / "mnist-subset"


# -- IDX ----------------------------------------------------------------------


def test_idx_round_trip():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(D.parse_idx(D.encode_idx(a)), a)


@pytest.mark.parametrize(
    "mutate,words",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b + b"\0", "trailing bytes"),
        (lambda b: b"\x00\x01" + b[2:], "wrong magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "wrong magic number"),
        (lambda b: b"PK\x03\x04" + b[4:], "wrong magic number"),
        (lambda b: b[:4] + np.array([5, 3, 4], ">u4").tobytes() + b[16:], "truncated"),  # wrong count
        (lambda b: b"", "too short"),
    ],
)
def test_idx_rejects_bad_bytes(mutate, words):
    good = D.encode_idx(np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(D.DataError, match=words):
        D.parse_idx(mutate(good), "file.idx")


def test_read_idx_names_the_file_for_truncated_gzip(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(D.encode_idx(np.arange(100, dtype=np.uint8)))[:-20])
    with pytest.raises(D.DataError, match=str(path)):
        D.read_idx(path)


def test_real_subset_reads():
    (x, t), (xt, tt), classes = D.load_idx_dir(SUBSET)
    assert x.shape == (1000, 784) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert xt.shape == (300, 784) and classes == 10
    assert list(t[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # MNIST's first ten training labels
    (x, t), _, _ = D.load_idx_dir(SUBSET, normalize=False, flatten=False, one_hot_label=True)
    assert x.shape == (1000, 1, 28, 28) and x.dtype == np.uint8
    assert t.shape == (1000, 10) and np.all(t.sum(axis=1) == 1)


# -- checksums and the cache ---------------------------------------------------


def _tiny_dataset(directory, mirrors=()):
    """A Dataset whose four files are small, with their real hashes, written to ``directory``."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6).astype(np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 3).astype(np.uint8),
    }
    md5, sha = {}, {}
    for part, a in arrays.items():
        raw = D.encode_idx(a)
        gz = gzip.compress(raw, mtime=0)
        (Path(directory) / (D.FILE_NAMES[part] + ".gz")).write_bytes(gz)
        md5[part] = hashlib.md5(gz).hexdigest()
        sha[part] = hashlib.sha256(raw).hexdigest()
    return D.Dataset("tiny", md5, sha, mirrors), arrays


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("FASTNET_DATA", str(path))
    return path


def test_checksum_mismatch_in_data_dir_is_rejected_and_cache_untouched(tmp_path, cache):
    served = tmp_path / "given"
    served.mkdir()
    dataset, _ = _tiny_dataset(served)
    target = served / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x03abc", mtime=0))  # valid IDX, wrong content
    paths = D.locate(dataset, served, download=False)
    with pytest.raises(D.DataError, match="checksum mismatch") as info:
        D.read_idx(paths["test_labels"], dataset, "test_labels")
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value)
    assert not cache.exists() or not any(cache.rglob("*"))


def test_uncompressed_file_verified_by_content_hash(tmp_path):
    dataset, arrays = _tiny_dataset(tmp_path)
    raw = tmp_path / "train-labels-idx1-ubyte"
    raw.write_bytes(D.encode_idx(arrays["train_labels"]))
    np.testing.assert_array_equal(D.read_idx(raw, dataset, "train_labels"), arrays["train_labels"])
    raw.write_bytes(D.encode_idx(arrays["train_labels"][::-1]))
    with pytest.raises(D.DataError, match="checksum mismatch"):
        D.read_idx(raw, dataset, "train_labels")


class _Server:
    """A static file server on 127.0.0.1 with a few ways to misbehave."""

    def __init__(self, root):
        self.root = Path(root)
        self.requests = []
        self.truncate = False
        self.html_errors = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                path = server.root / self.path.lstrip("/")
                if server.html_errors or not path.is_file():
                    body = b"<html><body>404 Not Found</body></html>"
                    self.send_response(200 if server.html_errors else 404)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if server.truncate else data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    s = _Server(root)
    yield s
    s.close()


def test_fetch_from_local_mirror_into_cache(server, cache):
    dataset, arrays = _tiny_dataset(server.root, mirrors=[server.url + "missing/", server.url])
    paths = D.locate(dataset)
    for part in D.PARTS:
        assert paths[part].parent == cache / "tiny"
        np.testing.assert_array_equal(D.read_idx(paths[part], dataset, part), arrays[part])
    assert any(r.startswith("/missing/") for r in server.requests)  # first mirror tried, 404
    n = len(server.requests)
    D.locate(dataset)  # now cached: no request
    assert len(server.requests) == n


@pytest.mark.parametrize("fault", ["truncate", "html_errors", "wrong_file"])
def test_bad_download_leaves_no_file_and_next_attempt_starts_clean(server, cache, fault):
    dataset, _ = _tiny_dataset(server.root, mirrors=[server.url])
    if fault == "wrong_file":
        (server.root / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not the file")
    else:
        setattr(server, fault, True)
    with pytest.raises(D.DataError, match="could not fetch|could not download"):
        D.locate(dataset)
    leftovers = [p.name for p in (cache / "tiny").iterdir()] if (cache / "tiny").exists() else []
    assert "train-images-idx3-ubyte.gz" not in leftovers
    assert not [n for n in leftovers if "partial" in n or n.startswith("tmp")]
    # the server recovers: the next attempt fetches cleanly
    server.truncate = server.html_errors = False
    _tiny_dataset(server.root)
    dataset2, _ = _tiny_dataset(server.root, mirrors=[server.url])
    paths = D.locate(dataset2)
    assert all(paths[p].is_file() for p in D.PARTS)


# -- the safe unpickler -------------------------------------------------------


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_safe_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global posix.system|refusing"):
        D.safe_load_array_pickle(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        D.safe_load_array_pickle(pickle.dumps([np.ones(2), _Evil()], protocol=2))


def test_safe_unpickler_reads_arrays_and_mnist_layout():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (n, 784)).astype(np.float32) / 256 for n in (4, 2, 3)]
    labels = [rng.integers(0, 10, n) for n in (4, 2, 3)]
    blob = gzip.compress(pickle.dumps(tuple(zip(images, labels)), protocol=4))
    arrays = D.mnist_from_pickle(blob)
    assert arrays["train_images"].shape == (6, 28, 28) and arrays["test_images"].shape == (3, 28, 28)
    np.testing.assert_array_equal(
        arrays["train_images"].reshape(6, -1), np.rint(np.concatenate(images[:2]) * 256).astype(np.uint8)
    )
    np.testing.assert_array_equal(arrays["test_labels"], labels[2])


# -- CSV ----------------------------------------------------------------------


def test_csv_with_header(tmp_path):
    path = tmp_path / "trainset.csv"
    path.write_text("label,p1,p2,p3\n3,0,255,10\n1,5,6,7\n")
    x, t = D.load_csv(path)
    np.testing.assert_array_equal(t, [3, 1])
    np.testing.assert_array_equal(x, [[0, 255, 10], [5, 6, 7]])
    x, t = D.load_csv(path, normalize=True, one_hot_label=True)
    assert x.max() == 1.0 and t.shape == (2, 4)


@pytest.mark.parametrize(
    "text,words",
    [
        ("1,2,3\n4,5\n", "2 columns, expected 3"),
        ("1,2,3\n4,x,6\n", "line 2: not a number"),
        ("1.5,2,3\n", "labels"),
        ("-1,2,3\n", "labels"),
        ("1,nan,3\n", "NaN"),
        ("", "no data rows"),
    ],
)
def test_csv_errors(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(D.DataError, match=words):
        D.load_csv(path)


def test_failed_sources_are_one_line_each_and_the_advice_comes_last(server, cache):
    """A mirror that refuses connections (a closed port) and one that answers 404: one short line
    each, the closed one tried once rather than for each of the four files, the advice last."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    dataset, _ = _tiny_dataset(server.root, mirrors=[closed, server.url + "missing/"])
    with pytest.raises(D.DataError) as caught:
        D.locate(dataset)
    lines = str(caught.value).splitlines()
    assert lines[0] == "tiny: could not fetch the data:"
    assert lines[1] == f"  {closed}: no connection"
    assert lines[2] == f"  {server.url}missing/: HTTP 404 for train-images-idx3-ubyte.gz"
    assert lines[3].startswith("See docs/DATA.md") and len(lines) == 4
    assert len([r for r in server.requests if r.startswith("/missing/")]) == 4  # the 404 mirror: each file asked
