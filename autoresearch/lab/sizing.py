"""Right-sizing of experiments: a deterministic memory estimate, LLM sizing on top, and OOM retries.

`right_size` is the `call_handler` of the `run_experiment` tool. Its policy (floor, ceiling, threads, retries)
is bound into the handler: `handler(policy)` is the call handler of the runner that owns the run, which puts it
on its copy of the tool, so nothing about a run lives in module state. (Flyte binds a tool call's keywords to
the task's signature before any handler sees them, so the policy cannot travel as a keyword.) It estimates what an experiment
needs (a pure function of its config), lets the LLM raise that estimate (never lower it), runs the
experiment with those resources, and on OOM retries with at least twice the memory, up to a ceiling.
Memory here is *virtual* memory, because the local sandbox enforces it with `RLIMIT_AS`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from autoresearch.sandbox import gpu
from autoresearch_types import ExperimentConfig, ExperimentResult

log = logging.getLogger(__name__)

MB = 1024 * 1024
VM_BASE_MB = 700
"""Virtual memory of the interpreter, torch, the harness and their mapped libraries."""
VM_PER_THREAD_MB = 140
"""Each compute thread maps a malloc arena and a stack, which RLIMIT_AS counts."""
SAFETY = 1.3
"""Head-room over the modelled peak, so the estimate lands between 1x and 2x of the need."""


@dataclass(frozen=True)
class Size:
    """The resources one attempt runs with."""

    cpu: int
    memory_mb: int
    gpu_memory_mb: int = 0
    """Device memory on a GPU (0: a CPU run)."""

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def flyte_resources(self) -> Any:
        import flyte

        return flyte.Resources(cpu=self.cpu, memory=f"{self.memory_mb}Mi")


@dataclass(frozen=True)
class SizingPolicy:
    """Floor, ceiling and retry rules; locally the ceiling comes from the machine's real memory."""

    cpu: int = 1
    floor_mb: int = 1024
    ceiling_mb: int = 8192
    max_retries: int = 2
    min_step_mb: int = 512
    initial_memory_mb: int | None = None
    """Pins the first attempt's memory, below the estimate if need be (tests, manual runs)."""
    llm_max_factor: float = 4.0
    """An LLM may raise the estimate at most this many times (never past the ceiling): a weak sizer cannot take
    the whole machine. An OOM still climbs the retry ladder to the ceiling."""
    gpu_device_mb: int = 0
    """Memory of the GPU each experiment runs on (0: experiments run on the CPU): the GPU ceiling."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SizingPolicy:
        """The policy a caller passed (the defaults when none was)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in (data or {}).items() if k in names})

    @classmethod
    def for_machine(cls, concurrency: int = 1, max_retries: int = 2) -> SizingPolicy:
        """A policy that fits `concurrency` experiments on this machine's cores and memory."""
        cores = os.cpu_count() or 1
        total_mb = _total_memory_mb()
        ceiling = max(1024, int(total_mb * 0.8 / max(1, concurrency)))
        return cls(cpu=max(1, cores // max(1, concurrency)), ceiling_mb=ceiling, max_retries=max_retries)


def _total_memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MB)
    except (ValueError, OSError):
        return 8192


# ---------------------------------------------------------------- the deterministic estimate


def estimate_parts_mb(config: ExperimentConfig, cpu: int) -> dict[str, float]:
    """The modelled peak virtual memory, by part, in MiB."""
    tokens = config.batch_size * config.seq_len
    params = config.nominal_params
    return {
        "runtime": VM_BASE_MB,
        "threads": VM_PER_THREAD_MB * max(1, cpu),
        "weights_grads_adam": 16 * params / MB,
        "activations": tokens * config.n_layer * 20 * config.n_embd * 4 / MB,
        "logits": tokens * config.vocab_size * 4 * 4 / MB,
        "eval_logits": (1 << 22) * 8 * 3 / MB,
    }


def estimate(config: ExperimentConfig, cpu: int = 1) -> Size:
    """What an experiment needs: `cpu` threads and the modelled peak plus head-room, rounded up to 64 MiB."""
    total = sum(estimate_parts_mb(config, cpu).values()) * SAFETY
    return Size(cpu=cpu, memory_mb=int(math.ceil(total / 64) * 64))


def clamp_size(size: Size, floor: Size, policy: SizingPolicy) -> Size:
    """Between the estimate (the floor) and the policy's ceiling, and never below the policy floor."""
    low = max(floor.memory_mb, policy.floor_mb)
    memory = min(max(size.memory_mb, low), policy.ceiling_mb)
    return replace(size, cpu=max(1, min(size.cpu, policy.cpu)), memory_mb=memory)


def initial_size(config: ExperimentConfig, policy: SizingPolicy) -> Size:
    """The first size to try: the estimate at the key's own threads, kept within the policy's floor and ceiling;
    on a GPU also the device memory the config is estimated to need (`gpu.estimate_gpu_memory_mb`)."""
    floor = estimate(config, max(1, config.threads))
    size = replace(clamp_size(floor, floor, policy), cpu=floor.cpu)
    if policy.gpu_device_mb:
        size = replace(size, gpu_memory_mb=min(gpu.estimate_gpu_memory_mb(gpu.shape_of(config)), policy.gpu_device_mb))
    return size


def next_size(current: Size, policy: SizingPolicy) -> Size | None:
    """The size to retry with after an OOM (host memory, or a CUDA out-of-memory): at least 2x memory and one step
    more, on the host and, for a GPU run, on the device; None once both are at their ceilings."""
    host_full = current.memory_mb >= policy.ceiling_mb
    device_full = not current.gpu_memory_mb or current.gpu_memory_mb >= policy.gpu_device_mb
    if host_full and device_full:
        return None
    bumped = max(2 * current.memory_mb, current.memory_mb + policy.min_step_mb)
    device = min(2 * current.gpu_memory_mb, policy.gpu_device_mb) if current.gpu_memory_mb else 0
    return replace(current, memory_mb=min(bumped, policy.ceiling_mb), gpu_memory_mb=device)


# ---------------------------------------------------------------- LLM sizing

UNITS_MB = {"": 1 / MB, "b": 1 / MB, "k": 1 / 1024, "ki": 1 / 1024, "kb": 1 / 1024, "m": 1, "mi": 1, "mb": 1}
UNITS_MB |= {"g": 1024, "gi": 1024, "gb": 1024, "t": 1024**2, "ti": 1024**2, "tb": 1024**2}
ABSURD_FACTOR = 16
"""An LLM answer more than this many times the ceiling is a mistake, not a request: it is ignored."""


def parse_memory_mb(value: Any) -> float | None:
    """MiB from `3072`, `"3Gi"`, `"512 MB"`, `"2.5G"`; None for anything else (bools, negatives, junk)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 and math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
    if not match or match.group(2).lower() not in UNITS_MB:
        return None
    number = float(match.group(1))
    if not match.group(2):
        return number if number > 0 else None
    mb = number * UNITS_MB[match.group(2).lower()]
    return mb if mb > 0 else None


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`, found inside code fences or prose; None if there is none."""
    for match in re.finditer(r"\{[^{}]*\}", text or ""):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            return data
    return None


def llm_band(floor: Size, policy: SizingPolicy) -> SizingPolicy:
    """The policy an LLM's answer is clamped by: its ceiling lowered to `llm_max_factor` times the estimate."""
    top = max(floor.memory_mb, int(floor.memory_mb * policy.llm_max_factor))
    return replace(policy, ceiling_mb=min(policy.ceiling_mb, top))


def parse_llm_size(text: str, floor: Size, policy: SizingPolicy) -> tuple[Size, str]:
    """The LLM's resource spec clamped to [estimate, `llm_max_factor` x estimate] and the ceiling, or the floor
    with the reason it was not used."""
    data = extract_json_object(text)
    if data is None:
        return floor, "no JSON object in the reply"
    memory = parse_memory_mb(data.get("memory", data.get("memory_mb")))
    if memory is None:
        return floor, f"unusable memory value {data.get('memory', data.get('memory_mb'))!r}"
    if memory > policy.ceiling_mb * ABSURD_FACTOR:
        return floor, f"absurd memory request {memory:.0f} MiB"
    cpu = data.get("cpu", floor.cpu)
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0:
        return floor, f"unusable cpu value {cpu!r}"
    size = clamp_size(Size(cpu=int(cpu), memory_mb=int(math.ceil(memory))), floor, llm_band(floor, policy))
    device = parse_memory_mb(data.get("gpu_memory")) if floor.gpu_memory_mb else None
    device_mb = (
        floor.gpu_memory_mb if device is None else int(min(max(device, floor.gpu_memory_mb), policy.gpu_device_mb))
    )
    return replace(size, cpu=floor.cpu, gpu_memory_mb=device_mb), ""  # threads are the key's: memory only


def sizing_prompt(tool_name: str, doc: str, kwargs: dict[str, Any], floor: Size, policy: SizingPolicy) -> str:
    """The question put to the LLM: the tool, its docstring, the call and the estimate."""
    call = {k: v for k, v in kwargs.items() if k not in ("train_py", "bundle", "data", "pool", "prune")}
    return (
        f"Tool: {tool_name}\nDocstring: {doc}\nCall arguments: {json.dumps(call, default=str)[:2000]}\n"
        f"Deterministic estimate (the minimum): cpu={floor.cpu}, memory={floor.memory_mb}Mi virtual memory.\n"
        f"Ceiling: cpu={policy.cpu}, memory={llm_band(floor, policy).ceiling_mb}Mi.\n"
        + (
            f"GPU: the run trains on a GPU of {policy.gpu_device_mb}Mi; estimated device memory {floor.gpu_memory_mb}Mi "
            '(the minimum). Add "gpu_memory" to raise it.\n'
            if floor.gpu_memory_mb
            else ""
        )
        + 'Reply with one JSON object only, like {"cpu": 2, "memory": "3Gi"}. You may raise the estimate, '
        "never lower it."
    )


async def llm_size(call_llm: Any, tool_fn: Any, kwargs: dict[str, Any], floor: Size, policy: SizingPolicy) -> Size:
    """Ask the LLM for a size; any failure or bad answer falls back to the estimate with a warning."""
    prompt = sizing_prompt(tool_fn.name, tool_fn.description, kwargs, floor, policy)
    try:
        reply = await call_llm(
            tool_fn.model, "You size compute for ML experiments.", [{"role": "user", "content": prompt}], None
        )
    except Exception as exc:  # the LLM is optional here: the estimate always works
        from autoresearch import llm

        if isinstance(exc, llm.LLMBudgetExceeded):  # the cost cap is spent: no call was made, nothing to say
            return floor
        log.warning("LLM sizing failed (%s: %s); using the estimate", type(exc).__name__, exc)
        return floor
    size, problem = parse_llm_size(getattr(reply, "content", "") or "", floor, policy)
    if problem:
        log.warning("LLM sizing reply ignored (%s); using the estimate", problem)
    return size


# ---------------------------------------------------------------- the call handler


async def _estimate_is_enough(tool_fn: Any, kwargs: dict[str, Any]) -> bool:
    """No LLM sizing: the built-in planner has no LLM, and a cached result will not run at all."""
    from autoresearch import llm
    from autoresearch.lab import cache_probe

    return tool_fn.model == llm.BUILTIN or await cache_probe.is_cached_locally(tool_fn.target, kwargs)


def _is_oom(exc: BaseException) -> bool:
    import flyte.errors

    return isinstance(exc, flyte.errors.OOMError) or getattr(exc, "code", "") == "OOMKilled"


def failure_from_exception(exc: BaseException) -> ExperimentResult:
    """A failure record for an exception from the experiment task (its outcome kept when it says one)."""
    from autoresearch.sandbox import experiment as sandbox

    known = sandbox.result_from_error(exc)
    if known is not None:
        return known
    outcome = "oom" if _is_oom(exc) else "crash"
    return ExperimentResult(outcome=outcome, message=f"{type(exc).__name__}: {exc}"[:2000])


Shape = Callable[[Any, ExperimentConfig, Size, int], dict[str, Any]]
"""How one attempt's action is configured: `(task, config, size, attempt) -> task.override keywords` (on a cluster
`pods.overrides` with the run's pod settings; by default only the resources)."""


def resources_only(task: Any, config: ExperimentConfig, size: Size, attempt: int) -> dict[str, Any]:
    """The default shape: the attempt's resources and nothing else."""
    return {"resources": size.flyte_resources()}


async def _attempt(
    tool_fn: Any, kwargs: dict[str, Any], size: Size, override: dict[str, Any]
) -> ExperimentResult | BaseException:
    """Run the experiment task once at `size`, configured by `override`; return its result or the exception."""
    task = tool_fn.target.override(**override)
    try:
        gpu_kwargs = {"gpu_memory_mb": size.gpu_memory_mb} if size.gpu_memory_mb else {}
        result = await task.aio(**{**kwargs, "cpus": size.cpu, "memory_mb": size.memory_mb, **gpu_kwargs})
    except Exception as exc:
        return exc
    return result if isinstance(result, ExperimentResult) else ExperimentResult.from_dict(dict(result))


def handler(policy: SizingPolicy, shape: Shape | None = None) -> Any:
    """`right_size` with `policy` (and how each attempt's action is configured) bound: the call handler a runner
    puts on its copy of `run_experiment`."""

    async def sized(call_llm: Any, tool_fn: Any, **kwargs: Any) -> ExperimentResult:
        return await right_size(call_llm, tool_fn, policy=policy, shape=shape, **kwargs)

    return sized


async def right_size(
    call_llm: Any, tool_fn: Any, *, policy: SizingPolicy | None = None, shape: Shape | None = None, **kwargs: Any
) -> ExperimentResult:
    """Estimate, size (LLM on top when one is in use and the result is not cached), run, and retry with more
    memory on OOM.

    Never raises into the agent loop: terminal failures come back as failure records that carry the
    resources of the last attempt, the OOM retries and every size tried. `policy` defaults to `SizingPolicy()`.
    """
    policy = policy or SizingPolicy()
    config = ExperimentConfig.from_dict(dict(kwargs.get("config") or {}))
    floor = initial_size(config, policy)
    size = (
        floor
        if await _estimate_is_enough(tool_fn, kwargs)
        else await llm_size(call_llm, tool_fn, kwargs, floor, policy)
    )
    if policy.initial_memory_mb:
        size = replace(size, memory_mb=policy.initial_memory_mb)
    tried: list[Size] = []
    while True:
        tried.append(size)
        outcome = await _attempt(
            tool_fn, kwargs, size, (shape or resources_only)(tool_fn.target, config, size, len(tried) - 1)
        )
        oom = isinstance(outcome, BaseException) and _is_oom(outcome)
        oom = oom or (isinstance(outcome, ExperimentResult) and outcome.outcome == "oom")
        bigger = next_size(size, policy) if oom and len(tried) <= policy.max_retries else None
        if bigger is None:
            break
        size = bigger
    result = failure_from_exception(outcome) if isinstance(outcome, BaseException) else outcome
    if result.outcome == "oom":
        result.message = f"out of memory at every size tried up to {size.memory_mb} MiB: {result.message}"[:2000]
    result.resources = {**result.resources, **size.to_dict()}  # the task's own (backend, deadline) kept
    result.oom_retries = len(tried) - 1
    result.sizes_tried = [s.to_dict() for s in tried]
    return result
