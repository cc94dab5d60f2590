"""No LLM sizing call for a run Flyte's local cache will answer: the probe agrees with the real controller."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flyte
import pytest
from flyte.ai.agents import LLMMessage

from autoresearch.lab import cache_probe, sizing
from autoresearch.ledger import ledger as ledger_mod

env = flyte.TaskEnvironment("cache_probe_tests")


@env.task(cache=flyte.Cache(behavior="auto", ignored_inputs=("memory_mb", "cpus", "ran_log")))
async def fake_experiment(config: dict, ran_log: str, memory_mb: int = 1, cpus: int = 1) -> dict:
    """Stands in for `run_experiment`: cached by its config, and it notes each real run in `ran_log`."""
    with open(ran_log, "a") as f:
        f.write(f"{config['seed']}\n")
    return {"outcome": "success", "val_bpb": 1.0, "seed": config["seed"]}


@dataclass
class FakeTool:
    """What `right_size` reads from the agent's tool: name, docstring, model and the task."""

    target: Any
    name: str = "run_experiment"
    description: str = "Runs one experiment."
    model: str = "openai/sizer"


@env.task
async def size_twice(seed: int, ran_log: str) -> dict:
    """Probe, run through `right_size` twice (a miss, then a hit), and count the sizing calls each time."""
    asked: list[str] = []

    async def sizer(model: str, system: str, messages: list, tools: Any) -> LLMMessage:
        asked.append(system)
        return LLMMessage(content='{"cpu": 1, "memory": "2Gi"}')

    kwargs = {"config": {"seed": seed}, "ran_log": ran_log}
    before = await cache_probe.is_cached_locally(fake_experiment, kwargs)
    first = await sizing.right_size(sizer, FakeTool(fake_experiment), **kwargs)
    asked_first = len(asked)
    after = await cache_probe.is_cached_locally(fake_experiment, {**kwargs, "memory_mb": 77, "ran_log": "elsewhere"})
    other = await cache_probe.is_cached_locally(fake_experiment, {**kwargs, "config": {"seed": seed + 1}})
    second = await sizing.right_size(sizer, FakeTool(fake_experiment), **kwargs)
    out = {"before": before, "after": after, "other": other, "asked_first": asked_first, "asked": len(asked)}
    return {**out, "outcomes": [first.outcome, second.outcome]}


@pytest.mark.timeout(120)
def test_a_cached_run_gets_no_sizing_call_and_a_new_one_does(state_root: Path) -> None:
    ledger_mod.init_local(project="cache-probe-tests", log_level=logging.CRITICAL)
    ran_log = state_root / "cache-probe" / f"ran-{random.randint(1, 2**30)}.txt"
    ran_log.parent.mkdir(parents=True, exist_ok=True)
    seed = random.randint(1, 2**30)
    run = flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(size_twice, seed=seed, ran_log=str(ran_log))
    out = run.outputs()[0]
    assert out["outcomes"] == ["success", "success"]
    assert ran_log.read_text().split() == [str(seed)], "the second call was a real cache hit"
    assert (out["before"], out["after"], out["other"]) == (False, True, False), "the probe agrees with the cache"
    assert out["asked_first"] == 1 and out["asked"] == 1, "no sizing call for the cached run"


def test_outside_a_local_task_the_answer_is_no() -> None:
    import asyncio

    assert asyncio.run(cache_probe.is_cached_locally(fake_experiment, {"config": {"seed": 1}, "ran_log": "x"})) is False
