"""The bundle tasks in Flyte local mode: a real build, a real cache hit, a real profile."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import flyte
import pytest

import bundle
import prepare


@pytest.fixture(scope="module")
def flyte_local() -> None:
    flyte.init(org="local", project="autoresearch-tests", domain="development", log_level=logging.ERROR)


def build(vocab: int, split_seed: int) -> bundle.Bundle:
    return flyte.run(
        bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=vocab, split_seed=split_seed
    ).outputs()[0]


def test_second_build_is_a_cache_hit(flyte_local: None) -> None:
    vocab = random.Random().randint(300, 20000)  # a fresh cache key, so the first build really builds
    first = build(vocab, 0)
    log = Path(first.root) / "builds.log"
    train_npy = Path(first.data.path) / "train.npy"
    assert len(log.read_text().splitlines()) == 1
    stamp = train_npy.stat().st_mtime_ns
    second = build(vocab, 0)
    assert second.data.path == first.data.path
    assert len(log.read_text().splitlines()) == 1, "the second build ran the task again"
    assert train_npy.stat().st_mtime_ns == stamp, "the second build re-tokenised"
    profile = flyte.run(bundle.profile_bundle, bundle=second).outputs()[0]
    assert profile.vocab_size == vocab
    assert profile.train_tokens > 0 and profile.val_tokens > 0
    assert second.digests == prepare.held_out_digests(second.data.path, second.tokenizer.path)
    assert set(second.digests) == {"val", "test", "token_bytes"}, "every held-out file's hash is recorded at build"


def test_bundles_are_keyed_by_the_split_and_the_split_by_its_secret_seed(flyte_local: None) -> None:
    """Two keys' seeds give two bundles with other held-out plays (same train/val/test sizes' rule), each cached."""
    vocab = random.Random().randint(300, 20000)
    one, other = build(vocab, 1), build(vocab, 2)
    assert one.split == prepare.split_id(1) and other.split == prepare.split_id(2) and one.root != other.root
    assert one.digests["val"] != other.digests["val"] and one.digests["test"] != other.digests["test"]
    assert build(vocab, 1).root == one.root, "the same seed is the same cached bundle"
    plays = sorted(prepare._shakespeare_plays())
    choices = {prepare.choose_held_out(plays, seed, 2, 2)[1][0] for seed in range(40)}
    assert len(choices) > 5, "the test plays depend on the seed"


def test_the_split_is_a_pure_function_of_the_seed() -> None:
    names = [f"doc{i}" for i in range(30)]
    val, test = prepare.choose_held_out(names, 7, 3, 4)
    assert (val, test) == prepare.choose_held_out(list(reversed(names)), 7, 3, 4), "order of the input is irrelevant"
    assert len(val) == 3 and len(test) == 4 and not set(val) & set(test)
    texts = [f"text {i}" for i in range(11)]
    held_val, held_test = prepare.split_held_out(texts, 5)
    assert sorted(held_val + held_test) == sorted(texts) and len(held_val) == 5
    seed = 987654321987
    assert prepare.split_id(seed) == prepare.split_id(seed) != prepare.split_id(seed + 1)
    assert str(seed)[:6] not in prepare.split_id(seed), "the public id does not show the seed"


def test_bundles_live_outside_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not str(bundle.bundle_dir("shakespeare", 1, 512, "abc")).startswith("/tmp")
    monkeypatch.setenv(prepare.STATE_DIR_ENV, "/tmp/state")
    with pytest.raises(prepare.DataError, match="under /tmp"):
        bundle.bundle_dir("shakespeare", 1, 512, "abc")


def test_bad_request_fails_with_the_allowed_range(flyte_local: None) -> None:
    with pytest.raises(Exception, match=r"allowed 1\.\.8"):
        flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=99, vocab_size=512, split_seed=0)
