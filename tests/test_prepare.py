"""Fixed infrastructure: tokenizer, token arrays, loader, evaluation and the data sources' errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import prepare


def test_tokenizer_round_trip(tiny_bundle: Path) -> None:
    enc = prepare.load_tokenizer(tiny_bundle / "tokenizer")
    text = "To be, or not to be: that is the question.\nWhether 'tis nobler — ünïcode 123"
    ids = enc.encode_ordinary(text)
    assert enc.n_vocab == 512
    assert max(ids) < 511
    assert enc.decode(ids) == text


def test_token_bytes_match_decoding(tiny_bundle: Path) -> None:
    enc = prepare.load_tokenizer(tiny_bundle / "tokenizer")
    table = np.load(tiny_bundle / "tokenizer" / "token_bytes.npy")
    bos = enc.encode_single_token(prepare.BOS)
    assert table[bos] == 0
    ids = enc.encode_ordinary("Friends, Romans, countrymen")
    assert int(table[ids].sum()) == len(b"Friends, Romans, countrymen")


def test_profile_and_held_out_splits(tiny_bundle: Path) -> None:
    profile = prepare.load_profile(tiny_bundle / "data")
    assert profile.train_tokens > 1_000_000
    assert 0 < profile.val_tokens < profile.train_tokens
    assert not {"test_tokens", "test_documents", "val_names", "test_names"} & set(profile.to_dict()), "size only"
    assert prepare.load_tokens(tiny_bundle / "data", "test").size > 0
    val, test = prepare.choose_held_out(sorted(prepare._shakespeare_plays()), 0, *prepare.SHAKESPEARE_HELD_OUT)
    train_text = " ".join(prepare.read_texts(tiny_bundle / "shards" / "train_00000.parquet"))
    held = " ".join(prepare.read_texts(tiny_bundle / "shards" / "val.parquet"))
    passages = {
        play: prepare._shakespeare_documents(prepare._shakespeare_plays()[play])[1][:200] for play in val + test
    }
    assert not any(passage in train_text for passage in passages.values()), "held-out plays are not trained on"
    assert passages[val[0]] in held and passages[test[0]] not in held


def test_run_batches_are_bos_aligned_exact_and_seeded(tiny_bundle: Path) -> None:
    data = tiny_bundle / "data"
    meta = prepare.load_meta(data)
    tokens = prepare.load_tokens(data, "train")
    blocks = prepare.make_batches(tokens, meta["bos_id"], batch_size=4, seq_len=64, steps=5, seed=7)
    assert blocks.shape == (5, 4, 65) and blocks.dtype == np.uint16
    assert np.all(blocks[:, :, 0] == meta["bos_id"])
    again = prepare.make_batches(tokens, meta["bos_id"], batch_size=4, seq_len=64, steps=5, seed=7)
    assert np.array_equal(again, blocks)
    other = prepare.make_batches(tokens, meta["bos_id"], batch_size=4, seq_len=64, steps=5, seed=8)
    assert not np.array_equal(other, blocks)


def test_batch_feed_yields_each_handed_batch_once(tiny_bundle: Path) -> None:
    data = tiny_bundle / "data"
    meta = prepare.load_meta(data)
    blocks = prepare.make_batches(prepare.load_tokens(data, "train"), meta["bos_id"], 4, 64, 3, 0)
    handed = tiny_bundle.parent / "feed-test"
    handed.mkdir(exist_ok=True)
    np.save(handed / prepare.BATCHES_FILE, blocks)
    pairs = list(prepare.BatchFeed(handed))
    assert len(pairs) == 3 == len(prepare.BatchFeed(handed))
    for (x, y), block in zip(pairs, blocks, strict=True):
        assert x.shape == y.shape == (4, 64) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        assert np.array_equal(x.numpy(), block[:, :-1]) and np.array_equal(y[:, -1].numpy(), block[:, -1])


def test_eval_windows_never_share_a_target_with_another_windows_inputs() -> None:
    tokens = np.arange(1000)
    windows = prepare.eval_windows(tokens, seq_len=16, eval_tokens=160)
    assert windows.shape == (10, 17)
    inputs = set(windows[:, :-1].ravel().tolist())
    last_targets = windows[:, -1].tolist()
    assert not inputs & set(last_targets)
    assert prepare.eval_prefix_len(1000, 16, 160) == 170


class UniformModel(torch.nn.Module):
    """Zero logits everywhere: every token equally likely. It also returns a bogus loss."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, idx: torch.Tensor):
        return torch.zeros(*idx.shape, self.vocab), torch.tensor(0.0)


def test_evaluate_bpb_uniform_is_analytic(tiny_bundle: Path) -> None:
    data = tiny_bundle / "data"
    tokens = prepare.load_tokens(data, "val")
    table = np.load(tiny_bundle / "tokenizer" / "token_bytes.npy")
    seq_len, n = 32, 2048
    bpb = prepare.evaluate_bpb(UniformModel(512), tokens, table, seq_len, eval_tokens=n)
    targets = prepare.eval_windows(tokens, seq_len, n)[:, 1:]
    counted = int((table[targets] > 0).sum())
    expected = counted * math.log(512) / (math.log(2) * int(table[targets].sum()))
    assert bpb == pytest.approx(expected, rel=1e-12)
    assert bpb == prepare.evaluate_bpb(UniformModel(512), tokens, table, seq_len, eval_tokens=n)


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(prepare.DataError, match="climbmix.*shakespeare"):
        prepare.validate_request("wikitext", 1, 512)


@pytest.mark.parametrize(
    ("shards", "vocab", "match"),
    [(0, 512, r"allowed 1\.\.8"), (9, 512, r"allowed 1\.\.8"), (1, 100, r"allowed 264\.\.65536"), (1, 70000, "65536")],
)
def test_out_of_range_requests_are_refused(shards: int, vocab: int, match: str) -> None:
    with pytest.raises(prepare.DataError, match=match):
        prepare.validate_request("shakespeare", shards, vocab)


def test_corrupt_and_empty_shards_name_the_file(state_root: Path) -> None:
    corrupt = state_root / "bad" / "corrupt.parquet"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(prepare.DataError, match="corrupt shard .*corrupt.parquet"):
        prepare.read_texts(corrupt)
    empty = state_root / "bad" / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), empty)
    with pytest.raises(prepare.DataError, match="empty shard .*empty.parquet"):
        prepare.read_texts(empty)
