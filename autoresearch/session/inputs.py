"""Every input checked before any work: one function per input, shared by the CLI, the driver task and the tools.

Pure functions (standard library and the contracts only). Each raises `InputError` whose message names the
input, the value and what is allowed, so the CLI can print it on one line and exit 2, the driver task can
refuse a `flyte run` with the same words, and the agent's edits are refused with the same rule.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from autoresearch.agent import program as program_mod
from autoresearch.agent.prompts import PROMPT_FORMS
from autoresearch.lab.budget import runs_for_one_idea
from autoresearch.lab.pruning import MODES as PRUNE_MODES
from autoresearch.ledger.verdicts import GateRule
from autoresearch.planner.policy import SCHEDULING
from autoresearch.session import presets
from autoresearch_types import VOCAB_RANGE, ExperimentConfig, WorkshopBounds

MEMORY_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Memory keys: 1 to 64 characters, letters, digits, dot, underscore and dash, starting with a letter or digit."""
RUN_LIMITS: dict[str, tuple[float, float]] = {
    "token_budget": (1, 10**9),
    "time_budget_s": (1.0, 86400.0),
    "eval_tokens": (128, 10**8),
    "vocab_size": VOCAB_RANGE,
    "seed": (0, 2**31 - 1),
    "threads": (1, 256),
}
"""Ranges of the run-owned config fields, when a user sets them (an edit may not)."""
LIMITS: dict[str, tuple[float, float]] = {
    "n_experiments": (1, 10_000),
    "batch_size": (1, 64),
    "concurrency": (0, 256),
    "reuse": (0, 64),
    "retries": (0, 10),
    "max_turns": (0, 1000),
    "max_steps": (1, 1_000_000),
    "replicates": (2, 10),
    "planner_seed": (0, 2**31 - 1),
    "num_shards": (1, 6542),
    "max_runs": (1, 100_000),
}
"""Ranges of the numeric CLI flags and task inputs (`concurrency` 0: the default for where it runs)."""


class InputError(ValueError):
    """Bad input: the message says which input, what it was, and what is allowed."""


def number(name: str, value: Any, low: float, high: float, integer: bool = True) -> float:
    """`value` as a finite number in `[low, high]` (an integer when `integer`), else `InputError`."""
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not math.isfinite(value):
        raise InputError(f"{name} must be {kind} in {low:g}..{high:g}, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"{name} must be in {low:g}..{high:g}, got {value!r}")
    return value


def memory_key(key: str) -> str:
    """A key that is safe as a path segment everywhere it is used."""
    if not isinstance(key, str) or not MEMORY_KEY.fullmatch(key):
        shown = key if isinstance(key, str) and len(key) <= 80 else f"{str(key)[:60]}... ({len(str(key))} characters)"
        raise InputError(
            f"memory key {shown!r} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (e.g. research-20260101-abc123)"
        )
    return key


def url(name: str, value: str) -> str:
    """An http(s) URL with a host, e.g. http://127.0.0.1:8080/v1."""
    parsed = urlparse(value) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InputError(f"{name} must be an http(s) URL with a host, e.g. http://127.0.0.1:8080/v1, got {value!r}")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InputError(f"{name} has a bad port: {value!r}") from exc
    return value


def cluster_endpoint(name: str, value: str) -> str:
    """An endpoint a pod can reach: not this machine's loopback, unspecified or link-local address."""
    host = (urlparse(url(name, value)).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
        local = address.is_loopback or address.is_unspecified or address.is_link_local
    except ValueError:
        local = host == "localhost" or host.endswith(".localhost")
    if local:
        raise InputError(
            f"{name} {value!r} points at this machine ({host}), which a pod on the cluster cannot reach: serve the "
            "model where the cluster can reach it (a cluster Service or a hosted endpoint), or run locally (no --config)"
        )
    return value


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """One of `allowed`, else `InputError` naming them."""
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def base_config(overrides: Any, bounds: WorkshopBounds | None = None) -> dict[str, Any]:
    """A user's base-config overrides: known keys, numbers of the right type, inside the workshop's bounds and
    the run limits, and consistent together. Returns them unchanged; raises `InputError` otherwise."""
    bounds = bounds or WorkshopBounds()
    if not isinstance(overrides, dict):
        raise InputError(
            f'the base config must be a JSON object such as {{"n_layer": 2}}, got {type(overrides).__name__}'
        )
    known = {f for f in ExperimentConfig().to_dict() if f != "max_steps"}
    unknown = sorted(str(k) for k in overrides if k not in known)
    if unknown:
        raise InputError(f"unknown base-config keys {unknown}; known keys: {sorted(known)}")
    for key, value in overrides.items():
        limit = bounds.limits.get(key)
        low, high = (limit.low, limit.high) if limit else RUN_LIMITS[key]
        integer = limit.integer if limit else key != "time_budget_s"
        number(f"base config {key}", value, low, high, integer)
    problem = ExperimentConfig().with_overrides(overrides).problem()
    if problem:
        raise InputError(f"the base config is inconsistent: {problem}")
    return overrides


def program(name: str, text: Any) -> str:
    """A research program's text (`program.md`): not blank, not past `program.MAX_CHARS`."""
    try:
        return program_mod.check(text, name)
    except program_mod.ProgramError as exc:
        raise InputError(str(exc)) from None


def preset(name: str, value: Any) -> str:
    """A known preset's name (or none), else `InputError` naming them."""
    try:
        presets.get(value)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from exc
    return value


def cli_flag(name: str) -> str:
    """A task input's name as the CLI spells it: `time_budget` -> `--time-budget`."""
    return "--" + name.replace("_", "-")


def run_inputs(
    inputs: dict[str, Any], name: Callable[[str], str] = str, cores: int | None = None, local: bool = True
) -> list[str]:
    """Check a research run's inputs (the driver task's parameters); raises `InputError` on the first bad one.

    `name` spells an input in messages (the CLI passes `cli_flag`). Returns warnings about legitimate but costly
    choices (e.g. more concurrent runs than CPU cores: `cores`, this machine's by default; only for a `local`
    run, where experiments share this machine)."""
    for key, (low, high) in LIMITS.items():
        value = inputs.get(key)
        if value not in (None, 0) or key in ("n_experiments", "batch_size", "concurrency", "max_turns"):
            number(name(key), value, low, high)
    if inputs.get("memory_key"):
        memory_key(inputs["memory_key"])
    if inputs.get("vocab_size"):
        number(name("vocab_size"), inputs["vocab_size"], *VOCAB_RANGE)
    if inputs.get("time_budget"):
        number(name("time_budget"), inputs["time_budget"], *RUN_LIMITS["time_budget_s"], integer=False)
    if inputs.get("llm_timeout"):
        number(name("llm_timeout"), inputs["llm_timeout"], 1.0, 7200.0, integer=False)
    if inputs.get("max_llm_cost") is not None:
        number(name("max_llm_cost"), inputs["max_llm_cost"], 0.0, 1e6, integer=False)
    if inputs.get("api_base"):
        url(name("api_base"), inputs["api_base"])
    if inputs.get("target_val_bpb"):
        number(name("target_val_bpb"), inputs["target_val_bpb"], 0.01, 20.0, integer=False)
    if inputs.get("target_gain"):
        number(name("target_gain"), inputs["target_gain"], 0.01, 99.0, integer=False)
    if inputs.get("transfer_check"):
        number(name("transfer_check"), inputs["transfer_check"], 1.0, 64.0, integer=False)
    runs_needed(inputs, name)
    choice(name("prune"), inputs.get("prune") or "off", PRUNE_MODES)
    choice(name("scheduling"), inputs.get("scheduling") or "async", SCHEDULING)
    choice(name("prompt"), inputs.get("prompt") or "auto", PROMPT_FORMS)
    preset(name("preset"), inputs.get("preset") or "")
    if inputs.get("base_config"):
        base_config(inputs["base_config"], presets.bounds(inputs.get("preset") or ""))
    if inputs.get("program"):  # "" is the default program.md
        program(name("program"), inputs["program"])
    return _warnings(inputs, cores or os.cpu_count() or 1) if local else []


def runs_needed(inputs: dict[str, Any], name: Callable[[str], str] = str) -> None:
    """A run budget too small to try one idea is refused with the number it needs: the baseline's seeds, one screen
    and that screen's confirmation runs (a resumed key with fewer replicates needs fewer: give its own number)."""
    max_runs = inputs.get("max_runs") or 0
    replicates = inputs.get("replicates") or GateRule().replicates
    needed = runs_for_one_idea(replicates)
    if max_runs and max_runs < needed:
        raise InputError(
            f"{name('max_runs')} {max_runs} cannot try one idea: the baseline's {replicates} seeds, one screen and "
            f"its {replicates - 1} confirmation runs need {needed} runs; give {name('max_runs')} {needed} or more "
            f"(or leave it out: {name('n_experiments')} then sets it)"
        )


def _warnings(inputs: dict[str, Any], cores: int) -> list[str]:
    """Legitimate but costly choices, on a machine of `cores` CPU cores."""
    concurrency = int(inputs.get("concurrency") or 1)
    if concurrency > cores:
        return [
            f"--concurrency {concurrency} is more than this machine's {cores} CPU cores: each run still trains on the "
            f"key's fixed threads (results are unaffected), but the runs share the cores and each takes about "
            f"{concurrency / cores:.1f}x as long, so the time cap (--time-budget) may truncate them"
        ]
    return []
