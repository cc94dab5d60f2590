"""The bundle build's peak memory at 1 and at 4 shards of a synthetic climbmix-layout corpus, side by side.

    python benchmarks/bench_bundle.py [--quick] [--json PATH]

Each build runs `prepare.prepare_bundle("climbmix", ...)` (and the held-out digests, as `bundle.build_bundle` does)
in a fresh subprocess against a `file://` mirror of local parquet shards (nothing downloads), and reports that
process's peak RSS. Target: `bundle_rss_ratio_4_over_1` <= 1.3, i.e. memory stays flat as shards are added.
Its own home rather than `bench_trainer.py`: that one measures training in its own process, while these figures
need a synthetic corpus and one clean process per build.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import parse_args, report  # noqa: E402

ROW_GROUP = 1024
"""climbmix's row-group size: 1024 documents."""
WORDS = 6000
VOCAB = 2048
SIZES = (1, 4)


def synthetic_words(rng: np.random.Generator) -> list[str]:
    """A fixed lexicon of pseudo-words, 2 to 9 letters, used with Zipf-like frequencies."""
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    lengths = rng.integers(2, 10, size=WORDS)
    return ["".join(rng.choice(letters, size=n)) for n in lengths]


def write_shard(path: Path, chars: int, seed: int, words: list[str]) -> None:
    """One climbmix-layout shard (a `text` column, zstd, row groups of 1024) of about `chars` characters."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    lexicon = np.array(words, dtype=object)
    written = 0
    with pq.ParquetWriter(path, pa.schema([("text", pa.string())]), compression="zstd") as writer:
        while written < chars:
            docs = []
            for n in rng.integers(100, 900, size=ROW_GROUP):
                picks = lexicon[rng.choice(len(words), size=n, p=weights)]
                docs.append(" ".join(picks) + ".")
            written += sum(len(d) for d in docs)
            writer.write_table(pa.table({"text": docs}), row_group_size=ROW_GROUP)


def make_corpus(mirror: Path, shard_chars: int) -> None:
    """Shards 0..3 for training plus the pinned test and val shards, in climbmix's names (kept between runs)."""
    import prepare

    stamp = mirror / f"ready-{shard_chars}"
    if stamp.exists():
        return
    shutil.rmtree(mirror, ignore_errors=True)
    mirror.mkdir(parents=True)
    words = synthetic_words(np.random.default_rng(0))
    for i in (*range(max(SIZES)), prepare.CLIMBMIX_TEST_SHARD, prepare.CLIMBMIX_VAL_SHARD):
        write_shard(mirror / f"shard_{i:05d}.parquet", shard_chars, seed=i + 1, words=words)
    stamp.touch()


def child(shards: int, mirror: Path, out: Path) -> None:
    """Build one bundle in this process and print its peak RSS and time as JSON (the parent reads the last line)."""
    import prepare

    os.environ[prepare.CLIMBMIX_URL_ENV] = f"file://{mirror}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(prepare.download_cache(f"file://{mirror}"), ignore_errors=True)
    start = time.perf_counter()
    profile = prepare.prepare_bundle("climbmix", shards, VOCAB, out)
    prepare.bundle_digests(out)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_mb": rss, "seconds": seconds, "train_tokens": profile.train_tokens}))


def measure(shards: int, mirror: Path, out: Path) -> dict[str, float]:
    """One build in a fresh Python process: its figures."""
    cmd = [sys.executable, __file__, "--child", str(shards), "--mirror", str(mirror), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the {shards}-shard build failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if "--child" in sys.argv:
        i = sys.argv.index
        child(int(sys.argv[i("--child") + 1]), Path(sys.argv[i("--mirror") + 1]), Path(sys.argv[i("--out") + 1]))
        return
    args = parse_args(__doc__)
    import prepare

    shard_chars = 6_000_000 if args.quick else 40_000_000
    root = prepare.state_dir() / "bench" / "bundle-rss"
    make_corpus(root / "mirror", shard_chars)
    runs = {n: measure(n, root / "mirror", root / f"bundle-{n}") for n in SIZES}
    one, four = runs[1], runs[4]
    figures = {
        "bundle_shard_chars": shard_chars,
        "bundle_peak_rss_mb_1_shard": round(one["rss_mb"], 1),
        "bundle_peak_rss_mb_4_shards": round(four["rss_mb"], 1),
        "bundle_rss_ratio_4_over_1": round(four["rss_mb"] / one["rss_mb"], 3),
        "bundle_build_s_1_shard": round(one["seconds"], 2),
        "bundle_build_s_4_shards": round(four["seconds"], 2),
        "bundle_train_tokens_4_over_1": round(four["train_tokens"] / one["train_tokens"], 2),
    }
    report(figures, args.json, {"bundle_rss_ratio_4_over_1": "<= 1.3", "bundle_train_tokens_4_over_1": "~4"})


if __name__ == "__main__":
    main()
