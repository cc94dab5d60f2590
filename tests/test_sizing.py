"""Sizing decisions as pure functions: the estimate, LLM replies, and the OOM retry ladder."""

from __future__ import annotations

import dataclasses

import pytest
from flyte.ai.agents import LLMMessage

from autoresearch.lab import sizing
from autoresearch_types import ExperimentConfig

BASE = ExperimentConfig(vocab_size=8192)
POLICY = sizing.SizingPolicy(cpu=2, floor_mb=1024, ceiling_mb=8192, max_retries=2, min_step_mb=512)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("n_layer", [1, 2, 4, 8]),
        ("n_embd", [32, 64, 128, 384]),
        ("batch_size", [1, 4, 16, 32]),
        ("vocab_size", [512, 2048, 8192, 32768]),
    ],
)
def test_estimate_is_monotonic(field: str, values: list[int]) -> None:
    sizes = [sizing.estimate(dataclasses.replace(BASE, **{field: v}), 2).memory_mb for v in values]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]


def test_estimate_counts_threads_and_parameters() -> None:
    assert sizing.estimate(BASE, 4).memory_mb > sizing.estimate(BASE, 1).memory_mb
    d, v = BASE.n_embd, BASE.vocab_size
    assert BASE.nominal_params > 2 * v * d


FLOOR = sizing.Size(cpu=2, memory_mb=2048)
REPLIES = [
    ('{"cpu": 2, "memory": "3Gi"}', 3072, ""),
    ('```json\n{"cpu": 2, "memory": "4096Mi"}\n```', 4096, ""),
    ('Sure! Given the model size I suggest {"cpu": 1, "memory_mb": 2500} to be safe.', 2500, ""),
    ('{"cpu": 2, "memory": "1Gi"}', 2048, ""),  # below the estimate: raised to it
    ('{"cpu": 2, "memory": "20Gi"}', 8192, ""),  # above the ceiling: capped
    ("I think about 3 gigabytes", 2048, "no JSON"),
    ('{"cpu": 2, "memory": -5}', 2048, "unusable memory"),
    ('{"cpu": 2, "memory": "1000Ti"}', 2048, "absurd"),
    ('{"cpu": "two", "memory": "3Gi"}', 2048, "unusable cpu"),
    ('{"cpu": 2, "memory": ["3Gi"]}', 2048, "unusable memory"),
    ('{"cpu": 2, "memory": "3 parsecs"}', 2048, "unusable memory"),
    ('{"cpu": 2, "memory": "3Gi"}; rm -rf / {"memory": "99Ti"}', 3072, ""),
]


@pytest.mark.parametrize(("reply", "memory", "problem"), REPLIES)
def test_llm_replies_map_to_resources(reply: str, memory: int, problem: str) -> None:
    size, why = sizing.parse_llm_size(reply, FLOOR, POLICY)
    assert size.memory_mb == memory
    assert (problem in why) if problem else why == ""
    assert 1 <= size.cpu <= POLICY.cpu


class FakeTool:
    name = "run_experiment"
    description = "Runs one experiment."
    model = "openai/gpt-4o-mini"


async def test_llm_that_raises_falls_back_to_the_estimate() -> None:
    async def broken(*args, **kwargs):
        raise ConnectionError("provider down")

    assert await sizing.llm_size(broken, FakeTool(), {"config": {}}, FLOOR, POLICY) == FLOOR


async def test_llm_answer_is_used_when_valid() -> None:
    async def answer(*args, **kwargs):
        return LLMMessage(content='{"cpu": 2, "memory": "5Gi"}')

    size = await sizing.llm_size(answer, FakeTool(), {"config": {}}, FLOOR, POLICY)
    assert size == sizing.Size(cpu=2, memory_mb=5120)


def test_an_llm_size_stays_within_four_times_the_estimate_but_an_oom_still_climbs_to_the_ceiling() -> None:
    policy = sizing.SizingPolicy(cpu=1, floor_mb=1024, ceiling_mb=9642)
    floor = sizing.Size(cpu=1, memory_mb=1728)
    size, why = sizing.parse_llm_size('{"cpu": 1, "memory": "9642Mi"}', floor, policy)
    assert why == "" and size.memory_mb == 4 * 1728 < policy.ceiling_mb, "a weak sizer cannot take the machine"
    assert sizing.parse_llm_size('{"memory": "3000Mi"}', floor, policy)[0].memory_mb == 3000
    assert "memory=6912Mi" in sizing.sizing_prompt("run_experiment", "doc", {}, floor, policy)
    ladder = [size]
    while (nxt := sizing.next_size(ladder[-1], policy)) is not None:
        ladder.append(nxt)
    assert ladder[-1].memory_mb == policy.ceiling_mb


async def test_a_spent_cost_cap_falls_back_to_the_estimate_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    from autoresearch import llm

    async def capped(*args, **kwargs):
        raise llm.LLMBudgetExceeded("LLM budget spent")

    assert await sizing.llm_size(capped, FakeTool(), {"config": {}}, FLOOR, POLICY) == FLOOR
    assert not caplog.records


def test_retry_ladder_doubles_and_stops_at_the_ceiling() -> None:
    ladder = [sizing.Size(2, 600)]
    while (nxt := sizing.next_size(ladder[-1], POLICY)) is not None:
        ladder.append(nxt)
    assert [s.memory_mb for s in ladder] == [600, 1200, 2400, 4800, 8192]


def test_machine_policy_splits_cores_and_memory() -> None:
    one, two = sizing.SizingPolicy.for_machine(1), sizing.SizingPolicy.for_machine(2)
    assert two.ceiling_mb <= one.ceiling_mb
    assert two.cpu <= one.cpu and two.cpu >= 1
