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


def test_second_build_is_a_cache_hit(flyte_local: None) -> None:
    vocab = random.Random().randint(300, 20000)  # a fresh cache key, so the first build really builds
    first = flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=vocab).outputs()[0]
    log = Path(first.root) / "builds.log"
    train_npy = Path(first.data.path) / "train.npy"
    assert len(log.read_text().splitlines()) == 1
    stamp = train_npy.stat().st_mtime_ns
    second = flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=vocab).outputs()[0]
    assert second.data.path == first.data.path
    assert len(log.read_text().splitlines()) == 1, "the second build ran the task again"
    assert train_npy.stat().st_mtime_ns == stamp, "the second build re-tokenised"
    profile = flyte.run(bundle.profile_bundle, bundle=second).outputs()[0]
    assert profile.vocab_size == vocab
    assert profile.train_tokens > 0 and profile.val_tokens > 0


def test_bundles_live_outside_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not str(bundle.bundle_dir("shakespeare", 1, 512)).startswith("/tmp")
    monkeypatch.setenv(prepare.STATE_DIR_ENV, "/tmp/state")
    with pytest.raises(prepare.DataError, match="under /tmp"):
        bundle.bundle_dir("shakespeare", 1, 512)


def test_bad_request_fails_with_the_allowed_range(flyte_local: None) -> None:
    with pytest.raises(Exception, match=r"allowed 1\.\.8"):
        flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=99, vocab_size=512)
