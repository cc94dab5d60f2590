"""The baseline trainer: it learns, respects its budget, and keeps the contract the harness relies on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

import prepare
import train
from autoresearch.sandbox import experiment as sandbox
from autoresearch_types import ExperimentConfig

REPO = Path(__file__).resolve().parent.parent

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


BY_HAND = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}


def by_hand(state: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python train.py ARGV` as a person runs it, from the repository, with `state` as the state dir."""
    env = {**os.environ, prepare.STATE_DIR_ENV: str(state)}
    cmd = [sys.executable, "train.py", "--vocab-size", "512", *argv]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_python_train_py_trains_the_baseline_once_and_agrees_with_the_sandboxed_score(state_root: Path) -> None:
    """A person's `python train.py` at a tiny config: it builds the bundle, trains, prints karpathy's block and says
    it is not how experiments are scored; its val_bpb is the one a sandboxed run of the same config gets."""
    import asyncio

    state = state_root / "by-hand" / uuid.uuid4().hex[:8]  # its own: bundles of older code stay in a shared root
    proc = by_hand(state, "--max-steps", "12", "--seed", "3", "--base-config", json.dumps(BY_HAND))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert out.count("It is not how experiments are scored") == 2, "said at the start and at the end"
    figures = dict(line.split(":", 1) for line in out.split("\n---\n", 1)[1].splitlines() if ": " in line)
    figures = {k: v.strip() for k, v in figures.items() if not k.startswith("note")}
    assert int(figures["num_steps"]) == 12 and figures["depth"] == "1" and figures["device"] == "cpu"
    assert float(figures["total_tokens_M"]) == pytest.approx(12 * 4 * 32 / 1e6, abs=1e-4)
    assert float(figures["peak_rss_mb"]) > 0 and float(figures["training_seconds"]) > 0
    bundles = list((state / "bundles").glob("shakespeare-s1-v512-*"))
    assert len(bundles) == 1 and (bundles[0] / "data" / "profile.json").exists(), "the default bundle, built once"
    config = ExperimentConfig(**BY_HAND, seed=3, vocab_size=512, token_budget=12 * 4 * 32)
    where = (str(bundles[0] / "data"), str(bundles[0] / "tokenizer"))
    digests = prepare.bundle_digests(bundles[0])
    spec = sandbox.SandboxSpec((REPO / "train.py").read_text(), config, *where, cpu=1, digests=digests)
    scored = asyncio.run(sandbox.run_sandboxed(spec))
    assert scored.outcome == "success", scored.message
    assert float(figures["val_bpb"]) == pytest.approx(scored.val_bpb, abs=2e-6), "same config, seed and batches"


def test_python_train_py_refuses_a_bad_config_in_one_line(state_root: Path) -> None:
    proc = by_hand(state_root / "by-hand", "--base-config", '{"wings": 2}')
    assert proc.returncode == 2 and proc.stderr.startswith("error: --base-config must be a JSON object of config")
    assert "['wings']" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "---" not in proc.stdout
