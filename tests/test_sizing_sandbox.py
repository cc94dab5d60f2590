"""Right-sizing against the real sandbox in Flyte local mode: OOM, retry with more memory, clean failure."""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import flyte
import pytest

import bundle
import parallelized_autoresearch as entry
from autoresearch import llm
from autoresearch.lab import sizing
from autoresearch_types import ExperimentResult

TRAIN_PY = (Path(entry.__file__).parent / "train.py").read_text()
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "max_steps": 3, "time_budget_s": 20.0}
HUGE = {
    "n_layer": 8,
    "n_head": 8,
    "n_embd": 384,
    "seq_len": 1024,
    "batch_size": 32,
    "max_steps": 3,
    "time_budget_s": 20.0,
}

sizing_env = flyte.TaskEnvironment("sizing_tests", depends_on=[bundle.experiment_env])


@sizing_env.task
async def run_sized(
    data: bundle.Bundle, configs: list[dict], initial_mb: list[int], ceiling_mb: int
) -> list[ExperimentResult]:
    """Run each config through `right_size` in order, as a batch would, one policy each."""
    tool = dataclasses.replace(entry.run_experiment, model=llm.BUILTIN)
    results = []
    for config, initial in zip(configs, initial_mb, strict=True):
        policy = sizing.SizingPolicy(cpu=1, floor_mb=256, ceiling_mb=ceiling_mb, initial_memory_mb=initial or None)
        sized = dataclasses.replace(tool, call_handler=sizing.handler(policy))
        results.append(await sized.aio(train_py=TRAIN_PY, config=config, data=data))
    return results


@pytest.fixture(scope="module")
def tiny_data() -> bundle.Bundle:
    flyte.init(org="local", project="autoresearch-tests", domain="development", log_level=logging.CRITICAL)
    return flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=512, split_seed=0).outputs()[
        0
    ]


def ladder(first_mb: int, n: int, ceiling_mb: int) -> list[int]:
    """The first `n` memory sizes the retry ladder tries from `first_mb` under `ceiling_mb` (the policy's own rule)."""
    policy = sizing.SizingPolicy(cpu=1, floor_mb=256, ceiling_mb=ceiling_mb)
    sizes = [sizing.Size(cpu=1, memory_mb=first_mb)]
    while len(sizes) < n and (bigger := sizing.next_size(sizes[-1], policy)) is not None:
        sizes.append(bigger)
    return [s.memory_mb for s in sizes]


def _fresh(config: dict) -> dict:
    """A random seed, so Flyte's cache (which ignores resources) cannot answer for the sandbox."""
    return {**config, "seed": random.Random().randint(1, 2**30), "vocab_size": 512}


@pytest.mark.timeout(300)
def test_too_small_first_size_ooms_then_succeeds(tiny_data: bundle.Bundle) -> None:
    (result,) = flyte.run(
        run_sized, data=tiny_data, configs=[_fresh(TINY)], initial_mb=[450], ceiling_mb=4096
    ).outputs()[0]
    assert result.outcome == "success", result.message
    tried = [s["memory_mb"] for s in result.sizes_tried]
    assert tried[0] == 450 and result.oom_retries == len(tried) - 1 >= 1, "450 MiB cannot even import torch"
    assert tried == ladder(450, len(tried), 4096), "each retry climbs the ladder: at least twice the memory"
    assert result.resources["memory_mb"] == tried[-1]
    assert result.val_bpb and result.val_bpb > 0


@pytest.mark.timeout(300)
def test_experiment_that_never_fits_fails_cleanly_and_the_batch_goes_on(tiny_data: bundle.Bundle) -> None:
    configs = [_fresh(HUGE), _fresh(TINY)]
    huge, tiny = flyte.run(run_sized, data=tiny_data, configs=configs, initial_mb=[700, 0], ceiling_mb=2048).outputs()[
        0
    ]
    assert huge.outcome == "oom"
    assert huge.oom_retries == 2, "the policy's two retries, then it stops"
    assert [s["memory_mb"] for s in huge.sizes_tried] == ladder(700, 3, 2048) == [700, 1400, 2048]
    assert "every size tried" in huge.message
    assert tiny.outcome == "success", tiny.message
    assert tiny.oom_retries == 0
