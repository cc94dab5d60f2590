"""A content search for held-out text: every readable file, hashed at word boundaries, against a set of needles.

The same functions build the needles (outside the sandbox, from the corpus) and search (inside it, embedded in a
hostile `train.py`), so both sides normalise text alike. Stdlib and numpy only: that is all a sandbox has.

Text is compared as letters only, lower-cased (markup, punctuation, whitespace and line breaks dropped), so a
passage matches whatever its formatting (the corpus package's markdown, the bundle's parquet, a copy in a
docstring). A needle is the hash of `WINDOW` letters starting at a word start; the search hashes the window at
every word start of every file, so any copied run of text longer than `WINDOW` letters plus a word is found.
Token arrays are searched too: `TOKEN_WINDOW` uint16 tokens starting at a BOS token, at any byte offset.

What is read, and what is skipped (and why that is sound):
- every regular file under `/`, once per inode, except `/proc`, `/sys` and `/dev` (kernel interfaces, not
  stored data); a symbolic link is not followed, its target is read where it lives; paths a walk cannot list
  (the corpus package's own directory, the bundle) are also tried by name (`probe`);
- an ELF file (shared libraries, executables) is read section by section, leaving out executable code
  (`SHF_EXECINSTR`) and sections without bytes: stored text lives in data sections, never in machine code;
- zip archives (wheels, `.npz`, torch checkpoints), gzip, bzip2 and xz files are also read decompressed, each
  member up to `MAX_MEMBER` bytes; other compressed formats (snappy or zstd parquet pages) are read as they are,
  which a search by content cannot see through: the sandbox's Python view holds no reader for them either;
- a file is read in `CHUNK`-byte pieces overlapping by `OVERLAP` bytes: a window spread over more than that many
  raw bytes (over 4 KiB of non-letters inside 48 letters) is not seen.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import struct
import zipfile

import numpy as np

WINDOW = 48
TOKEN_WINDOW = 24
BASE = np.uint64(0x100000001B3)
CHUNK = 2 << 20
OVERLAP = 4096
MAX_MEMBER = 256 << 20
SKIP_ROOTS = ("/proc", "/sys", "/dev")
_MASK64 = (1 << 64) - 1


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i (mod 2**64) for i < n."""
    inverse = np.uint64(pow(int(BASE), -1, 1 << 64))
    with np.errstate(over="ignore"):
        up = np.cumprod(np.full(n, BASE, dtype=np.uint64))
        down = np.cumprod(np.full(n, inverse, dtype=np.uint64))
    return np.concatenate(([np.uint64(1)], up[:-1])), np.concatenate(([np.uint64(1)], down[:-1]))


_POW: dict[str, np.ndarray] = {}
_TOKEN_POWERS = _powers(TOKEN_WINDOW)[0]


def window_hashes(values: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Polynomial hashes (mod 2**64) of `values[s:s+width]` for each start `s` (those that fit)."""
    n = values.size
    starts = starts[starts + width <= n]
    if starts.size == 0:
        return np.empty(0, dtype=np.uint64)
    if n > CHUNK + OVERLAP:
        raise ValueError(f"hash at most {CHUNK + OVERLAP} values at once, got {n}")
    if not _POW:
        _POW.update(zip(("up", "down"), _powers(CHUNK + OVERLAP), strict=True))
    up, down = _POW["up"], _POW["down"]
    with np.errstate(over="ignore"):
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(values.astype(np.uint64) * up[:n], dtype=np.uint64)))
        return (prefix[starts + width] - prefix[starts]) * down[starts]


_IS_LETTER = np.zeros(256, dtype=bool)
_IS_LETTER[list(range(65, 91)) + list(range(97, 123))] = True


def letters(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(lower-case letters of `data`, positions among them that start a word)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    is_letter = _IS_LETTER[raw]
    at = np.flatnonzero(is_letter)
    before = at - 1
    starts = np.flatnonzero((before < 0) | ~is_letter[before])
    return raw[at] | np.uint8(0x20), starts


def text_needles(texts, keep_one_in: int = 1) -> np.ndarray:
    """Sorted unique hashes of every word-start window of `texts` (one in `keep_one_in`, chosen by hash)."""
    found = [window_hashes(*letters(t.encode("utf-8")), WINDOW) for t in texts]
    hashes = np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.uint64)
    return hashes[hashes % np.uint64(keep_one_in) == 0] if keep_one_in > 1 else hashes


def token_needles(tokens: np.ndarray, bos: int) -> np.ndarray:
    """Sorted unique hashes of `TOKEN_WINDOW` tokens starting at each BOS of a held-out token array."""
    return np.unique(_token_hashes(np.asarray(tokens, dtype=np.uint16), bos))


_FILTERS: dict[int, np.ndarray] = {}
FILTER_BITS = 24


def _matches(hashes: np.ndarray, needles: np.ndarray) -> set[int]:
    """The needles among `hashes`: a table on the top bits first, then an exact look-up of the few left."""
    if hashes.size == 0 or needles.size == 0:
        return set()
    table = _FILTERS.get(id(needles))
    if table is None:
        table = _FILTERS[id(needles)] = np.zeros(1 << FILTER_BITS, dtype=bool)
        table[(needles >> np.uint64(64 - FILTER_BITS)).astype(np.intp)] = True
    hashes = hashes[table[(hashes >> np.uint64(64 - FILTER_BITS)).astype(np.intp)]]
    if hashes.size == 0:
        return set()
    at = np.searchsorted(needles, hashes).clip(0, needles.size - 1)
    return {int(h) for h in hashes[needles[at] == hashes]}


def _token_hashes(values: np.ndarray, bos: int) -> np.ndarray:
    """Hashes of `TOKEN_WINDOW` values from each BOS (few per buffer, so gathered rather than prefix-summed)."""
    starts = np.flatnonzero(values == bos)
    starts = starts[starts + TOKEN_WINDOW <= values.size]
    if starts.size == 0:
        return np.empty(0, dtype=np.uint64)
    rows = values[starts[:, None] + np.arange(TOKEN_WINDOW)].astype(np.uint64)
    with np.errstate(over="ignore"):
        return (rows * _TOKEN_POWERS).sum(axis=1, dtype=np.uint64)


def scan_bytes(data: bytes, text: np.ndarray, tokens: np.ndarray, bos: int) -> tuple[set[int], int]:
    """(distinct text needles found, token hits) in a buffer, piece by piece (`CHUNK` bytes, overlapping)."""
    found: set[int] = set()
    token_hits = 0
    for at in range(0, max(1, len(data)), CHUNK):
        matched, tokens_found = _scan_piece(data[at : at + CHUNK + OVERLAP], text, tokens, bos)
        found |= matched
        token_hits += tokens_found
    return found, token_hits


def _scan_piece(data: bytes, text: np.ndarray, tokens: np.ndarray, bos: int) -> tuple[set[int], int]:
    """(text needles found, token hits) in one piece: text windows at word starts, uint16 token windows at each
    BOS, at both byte alignments."""
    text_found = _matches(window_hashes(*letters(data), WINDOW), text)
    token_hits = 0
    raw = np.frombuffer(data, dtype=np.uint8)
    for offset in (0, 1):
        usable = (raw.size - offset) // 2 * 2
        token_hits += len(_matches(_token_hashes(raw[offset : offset + usable].view("<u2"), bos), tokens))
    return text_found, token_hits


def elf_data_ranges(head: bytes, size: int, read) -> list[tuple[int, int]] | None:
    """(offset, length) of every section of a 64-bit little-endian ELF file that holds bytes and no code, or None
    when `head` is not such a file (it is then read whole)."""
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", head, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
    if shoff == 0 or shnum == 0 or shentsize < 64 or shoff + shnum * shentsize > size:
        return None
    table = read(shoff, shnum * shentsize)
    ranges = []
    for i in range(shnum):
        _, kind, flags, _, offset, length = struct.unpack_from("<IIQQQQ", table, i * shentsize)
        if kind != 8 and not flags & 0x4 and length and offset + length <= size:  # 8: NOBITS; 0x4: EXECINSTR
            ranges.append((offset, length))
    return ranges


def _expand(data: bytes) -> list[bytes]:
    """The decompressed contents of a zip, gzip, bzip2 or xz buffer (each member bounded), or []."""
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return [archive.open(i).read(MAX_MEMBER) for i in archive.infolist() if not i.is_dir()]
        opener = {b"\x1f\x8b": gzip.open, b"BZ": bz2.open, b"\xfd7": lzma.open}.get(data[:2])
        if opener is not None:
            with opener(io.BytesIO(data)) as fh:
                return [fh.read(MAX_MEMBER)]
    except Exception:  # a damaged or unusual archive is still searched as raw bytes
        return []
    return []


def scan_file(path: str, text: np.ndarray, tokens: np.ndarray, bos: int) -> tuple[list[int], int, int]:
    """(distinct text needles found, token hits, bytes read) of one regular file."""
    found: set[int] = set()
    token_hits, read_bytes = 0, 0
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size

        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)

        for offset, length in elf_data_ranges(read(0, 64), size, read) or [(0, size)]:
            for at in range(offset, offset + length, CHUNK):
                data = read(at, min(CHUNK + OVERLAP, offset + length - at))
                read_bytes += len(data)
                for part in [data, *(_expand(data) if at == 0 and length <= MAX_MEMBER else [])]:
                    matched, tokens_found = scan_bytes(part, text, tokens, bos)
                    found |= matched
                    token_hits += tokens_found
    return sorted(found), token_hits, read_bytes


def _files(tops: list[str], report: dict) -> list[str]:
    """Every regular file under `tops` (a top may be a file), once per inode, `SKIP_ROOTS` left out."""
    seen: set[tuple[int, int]] = set()
    found: list[str] = []

    def add(path: str) -> None:
        try:
            info = os.lstat(path)
        except OSError:
            report["unreadable"] += 1
            return
        if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            found.append(path)

    def failed(_: OSError) -> None:
        report["unreadable"] += 1

    def skipped(path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in SKIP_ROOTS)

    for top in (t for t in tops if not skipped(t)):
        if os.path.isfile(top):
            add(top)
        for directory, dirs, files in os.walk(top, onerror=failed):
            dirs[:] = [d for d in dirs if not skipped(os.path.join(directory, d))]
            for name in files:
                add(os.path.join(directory, name))
    return found


def _scan_some(args: tuple) -> list[tuple[str, list[int], int, int]]:
    paths, text, tokens, bos = args
    out = []
    for path in paths:
        try:
            out.append((path, *scan_file(path, text, tokens, bos)))
        except OSError:
            out.append((path, [], -1, 0))
    return out


def hunt(text: np.ndarray, tokens: np.ndarray, bos: int, tops: list[str], workers: int = 1) -> dict:
    """Search every readable regular file under `tops`: the files with hits (the distinct text needles found, the
    token hits), and how much was read and what could not be."""
    report: dict = {"hits": {}, "files": 0, "bytes": 0, "unreadable": 0, "skipped": list(SKIP_ROOTS)}
    files = _files(tops, report)
    report["walked"] = sorted({"/".join(path.split("/")[:3]) for path in files})
    parts = [(files[i::workers], text, tokens, bos) for i in range(workers)]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = [r for part in pool.map(_scan_some, parts) for r in part]
    else:
        results = _scan_some(parts[0])
    for path, needles, token_hits, read_bytes in results:
        if token_hits < 0:
            report["unreadable"] += 1
            continue
        report["files"] += 1
        report["bytes"] += read_bytes
        if needles or token_hits:
            report["hits"][path] = {"text": needles[:5000], "tokens": token_hits}
    return report


def probe(paths: list[str]) -> dict[str, str]:
    """For each path named directly (whether or not a walk could list it): `absent`, `denied` or `readable`."""
    out = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as fh:
                    fh.read(1)
            out[path] = "readable"
        except FileNotFoundError:
            out[path] = "absent"
        except OSError:
            out[path] = "denied"
    return out


def reachable_tops() -> list[str]:
    """Where to start besides `/`: the work dir and everything on the import path, each entry resolved through its
    links (a backend may allow a path without allowing its parents to be listed, so a walk from `/` misses it)."""
    import sys

    tops = [os.getcwd()]
    for entry in sys.path:
        tops.append(os.path.realpath(entry or "."))
        try:
            tops += [os.path.realpath(os.path.join(entry, name)) for name in os.listdir(entry or ".")]
        except OSError:
            continue
    return sorted(set(tops))


def importable() -> list[str]:
    """Every top-level module this interpreter could import (found on `sys.path`, or built in)."""
    import pkgutil
    import sys

    return sorted({m.name for m in pkgutil.iter_modules()} | set(sys.builtin_module_names))
