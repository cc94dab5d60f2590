"""The baseline trainer: it learns, respects its budget, and keeps the contract the harness relies on."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import prepare
import train
from autoresearch.sandbox import experiment as sandbox
from autoresearch_types import ExperimentConfig

TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=8, token_budget=60 * 8 * 32, vocab_size=512
)


def handed_data(bundle: Path, config: ExperimentConfig, name: str) -> str:
    """A training data dir as the harness gives it: `meta.json` and this run's batches, nothing else."""
    data = bundle.parent / f"train-data-{name}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    shutil.copyfile(bundle / "data" / "meta.json", data / "meta.json")
    np.save(data / prepare.BATCHES_FILE, sandbox.run_batches(str(bundle / "data"), config))
    return str(data)


def _val_bpb(model, bundle: Path) -> float:
    table = np.load(bundle / "tokenizer" / "token_bytes.npy")
    return prepare.evaluate_bpb(model, prepare.load_tokens(bundle / "data", "val"), table, TINY.seq_len, 4096)


def test_short_training_lowers_loss(tiny_bundle: Path) -> None:
    before = _val_bpb(train.build_model(TINY), tiny_bundle)
    model, summary = train.run_training(TINY, handed_data(tiny_bundle, TINY, "short"))
    after = _val_bpb(model, tiny_bundle)
    assert summary.steps == 60
    assert summary.tokens_seen == 60 * 8 * 32
    assert after < before - 0.3, (before, after)


def test_time_budget_stops_training(tiny_bundle: Path) -> None:
    config = TINY.with_overrides({"token_budget": 20_000 * TINY.tokens_per_step, "time_budget_s": 1.0})
    _, summary = train.run_training(config, handed_data(tiny_bundle, config, "capped"))
    assert 0 < summary.steps < 20_000, "the time cap, not the token budget, ended training"
    assert summary.train_seconds >= config.time_budget_s, "it trained until the cap, then stopped"


def test_build_model_is_seeded_and_shapes_match() -> None:
    a, b = train.build_model(TINY), train.build_model(TINY)
    assert all(np.array_equal(p.detach(), q.detach()) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    import torch

    logits = a(torch.zeros(2, 16, dtype=torch.int64))
    assert logits.shape == (2, 16, 512)
