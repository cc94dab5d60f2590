"""How well does the agent loop cope with weak models? Fixed weak-model replies and the tutorial's sequence.

    python benchmarks/bench_llm_robustness.py [--quick] [--json PATH] [--api-base URL --model openai/NAME]

Each script (`benchmarks/llm_sessions.py`) drives the driver's own `run_agent`: the code-mode Agent, the loop
guard, the real tools and ledger, Monty; only training is stubbed (a run takes no time), so this measures how
the loop copes with the model, not training. Figures:
- tutorial_sequence_experiments: experiments the tutorial's documented calls recorded and ranked (target: all
  it planned, tutorial_planned_experiments);
- weak_model_recovery_rate: the share of failure patterns (a missing key, a pasted directive, an unknown tool, a
  stale variable, prose around the code, a forgotten fence) after which the run reached a valid plan that ran
  experiments (target 1.0);
- turns_wasted_per_failure: the mean number of turns from a failed plan to the next plan that made progress
  (target 2 or fewer);
- stubborn_model_stopped and stubborn_turns_to_stop: a model that repeats a broken reply whatever it is told is
  stopped with the reason (target 1), after this many turns of the 12 it was allowed;
- prose_model_stopped and prose_model_turns_to_stop: a model that only ever replies in prose (a non-answer) is
  given the next step twice, then stopped with the reason and no summary quoted (target 1), after this many turns.
With `--api-base` and a reachable OpenAI-compatible server (llama.cpp, Ollama, vLLM) it also runs one real
session of `--max-turns` turns and prints the same figures for it (real_*); it never needs one.
"""

from __future__ import annotations

import logging
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoresearch.ledger import ledger as ledger_mod  # noqa: E402
from benchmarks import llm_sessions as ls  # noqa: E402
from benchmarks.common import parse_args, report  # noqa: E402

QUICK_PATTERNS = (
    "missing_key_repeated_then_follows_example",
    "pasted_directive_then_follows_example",
    "forgets_the_fence",
    "prints_expected_back",
    "prose_non_answer_then_follows_next_step",
)


def add_flags(parser: Any) -> None:
    """The real-session flags."""
    parser.add_argument("--api-base", default="", help="an OpenAI-compatible server for one real session (optional)")
    parser.add_argument("--model", default="openai/local", help="the model name for that server (litellm form)")
    parser.add_argument("--max-turns", type=int, default=6, help="turns of the real session (default 6)")
    parser.add_argument("--llm-timeout", type=float, default=0.0, help="seconds per call of the real session")


def session(pattern: str, max_turns: int = 8) -> dict[str, Any]:
    return ls.run_local(
        ls.scripted_session, pattern=pattern, key=f"bench-llm-{uuid.uuid4().hex[:8]}", max_turns=max_turns
    )


def recovered(out: dict[str, Any]) -> bool:
    """The run reached a valid plan that ran experiments, and no failure was left open."""
    return out["experiments"] >= 1 and not out["unrecovered"] and not out["stop_reason"]


def row(name: str, out: dict[str, Any]) -> str:
    wasted = ",".join(map(str, out["turns_wasted"])) or "-"
    return (
        f"{name[:44]:<44}{out['experiments']:>5}{out['agent_turns']:>7}{out['errored_turns']:>8}{wasted:>8}"
        f"{out['corrections']:>6}  {out['status']}"
    )


def scripted(quick: bool) -> dict[str, float]:
    """The scripted sessions and their figures."""
    print(f"{'session':<44}{'exps':>5}{'turns':>7}{'errored':>8}{'wasted':>8}{'corr':>6}  status")
    patterns = QUICK_PATTERNS if quick else tuple(sorted(ls.PATTERNS))
    outs = {p: session(p) for p in patterns}
    tutorial, stubborn = session("tutorial"), session("stubborn", max_turns=12)
    prose = session("prose_only", max_turns=12)
    for name, out in [*outs.items(), ("tutorial", tutorial), ("stubborn", stubborn), ("prose_only", prose)]:
        print(row(name, out), flush=True)
    wasted = [w for out in outs.values() for w in out["turns_wasted"]]
    ranked = [t for t in ls.TUTORIAL_TITLES if t in tutorial["ranked"]]
    return {
        "tutorial_sequence_experiments": len(ranked),
        "tutorial_planned_experiments": len(ls.TUTORIAL_TITLES),
        "weak_model_recovery_rate": round(sum(map(recovered, outs.values())) / len(outs), 3),
        "turns_wasted_per_failure": round(statistics.fmean(wasted), 2) if wasted else 0.0,
        "failure_patterns": len(outs),
        "stubborn_model_stopped": int(bool(stubborn["stop_reason"]) and stubborn["error"] != ""),
        "stubborn_turns_to_stop": stubborn["agent_turns"],
        "prose_model_stopped": int(bool(prose["stop_reason"]) and prose["error"] != "" and not prose["summary"]),
        "prose_model_turns_to_stop": prose["model_calls"],
    }


def reachable(api_base: str) -> bool:
    """True when the server answers its model list within a few seconds."""
    import httpx

    try:
        return httpx.get(api_base.rstrip("/") + "/models", timeout=5.0).status_code < 500
    except httpx.HTTPError:
        return False


def real(args: Any) -> dict[str, float]:
    """One session with the real model, if its server is reachable; no figures otherwise."""
    if not args.api_base:
        return {}
    if not reachable(args.api_base):
        print(f"no server answers at {args.api_base}: the real session is skipped", flush=True)
        return {}
    out = ls.run_local(
        ls.real_session,
        key=f"bench-llm-real-{uuid.uuid4().hex[:8]}",
        model=args.model,
        api_base=args.api_base,
        max_turns=args.max_turns,
        timeout_s=args.llm_timeout,
    )
    print(row(f"real: {args.model}", out), flush=True)
    wasted = out["turns_wasted"]
    return {
        "real_experiments": out["experiments"],
        "real_recovered": int(recovered(out)),
        "real_errored_turns": out["errored_turns"],
        "real_turns_wasted_per_failure": round(statistics.fmean(wasted), 2) if wasted else 0.0,
        "real_llm_calls": out["model_calls"],
    }


def main() -> None:
    args = parse_args(__doc__, add_flags)
    ledger_mod.init_local(project="bench-llm", log_level=logging.CRITICAL)
    figures = {**scripted(args.quick), **real(args)}
    targets = {
        "tutorial_sequence_experiments": f"= {len(ls.TUTORIAL_TITLES)} (all planned)",
        "weak_model_recovery_rate": "= 1.0",
        "turns_wasted_per_failure": "<= 2",
        "stubborn_model_stopped": "= 1",
        "prose_model_stopped": "= 1",
    }
    report(figures, args.json, targets)


if __name__ == "__main__":
    main()
