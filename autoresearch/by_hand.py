"""`python train.py`: train the baseline once by hand, in this process, with no sandbox and no agent.

For people who want to smoke-test or hack `train.py` the way they would karpathy's: it builds the default bundle if
needed (where a research run keeps it), hands `run_training` the batches a run would get, scores the model with the
trusted in-process evaluator (`prepare.evaluate_bpb`) and prints karpathy's summary block. It is not how experiments
are scored: a research run trains every edit in a sandbox and computes `val_bpb` outside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import bundle
import prepare
from autoresearch.sandbox.experiment import run_batches
from autoresearch_types import ExperimentConfig

NOTE = (
    "note: `python train.py` is for people: it trains the baseline once in this process, with no sandbox and no "
    "agent. It is not how experiments are scored: a research run trains each edit in a sandbox and trusted code "
    "outside it computes val_bpb."
)
WORK = "by-hand"
"""The folder under the state dir where the run's batches and learning curve go (emptied at each run)."""


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python train.py`, with the research run's defaults."""
    base = ExperimentConfig()
    p = argparse.ArgumentParser(prog="train.py", description=NOTE.removeprefix("note: "))
    p.add_argument("--dataset", default=prepare.DEFAULT_DATASET, choices=sorted(prepare.DATASETS), help="corpus")
    p.add_argument("--num-shards", type=int, default=prepare.DEFAULT_NUM_SHARDS, help="training shards")
    p.add_argument("--vocab-size", type=int, default=base.vocab_size, help="BPE vocabulary size")
    p.add_argument("--max-steps", type=int, default=base.max_steps, help="steps of the config's batch and length")
    p.add_argument("--base-config", default=None, help="JSON overrides of the config, e.g. '{\"n_layer\": 1}'")
    p.add_argument("--seed", type=int, default=base.seed, help="seed of the weights and of the batches")
    return p


def config_of(args: argparse.Namespace, vocab_size: int) -> ExperimentConfig:
    """The config to train: the base config with the overrides, the bundle's vocabulary, the seed and the steps.
    Raises ValueError with what is wrong."""
    try:
        overrides = json.loads(args.base_config) if args.base_config else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--base-config is not valid JSON ({exc}); example: '{{\"n_layer\": 1}}'") from exc
    known = set(ExperimentConfig().to_dict())
    if not isinstance(overrides, dict) or set(overrides) - known:
        unknown = sorted(set(overrides) - known) if isinstance(overrides, dict) else overrides
        raise ValueError(
            f"--base-config must be a JSON object of config fields ({', '.join(sorted(known))}); got {unknown}"
        )
    try:
        config = ExperimentConfig().with_overrides({**overrides, "vocab_size": vocab_size, "seed": args.seed})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--base-config: {exc}") from exc
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be positive, got {args.max_steps}")
    problem = config.problem()
    if problem:
        raise ValueError(problem)
    return config.with_overrides({"token_budget": args.max_steps * config.tokens_per_step})


def bundle_root(dataset: str, num_shards: int, vocab_size: int) -> Path:
    """The bundle a research run with these settings uses, built here first if it is not there yet."""
    prepare.validate_request(dataset, num_shards, vocab_size)
    root = bundle.bundle_dir(dataset, num_shards, vocab_size, prepare.split_id(0))
    if not (root / "data" / "profile.json").exists():
        print(f"building the bundle at {root} (once)", flush=True)
        prepare.prepare_bundle(dataset, num_shards, vocab_size, root)
    return root


def peak_memory() -> tuple[str, float]:
    """karpathy's `peak_vram_mb` on a GPU; on a CPU this process's peak resident memory (`peak_rss_mb`)."""
    import torch

    if torch.cuda.is_available():
        return "peak_vram_mb", torch.cuda.max_memory_allocated() / 2**20
    return "peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def millions(n: float) -> str:
    """karpathy's `_M` figures (one decimal), with more digits for a tiny model that would print 0.0."""
    return f"{n / 1e6:.1f}" if n >= 1e5 else f"{n / 1e6:.4f}"


def train_once(run_training: Callable, config: ExperimentConfig, root: Path) -> dict[str, Any]:
    """Hand `run_training` this config's batches (as a run gets them), train on the run's threads (one by default,
    as every experiment does), and score on val; the figures."""
    import torch

    start = time.perf_counter()
    os.environ["OMP_NUM_THREADS"] = str(config.threads)  # what `set_threads` in train.py reads, as in a sandbox
    torch.set_num_threads(config.threads)
    work = prepare.state_dir() / WORK
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    shutil.copyfile(root / "data" / "meta.json", work / "data" / "meta.json")
    np.save(work / "data" / prepare.BATCHES_FILE, run_batches(str(root / "data"), config))
    with contextlib.chdir(work):  # the learning curve (`prepare.log_progress`) goes here
        model, summary = run_training(config, str(work / "data"))
    device = str(next(model.parameters()).device)
    val = prepare.load_tokens(root / "data", "val")
    table = np.load(root / "tokenizer" / "token_bytes.npy")
    bpb = prepare.evaluate_bpb(model, val, table, config.seq_len, config.eval_tokens, device=device)
    memory_name, memory = peak_memory()
    return {
        "val_bpb": f"{bpb:.6f}",
        "training_seconds": f"{summary.train_seconds:.3f}",
        "total_seconds": f"{time.perf_counter() - start:.1f}",
        memory_name: f"{memory:.1f}",
        "total_tokens_M": millions(summary.tokens_seen),
        "num_steps": str(summary.steps),
        "num_params_M": millions(sum(p.numel() for p in model.parameters())),
        "depth": str(config.n_layer),
        "device": device,
    }


def main(argv: list[str], run_training: Callable) -> int:
    """Parse the flags, train once, print karpathy's block; 0 when done, 2 for bad input (one line)."""
    args = build_parser().parse_args(argv)
    print(NOTE, flush=True)
    try:
        config_of(args, args.vocab_size)  # bad flags are refused before any work, the bundle's build included
        root = bundle_root(args.dataset, args.num_shards, args.vocab_size)
        config = config_of(args, int(prepare.load_meta(root / "data")["vocab_size"]))
    except (ValueError, prepare.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"training {config.max_steps} steps of {config.batch_size} x {config.seq_len} tokens ...", flush=True)
    figures = train_once(run_training, config, root)
    print("---")
    for name, value in figures.items():
        print(f"{name + ':':<18}{value}")
    print(NOTE, flush=True)
    return 0
