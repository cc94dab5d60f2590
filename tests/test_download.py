"""The climbmix downloader against a real HTTP server on 127.0.0.1: retries, truncation, atomicity, resuming."""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import prepare


def _parquet_bytes(texts: list[str]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf)
    return buf.getvalue()


PLAYS = [f"Document {i}: " + "the quick brown fox jumps over the lazy dog. " * 40 for i in range(80)]
FILES = {
    "/shard_00000.parquet": _parquet_bytes(PLAYS[:40]),
    f"/shard_{prepare.CLIMBMIX_TEST_SHARD:05d}.parquet": _parquet_bytes(PLAYS[60:]),
    f"/shard_{prepare.CLIMBMIX_VAL_SHARD:05d}.parquet": _parquet_bytes(PLAYS[40:60]),
}
RESUMABLE = _parquet_bytes(PLAYS)


class Handler(BaseHTTPRequestHandler):
    """Serves FILES; the first request to each path fails with 503; /truncated lies about its length."""

    hits: Counter = Counter()
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        Handler.hits[self.path] += 1
        if self.path == "/resumable.parquet":
            self.resumable()
            return
        if self.path == "/truncated.parquet":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.close_connection = True
            return
        if Handler.hits[self.path] == 1 or self.path not in FILES:
            self.send_error(503 if self.path in FILES else 404)
            return
        body = FILES[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def resumable(self) -> None:
        """The first answer breaks off half-way; a Range request gets the rest as 206 Partial Content."""
        asked = self.headers.get("Range", "")
        Handler.ranges.append(asked)
        if not asked:
            self.send_response(200)
            self.send_header("Content-Length", str(len(RESUMABLE)))
            self.end_headers()
            self.wfile.write(RESUMABLE[: len(RESUMABLE) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        start = int(asked.removeprefix("bytes=").rstrip("-"))
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(RESUMABLE) - 1}/{len(RESUMABLE)}")
        self.send_header("Content-Length", str(len(RESUMABLE) - start))
        self.end_headers()
        self.wfile.write(RESUMABLE[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Handler.hits.clear()
    Handler.ranges.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_one_failed_request_then_success(server: str, state_root: Path) -> None:
    dest = state_root / "dl" / "ok.parquet"
    dest.unlink(missing_ok=True)
    prepare.download_file(f"{server}/shard_00000.parquet", dest, backoff_s=0.01)
    assert Handler.hits["/shard_00000.parquet"] == 2
    assert dest.read_bytes() == FILES["/shard_00000.parquet"]
    prepare.download_file(f"{server}/shard_00000.parquet", dest, backoff_s=0.01)
    assert Handler.hits["/shard_00000.parquet"] == 2, "a present file is not downloaded again"


def test_truncated_transfer_leaves_no_file(server: str, state_root: Path) -> None:
    dest = state_root / "dl" / "truncated.parquet"
    dest.unlink(missing_ok=True)
    with pytest.raises(prepare.DataError, match="after 3 attempts"):
        prepare.download_file(f"{server}/truncated.parquet", dest, attempts=3, backoff_s=0.01)
    assert Handler.hits["/truncated.parquet"] == 3
    assert not dest.exists(), "a partial transfer never lands at the destination"
    assert not [p for p in dest.parent.glob("truncated*") if not p.name.endswith(".part")]


def test_a_broken_transfer_resumes_where_it_stopped(server: str, state_root: Path, capfd) -> None:
    dest = state_root / "dl" / "resumable.parquet"
    dest.unlink(missing_ok=True)
    dest.with_name(dest.name + ".part").unlink(missing_ok=True)
    prepare.download_file(f"{server}/resumable.parquet", dest, backoff_s=0.01)
    assert dest.read_bytes() == RESUMABLE
    assert Handler.ranges == ["", f"bytes={len(RESUMABLE) // 2}-"], "the second request asks only for the rest"
    assert "download resumable.parquet" in capfd.readouterr().err, "a progress line is printed"


def test_climbmix_bundle_from_local_server(server: str, state_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(prepare.CLIMBMIX_URL_ENV, server)
    out = state_root / "climbmix-bundle"
    for shard in (out / "shards").glob("**/*.parquet"):
        shard.unlink()
    profile = prepare.prepare_bundle("climbmix", 1, 300, out)
    assert profile.train_documents == 40
    assert profile.val_documents == 20, "karpathy's val shard is val, whole"
    assert prepare.read_texts(out / "shards" / "val.parquet") == PLAYS[40:60]
    test = prepare.read_texts(out / "shards" / "test.parquet")
    assert len(test) == 10 and set(test) < set(PLAYS[60:]), "test: half of the other pinned shard, by the seed"
    assert test != prepare.read_texts(_test_of(state_root, server, 7)), "another secret seed holds out other documents"
    assert (out / "data" / "train.npy").exists()


def _test_of(state_root: Path, server: str, seed: int) -> Path:
    out = state_root / f"climbmix-bundle-seed{seed}"
    for shard in (out / "shards").glob("**/*.parquet"):
        shard.unlink()
    prepare.prepare_bundle("climbmix", 1, 300, out, split_seed=seed)
    return out / "shards" / "test.parquet"
