"""`--preset karpathy` and the streamed bundle build: the preset's bundle from local climbmix-layout shards (nothing
downloads), its held-out digests verified, the build holding one record batch at a time, and the CLI's rules."""

from __future__ import annotations

import io
import json
import logging
import random
from pathlib import Path

import flyte
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bundle
import corpus
import prepare
from autoresearch.session import cli, inputs, presets

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "which",
    "an",
    "be",
    "this",
    "are",
    "were",
    "it",
]


def climbmix_shard(path: Path, docs: int, seed: int) -> list[str]:
    """A shard in climbmix's layout (a `text` column, zstd, row groups of 1024 documents); its texts."""
    rng = random.Random(seed)
    texts = [f"doc {seed}-{i}: " + " ".join(rng.choices(WORDS, k=rng.randint(20, 80))) for i in range(docs)]
    pq.write_table(pa.table({"text": texts}), path, row_group_size=1024, compression="zstd")
    return texts


@pytest.fixture(scope="module")
def mirror(state_root: Path) -> dict[int, list[str]]:
    """A local `file://` mirror: train shard 0 (three record batches), the pinned test and val shards."""
    root = state_root / "preset-mirror"
    root.mkdir(parents=True, exist_ok=True)
    sizes = {0: 2500, prepare.CLIMBMIX_TEST_SHARD: 300, prepare.CLIMBMIX_VAL_SHARD: 200}
    return {i: climbmix_shard(root / f"shard_{i:05d}.parquet", n, i) for i, n in sizes.items()}


@pytest.fixture
def local_climbmix(state_root: Path, mirror: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = state_root / "preset-mirror"
    monkeypatch.setenv(prepare.CLIMBMIX_URL_ENV, f"file://{root}")
    return root


def test_the_karpathy_preset_holds_his_values() -> None:
    p = presets.KARPATHY
    config = p.config()
    assert (p.dataset, p.vocab_size, config.seq_len) == ("climbmix", 8192, 2048)
    assert config.eval_tokens == 40 * 524288 == 20_971_520, "his EVAL_TOKENS"
    assert p.max_steps * config.batch_size * config.seq_len == 953 * 2**19 == 499_646_464, "his baseline's tokens"
    assert (config.n_layer, config.n_embd, config.n_embd // config.n_head) == (8, 512, 128), "his depth-8 model"
    assert (prepare.CLIMBMIX_VAL_SHARD, prepare.CLIMBMIX_TEST_SHARD) == (6542, 6541)
    assert prepare.get_source("climbmix").shard_range[1] == 6541, "the test shard is never a training shard"


def test_explicit_flags_win_over_the_preset() -> None:
    given = {"dataset": "", "num_shards": 1, "vocab_size": 300, "max_steps": 0, "time_budget": 0.0}
    out = presets.apply("karpathy", {**given, "base_config": {"seq_len": 64}})
    assert (out["dataset"], out["num_shards"], out["vocab_size"]) == ("climbmix", 1, 300)
    assert out["max_steps"] == presets.KARPATHY.max_steps and out["time_budget"] == presets.KARPATHY.time_budget
    assert out["base_config"]["seq_len"] == 64 and out["base_config"]["n_layer"] == 8, "keys win one by one"
    assert presets.apply("none", given) == given and presets.apply("", given) == given


def check(argv: list[str]) -> dict:
    return cli.check_args(cli.build_parser().parse_args(argv))[0]


def test_the_cli_accepts_the_preset_whole_and_at_tiny_overrides() -> None:
    tiny = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
    values = check(
        ["--preset", "karpathy", "--num-shards", "1", "--vocab-size", "300", "--base-config", json.dumps(tiny)]
    )
    assert values["preset"] == "karpathy" and values["vocab_size"] == 300
    assert check(["--preset", "karpathy"])["preset"] == "karpathy", "seq 2048, width 512, batch 128 are inside"
    with pytest.raises(inputs.InputError, match="n_layer must be in 1..8"):
        check(["--preset", "karpathy", "--base-config", '{"n_layer": 100}'])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--preset", "nanogpt"])
    with pytest.raises(inputs.InputError, match="preset must be one of none, karpathy"):
        inputs.run_inputs({"n_experiments": 1, "batch_size": 1, "concurrency": 1, "max_turns": 1, "preset": "x"})


def test_a_key_bounds_cover_its_base_config() -> None:
    bounds = presets.bounds("karpathy")
    assert bounds.limits["seq_len"].high == 2048 and bounds.limits["batch_size"].high == 128
    assert presets.bounds("").limits["seq_len"].high == 1024, "without a preset the workshop is unchanged"
    assert bounds.clamp({"seq_len": 4096}).values["seq_len"] == 2048, "an edit cannot go past the base"


def test_the_preset_bundle_builds_from_a_local_shard_one_batch_at_a_time(
    local_climbmix: Path, mirror: dict, state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    encode = prepare.tokenize_documents
    monkeypatch.setattr(
        prepare, "tokenize_documents", lambda enc, texts: calls.append(len(texts)) or encode(enc, texts)
    )
    out = state_root / "preset-bundle"
    for old in (out / "shards").glob("*.parquet"):
        old.unlink()
    profile = prepare.prepare_bundle(presets.KARPATHY.dataset, 1, 300, out, split_seed=11)
    assert profile.train_documents == 2500 and profile.val_documents == 200, "the val shard is val, whole"
    assert max(calls) <= corpus.READ_BATCH_ROWS and len(calls) >= 5, "tokenised a record batch at a time"
    enc = prepare.load_tokenizer(out / "tokenizer")
    val = prepare.load_tokens(out / "data", "val")
    assert val.tobytes() == prepare.tokenize_documents(enc, mirror[prepare.CLIMBMIX_VAL_SHARD]).tobytes()
    whole = io.BytesIO()
    np.save(whole, prepare.tokenize_documents(enc, mirror[0]))
    assert (out / "data" / "train.npy").read_bytes() == whole.getvalue(), "the same bytes np.save writes"
    test = prepare.read_texts(out / "shards" / "test.parquet")
    assert len(test) == 150 and set(test) < set(mirror[prepare.CLIMBMIX_TEST_SHARD])
    digests = prepare.bundle_digests(out)
    for name in prepare.HELD_OUT_FILES:
        path = prepare.held_out_path(out / "data", out / "tokenizer", name)
        assert np.array_equal(prepare.read_verified(path, digests[name]), np.load(path))
    assert not list(out.rglob("*.raw")) and not list(out.rglob("*.part")), "no partial file is left"


def test_the_tokenizer_trains_on_a_capped_sample(local_climbmix: Path, mirror: dict, state_root: Path) -> None:
    shard = local_climbmix / "shard_00000.parquet"
    sample = list(prepare.tokenizer_sample([shard], max_chars=5000, doc_chars=40))
    assert all(len(t) <= 40 for t in sample) and 5000 <= sum(map(len, sample)) < 5040
    assert prepare.TOKENIZER_SAMPLE_CHARS == 1_000_000_000 and prepare.TOKENIZER_DOC_CHARS == 10_000


def test_the_bundle_task_builds_the_preset_bundle_off_the_event_loop(local_climbmix: Path) -> None:
    flyte.init(org="local", project="autoresearch-tests", domain="development", log_level=logging.ERROR)
    vocab = random.Random().randint(300, 2000)  # a fresh cache key, so the task really builds
    built = flyte.run(bundle.build_bundle, dataset="climbmix", num_shards=1, vocab_size=vocab, split_seed=5).outputs()[
        0
    ]
    assert built.digests == prepare.held_out_digests(built.data.path, built.tokenizer.path)
    assert prepare.load_profile(built.data.path).val_documents == 200
