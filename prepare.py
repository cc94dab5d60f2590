"""Fixed infrastructure the agent never edits: tokenizer, token arrays, loader, `evaluate_bpb`; the face of the data
sources too (`corpus.py`, re-exported here).

Every data source produces the same parquet layout (a `text` column): `train_NNNNN.parquet` shards
plus `val.parquet` and `test.parquet` of whole held-out documents. The bundle tokenises them once, a record batch at
a time into memory-mapped arrays, so training reads token arrays and never tokenises.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
from corpus import (  # noqa: F401 - re-exported: the data sources' face is prepare.py
    CLIMBMIX_TEST_SHARD,
    CLIMBMIX_URL_ENV,
    CLIMBMIX_VAL_SHARD,
    DATASETS,
    DEFAULT_CLIMBMIX_URL,
    DEFAULT_DATASET,
    DEFAULT_NUM_SHARDS,
    SHAKESPEARE_HELD_OUT,
    STATE_DIR_ENV,
    DataSource,
    _shakespeare_documents,
    _shakespeare_plays,
    choose_held_out,
    download_cache,
    download_file,
    fetch_climbmix,
    fetch_shakespeare,
    get_source,
    iter_text_batches,
    read_texts,
    say,
    split_held_out,
    split_id,
    state_dir,
)

BOS = "<|bos|>"
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
SPLITS = ("train", "val", "test")
EVAL_BLOCK_ELEMENTS = 1 << 22


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


TOKENIZER_SAMPLE_CHARS = 1_000_000_000
"""The tokenizer trains on at most this many characters of training text, the first ones in shard order
(karpathy's `max_chars`)."""
TOKENIZER_DOC_CHARS = 10_000
"""Each document adds at most its first this many characters to the tokenizer's sample (karpathy's `doc_cap`)."""
COPY_BLOCK_BYTES = 1 << 24
"""Bytes copied at a time from the raw token file into the final `.npy`."""


def tokenizer_sample(
    paths: list[Path], max_chars: int = TOKENIZER_SAMPLE_CHARS, doc_chars: int = TOKENIZER_DOC_CHARS
) -> Iterator[str]:
    """The tokenizer's training text, streamed: each document's first `doc_chars`, until `max_chars` are given."""
    given = 0
    for path in paths:
        for batch in iter_text_batches(path):
            for text in batch:
                piece = text[:doc_chars]
                yield piece
                given += len(piece)
                if given >= max_chars:
                    return


@dataclass(frozen=True)
class SplitCount:
    """What tokenising one split wrote: tokens (BOS included), documents, and UTF-8 bytes of their text."""

    tokens: int
    documents: int
    text_bytes: int


def tokenize_split(enc, paths: list[Path], out: Path, name: str) -> SplitCount:
    """Tokenise the documents of `paths` a record batch at a time into `out`, a `.npy` of uint16 (BOS before each
    document) that readers memory-map, holding one batch in memory: tokens are appended to a raw file, then the
    `.npy` header and that file are written with plain writes (the same bytes `np.save` writes; a mapped write would
    count every page of the array as resident memory), renamed into place when whole."""
    raw = out.with_name(out.name + ".raw")
    tokens = documents = text_bytes = 0
    with open(raw, "wb") as fh:
        for i, path in enumerate(paths):
            for batch in iter_text_batches(path):
                ids = tokenize_documents(enc, batch)
                fh.write(ids.tobytes())
                tokens, documents = tokens + ids.size, documents + len(batch)
                text_bytes += sum(len(t.encode("utf-8")) for t in batch)
            say(f"tokenise {name}: {i + 1}/{len(paths)} shards, {documents} documents, {tokens} tokens")
    part = out.with_name(out.name + ".part")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint16)), "fortran_order": False, "shape": (tokens,)}
    with open(part, "wb") as dst, open(raw, "rb") as src:
        np.lib.format.write_array_header_1_0(dst, header)
        shutil.copyfileobj(src, dst, COPY_BLOCK_BYTES)
    os.replace(part, out)
    raw.unlink()
    return SplitCount(tokens, documents, text_bytes)


# ---------------------------------------------------------------- bundle


def split_paths(shards: Path, num_shards: int) -> dict[str, list[Path]]:
    """The parquet files of each split in a source's layout."""
    train = [shards / f"train_{i:05d}.parquet" for i in range(num_shards)]
    return {"train": train, "val": [shards / "val.parquet"], "test": [shards / "test.parquet"]}


def prepare_bundle(
    dataset: str, num_shards: int, vocab_size: int, out_dir: Path, split_seed: int = 0
) -> DatasetProfile:
    """Fetch shards, train the tokenizer on a capped sample of train text, and write token arrays and a profile.

    Layout: `out_dir/shards/*.parquet`, `out_dir/tokenizer/`, `out_dir/data/{train,val,test}.npy`,
    `out_dir/data/profile.json`. The raw shards are the source; everything else derives from them, streamed a record
    batch at a time, so memory stays flat as shards are added. `split_seed` chooses the held-out documents: a
    research key passes its own secret one (`bundle.build_bundle`); tests and benchmarks may use the default.
    """
    source = validate_request(dataset, num_shards, vocab_size)
    shards = out_dir / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    source.fetch(shards, num_shards, split_seed)
    paths = split_paths(shards, num_shards)
    enc = train_tokenizer(tokenizer_sample(paths["train"]), vocab_size)
    save_tokenizer(enc, out_dir / "tokenizer")
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    counts = {split: tokenize_split(enc, paths[split], data / f"{split}.npy", split) for split in SPLITS}
    meta = {"vocab_size": enc.n_vocab, "bos_id": enc.encode_single_token(BOS)}
    (data / "meta.json").write_text(json.dumps(meta))
    train = counts["train"]
    profile = DatasetProfile(
        dataset=dataset,
        num_shards=num_shards,
        vocab_size=enc.n_vocab,
        train_tokens=train.tokens,
        val_tokens=counts["val"].tokens,
        train_documents=train.documents,
        val_documents=counts["val"].documents,
        bytes_per_token=round(train.text_bytes / max(1, train.tokens - train.documents), 4),
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
    return {name: file_sha256(held_out_path(data_dir, tokenizer_dir, name)) for name in HELD_OUT_FILES}


def file_sha256(path: Path, block: int = 1 << 24) -> str:
    """The sha256 of a file's bytes, read a block at a time (the same digest as hashing them whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


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
