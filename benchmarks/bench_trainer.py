"""Trainer vs dataloader throughput, offline bundle build time and peak RSS, from one run.

    python benchmarks/bench_trainer.py [--quick] [--json PATH]

Targets: dataloader/trainer >= 100x on CPU; offline bundle build <= 30 s from an empty cache.
"""

from __future__ import annotations

import resource
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import prepare  # noqa: E402
import train  # noqa: E402
from autoresearch_types import ExperimentConfig  # noqa: E402
from benchmarks.common import parse_args, report  # noqa: E402


def bench_bundle(root: Path) -> float:
    """Seconds to build the default offline bundle into an empty directory."""
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    prepare.prepare_bundle(prepare.DEFAULT_DATASET, 1, 8192, root)
    return time.perf_counter() - start


def torch_batches(data_dir: Path, bos_id: int, config: ExperimentConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random (inputs, targets) tensor batches of the train split, as the trainer receives them."""
    loader = prepare.TokenLoader(prepare.load_tokens(data_dir, "train"), bos_id, config.batch_size, config.seq_len)
    while True:
        rows = torch.from_numpy(loader.next_numpy())
        yield rows[:, :-1], rows[:, 1:]


def bench_trainer(config: ExperimentConfig, data_dir: Path, steps: int) -> float:
    """Training tokens/s of the baseline model at `config` (after two warm-up steps)."""
    train.set_threads()
    meta = prepare.load_meta(data_dir)
    loader = torch_batches(data_dir, meta["bos_id"], config)
    model = train.build_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)

    def step() -> None:
        x, y = next(loader)
        loss = F.cross_entropy(model(x).view(-1, config.vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * config.batch_size * config.seq_len / (time.perf_counter() - start)


def bench_loader(config: ExperimentConfig, data_dir: Path, seconds: float) -> float:
    """Dataloader tokens/s: batches as the trainer receives them (torch tensors)."""
    meta = prepare.load_meta(data_dir)
    loader = torch_batches(data_dir, meta["bos_id"], config)
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(loader)
        batches += 1
    return batches * config.batch_size * config.seq_len / (time.perf_counter() - start)


def main() -> None:
    args = parse_args(__doc__)
    root = prepare.state_dir() / "bench" / "bundle"
    build_s = bench_bundle(root)
    config = ExperimentConfig(vocab_size=prepare.load_profile(root / "data").vocab_size)
    trainer = bench_trainer(config, root / "data", 10 if args.quick else 40)
    loader = bench_loader(config, root / "data", 2.0 if args.quick else 5.0)
    figures = {
        "trainer_tokens_per_s": round(trainer, 1),
        "dataloader_tokens_per_s": round(loader, 1),
        "dataloader_over_trainer": round(loader / trainer, 1),
        "bundle_build_s": round(build_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"config: {config}  threads: {torch.get_num_threads()}")
    report(figures, args.json, {"dataloader_over_trainer": ">= 100", "bundle_build_s": "<= 30"})


if __name__ == "__main__":
    main()
