"""A real small open model, served locally, drives the product: how far does it get, and what does it read first?

    python benchmarks/bench_small_model.py [--quick] [--json PATH]
    python benchmarks/bench_small_model.py --api-base http://127.0.0.1:8080/v1 --model openai/NAME [--runs N]

Not run in CI (it needs a model server; `research/llm/serve.sh`-style llama.cpp servers work). Figures:
- first_prompt_tokens_full / _compact: the tokens of the first prompt (the system prompt with the tool
  descriptions, and the directive) in each form, counted with tiktoken's cl100k_base offline (target: compact
  <= 2,000); with a server, also as the served model counts them (its own tokenizer and chat template:
  served_first_prompt_tokens_*);
- with a server, for each of `--runs` sessions of the real CLI (real tiny training, `--n-experiments 10
  --max-turns 12`, the prompt form `auto` picks for a local server): the turn whose plan started the first
  experiment (target <= 4), the experiments run in those 12 turns (target >= 3), the exit code and its reason.
`--quick` measures the prompts only (under a minute, no server needed).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tools as tools_mod  # noqa: E402
from autoresearch import llm  # noqa: E402
from autoresearch.agent import program, prompts  # noqa: E402
from autoresearch.agent.code_agent import ResearchAgent  # noqa: E402
from autoresearch.ledger.verdicts import GateRule  # noqa: E402
from autoresearch_types import DatasetProfile, ExperimentConfig, WorkshopBounds  # noqa: E402
from benchmarks.common import BENCH_STATE, parse_args, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
"""The session's base config: real training, a few seconds a run on this machine."""
PROFILE = DatasetProfile("shakespeare", 1, 2048, 1_090_000, 37_000, 3_100, 300, 3.9)
"""A profile of the default bundle's shape, for the first prompt's directive."""
TARGET_COMPACT = 2000


def first_prompts(n_experiments: int = 10, max_turns: int = 12) -> dict[str, tuple[str, str]]:
    """The first prompt in each form, as (system prompt, directive), for a fresh key with the default settings and
    a measured noise floor: what the agent reads before its first turn."""
    base, bounds = ExperimentConfig(), WorkshopBounds()
    rule = GateRule()
    limits = prompts.budget_dict(n_experiments, 4, 2, base.max_steps, base.time_budget_s, max_turns)
    limits.update(started=rule.replicates, replicates=rule.replicates)
    baseline = {"val_bpb": 2.7312, "se": 0.0181, "n_seeds": rule.replicates}
    noise = {"sigma": 0.0314, "df": rule.replicates - 1, "gate": rule.describe(), "baseline": baseline}
    research = tools_mod.ResearchTools(loop=None, profile=PROFILE.to_dict())  # type: ignore[arg-type]
    steer = program.default_text()
    full = prompts.agent_prompt("full", steer, base, bounds)
    full_system = ResearchAgent(tools=research.as_tools(), **full).system_prompt
    return {
        "full": (full_system, prompts.directive(PROFILE, base, bounds, limits, "", None, noise)),
        "compact": (
            prompts.agent_prompt("compact", steer, base, bounds)["prompt"],
            prompts.compact_directive(base, bounds, limits, "", None, noise),
        ),
    }


def offline_tokens() -> dict[str, int]:
    """Tokens of each form's first prompt with a real BPE tokenizer available offline (cl100k_base)."""
    return {f"first_prompt_tokens_{form}": sum(map(llm.count_tokens, texts)) for form, texts in first_prompts().items()}


# ---------------------------------------------------------------- with a served model


def server_root(api_base: str) -> str:
    """The server's root URL (llama.cpp's own endpoints live beside `/v1`)."""
    return api_base.rstrip("/").removesuffix("/v1")


def served_tokens(api_base: str, model: str, system: str, directive: str) -> int:
    """The first prompt's tokens as the served model counts them: llama.cpp renders its chat template and tokenizes
    (`/apply-template`, `/tokenize`); another server answers a one-token completion with its usage."""
    import httpx

    messages = [{"role": "system", "content": system}, {"role": "user", "content": directive}]
    root = server_root(api_base)
    try:
        prompt = httpx.post(f"{root}/apply-template", json={"messages": messages}, timeout=60).json()["prompt"]
        tokens = httpx.post(f"{root}/tokenize", json={"content": prompt, "add_special": True}, timeout=60).json()
        return len(tokens["tokens"])
    except (httpx.HTTPError, KeyError, ValueError):
        body = {"model": model.removeprefix("openai/"), "messages": messages, "max_tokens": 1}
        answer = httpx.post(f"{api_base.rstrip('/')}/chat/completions", json=body, timeout=1800).json()
        return int(answer["usage"]["prompt_tokens"])


def store_of(state: Path, key: str) -> Path:
    """The key's store on disk."""
    (found,) = (state / "flyte" / "raw" / "agents" / "memory-store").glob(f"v0/*/*/*/{key}")
    return found


def cli_session(args: Any, state: Path, index: int) -> dict[str, Any]:
    """One research session of the real CLI in a child process, with the served model; its figures."""
    key = f"bench-small-{uuid.uuid4().hex[:8]}"
    argv = [sys.executable, str(ROOT / "parallelized_autoresearch.py"), "--memory-key", key, "--model", args.model]
    argv += ["--api-base", args.api_base, "--n-experiments", "10", "--max-turns", str(args.max_turns)]
    argv += ["--batch-size", "4", "--concurrency", "2", "--vocab-size", "512", "--max-steps", "60"]
    argv += ["--time-budget", "120", "--base-config", json.dumps({**TINY, "seed": index}), "--prompt", args.prompt]
    argv += ["--state-dir", str(state), "--llm-timeout", str(args.llm_timeout)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=args.session_timeout)
    wall = time.monotonic() - started
    (state / f"{key}.log").write_text(proc.stdout + "\n---- stderr ----\n" + proc.stderr)
    return {"key": key, **session_figures(state, key, proc.returncode, proc.stderr), "wall_s": round(wall, 1)}


def session_figures(state: Path, key: str, exit_code: int, stderr: str) -> dict[str, Any]:
    """One finished session's figures, from the key's stored session record and the CLI's exit code and errors."""
    sessions = sorted((store_of(state, key) / "sessions").glob("*.json"))
    totals = json.loads(sessions[-1].read_text())["totals"] if sessions else {}
    agent, usage = totals.get("agent") or {}, totals.get("llm") or {}
    errors = [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]
    return {
        "exit_code": exit_code,
        "reason": errors[0] if errors else totals.get("status", ""),
        "status": totals.get("status", ""),
        "first_experiment_turn": agent.get("first_run_turn"),
        "experiments": totals.get("experiments_this_session", 0),
        "turns": agent.get("agent_turns", 0),
        "errored_turns": agent.get("errored_turns", 0),
        "next_steps": agent.get("next_steps", 0),
        "corrections": agent.get("corrections", 0),
        "llm_calls": usage.get("calls", 0),
        "llm_tokens": int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0),
    }


def served(args: Any) -> dict[str, Any]:
    """The served model's prompt tokens and `--runs` sessions of the real CLI; no figures without a server."""
    from benchmarks.bench_llm_robustness import reachable

    if not args.api_base:
        return {}
    if not reachable(args.api_base):
        print(f"no server answers at {args.api_base}: the served figures are skipped", flush=True)
        return {}
    figures: dict[str, Any] = {}
    for form, (system, directive) in first_prompts().items():
        figures[f"served_first_prompt_tokens_{form}"] = served_tokens(args.api_base, args.model, system, directive)
    state = BENCH_STATE / "small-model"
    state.mkdir(parents=True, exist_ok=True)
    print(f"{'session':<28}{'exit':>5}{'first':>7}{'exps':>6}{'turns':>7}{'errored':>9}{'wall s':>9}  reason")
    runs = []
    for index in range(args.runs):
        out = cli_session(args, state, index)
        runs.append(out)
        first = out["first_experiment_turn"] if out["first_experiment_turn"] is not None else "-"
        print(
            f"{out['key']:<28}{out['exit_code']:>5}{first:>7}{out['experiments']:>6}{out['turns']:>7}"
            f"{out['errored_turns']:>9}{out['wall_s']:>9}  {out['reason'][:160]}",
            flush=True,
        )
    firsts = [r["first_experiment_turn"] for r in runs if r["first_experiment_turn"] is not None]
    figures.update(
        sessions=len(runs),
        turns_to_first_experiment=min(firsts)
        if len(firsts) == 1
        else (sorted(firsts)[len(firsts) // 2] if firsts else -1),
        sessions_with_an_experiment=len(firsts),
        experiments_in_12_turns=sorted(r["experiments"] for r in runs)[len(runs) // 2],
        exit_codes=",".join(str(r["exit_code"]) for r in runs),
    )
    for i, r in enumerate(runs):
        figures.update({f"run{i}_exit_code": r["exit_code"], f"run{i}_reason": r["reason"][:300]})
        figures.update({f"run{i}_first_experiment_turn": r["first_experiment_turn"] or -1})
        figures.update({f"run{i}_experiments": r["experiments"], f"run{i}_wall_s": r["wall_s"]})
    return figures


def add_flags(parser: Any) -> None:
    """The served-model flags."""
    parser.add_argument("--api-base", default="", help="an OpenAI-compatible server of a small model (optional)")
    parser.add_argument("--model", default="openai/local", help="its model name, litellm form (openai/NAME)")
    parser.add_argument("--runs", type=int, default=1, help="sessions of the real CLI (default 1)")
    parser.add_argument("--max-turns", type=int, default=12, help="turns per session (default 12)")
    parser.add_argument("--prompt", default="auto", choices=prompts.PROMPT_FORMS, help="the sessions' --prompt")
    parser.add_argument("--session-timeout", type=float, default=14400.0, help="seconds one session may take")
    parser.add_argument(
        "--llm-timeout",
        type=float,
        default=3600.0,
        help="the sessions' --llm-timeout: a busy 2-core CPU reads about 2 tokens/s, so one call can take 10 minutes",
    )


def main() -> None:
    args = parse_args(__doc__, add_flags)
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    figures: dict[str, Any] = dict(offline_tokens())
    figures["compact_to_full_ratio"] = round(
        figures["first_prompt_tokens_compact"] / figures["first_prompt_tokens_full"], 3
    )
    if not args.quick:
        figures.update(served(args))
    targets = {
        "first_prompt_tokens_compact": f"<= {TARGET_COMPACT:,}",
        "served_first_prompt_tokens_compact": f"<= {TARGET_COMPACT:,}",
        "turns_to_first_experiment": "<= 4",
        "experiments_in_12_turns": ">= 3",
    }
    report(figures, args.json, targets)


if __name__ == "__main__":
    main()
