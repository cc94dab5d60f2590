"""Search quality per unit of compute: the built-in planner, the same with pruning, random search and Optuna's TPE
sampler, over several sessions that each draw their own seed stream, on the same budget.

    python benchmarks/bench_search.py [--quick] [--json PATH] [--sessions N] [--strategies planner,pruned,...]
                                      [--batch] [--from-partial PATH]

Optuna is a benchmark-only dependency: `pip install -e ".[bench]"`.

Every strategy starts from the same baseline `train.py` and base config (the product's defaults: 2 layers, width 64,
vocabulary 2048, at 300 steps), gets the same budget (the same ideas and the same runs: the baseline's seeds and
every confirmation included) and goes through the product's whole path (driver task, Agent in code mode, tools,
ledger, gate, runner, sized and sandboxed `run_experiment`):
- planner: `model="builtin"`, planner seed s, every slot kept busy (`--scheduling async`);
- pruned: the same with learning-curve pruning (`--prune incumbent`);
- random: a scripted LLM whose batches are random points of the planner's own config search space
  (`policy.search_space`: learning rate, depth, width, batch size, dropout), drawn from seed s;
- optuna: a scripted LLM whose batches Optuna's TPE sampler (seed s) proposes over the same space, told each
  screen's val_bpb (random for its first batch, as TPE needs a few points to model);
- batch (with --batch): the planner, batch by batch (`--scheduling batch`).
Session s draws its own seed stream: the key's base seed is 1000 (s + 1), so its baseline seeds, screens and
confirmations differ from every other session's, and its own held-out split (`SPLIT_SEED` + s); session s of every
strategy shares both (a paired comparison: the planner and the pruned planner train the same runs until pruning
stops one).
Random and Optuna search configs only; the planner also forks checked code recipes (its own method). Compute is the
training CPU-seconds measured outside the sandbox. Flyte's cache is off (with --quick it is on: quick figures check
the wiring, not the targets).

Figures per strategy: confirmed gains per CPU-hour (pooled over sessions), the confirmed best (mean), the time to
the first confirmed gain (mean over the sessions that found one), the campaign's false-confirmation bound (mean).
Targets: pruning saves at least 30% of the compute at an equal or better confirmed best; `sessions_distinct_paths`
(distinct sequences of the planner's experiments and verdicts) equals the number of sessions.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm's import: never fetch prices

import flyte  # noqa: E402
import litellm  # noqa: E402

import parallelized_autoresearch as pa  # noqa: E402
from autoresearch import llm  # noqa: E402
from autoresearch.ledger import ledger as ledger_mod  # noqa: E402
from autoresearch.ledger.store import local_path, state_dir_of, store_location  # noqa: E402
from autoresearch.planner.builtin import RESULT_PREFIX  # noqa: E402
from autoresearch.planner.policy import AXES, search_space  # noqa: E402
from autoresearch.session import splits  # noqa: E402
from autoresearch_types import ExperimentConfig, WorkshopBounds  # noqa: E402
from benchmarks.common import parse_args, report, scripted_llm  # noqa: E402

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
FULL = {"ideas": 8, "batch_size": 4, "max_steps": 300, "vocab_size": 2048, "base": {}, "sessions": 5}
"""The product's base config at half its steps, 8 ideas per session (random search and TPE may save 8 config-only
edits: `ledger.CONFIG_ONLY_AFTER`)."""
QUICK = {"ideas": 2, "batch_size": 2, "max_steps": 30, "vocab_size": 512, "base": TINY, "sessions": 1, "cache": True}
CONCURRENCY = 2
STARTUP_TRIALS = 4
SPLIT_SEED = 20261206
"""Session s holds out the documents of split seed SPLIT_SEED + s, whatever the strategy."""
"""TPE's random start: one batch (its default of 10 would leave it random for the whole budget)."""


def title_of(point: dict[str, Any], kind: str) -> str:
    p = point
    return f"{kind} LR {p['learning_rate']:g} L{p['n_layer']} W{p['n_embd']} B{p['batch_size']} D{p['dropout']:g}"


def as_edit(point: dict[str, Any], base: dict[str, Any], kind: str) -> dict[str, Any]:
    """A config-only edit for one point of the search space."""
    overrides = {k: v for k, v in point.items() if v != base.get(k)}
    return {"title": title_of(point, kind), "overrides": overrides, "change_summary": f"a {kind} point of the space"}


def space_of(size: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The base config and the planner's config search space around it."""
    base = ExperimentConfig().with_overrides(size["base"] or {}).to_dict()
    return base, search_space(base, WorkshopBounds().describe())


def plan(edits: list[dict[str, Any]]) -> str:
    """A code-mode plan: save the edits, run them, answer each screen's val_bpb and the budget."""
    return (
        "```python\n"
        f"saved = edit_train_code_batch({edits!r})\n"
        "titles = [s['title'] for s in saved['saved']]\n"
        "ran = run_experiment_batch(titles) if titles else {'budget': {'remaining': 0}, 'results': []}\n"
        "screens = [[r['title'], r['val_bpb']] for r in ran['results'] if r['role'] == 'screen']\n"
        "{'budget': ran['budget'], 'screens': screens, 'rejected': saved['rejected']}\n```"
    )


def last_observation(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The previous plan's answer, parsed ({} when there is none or it did not parse)."""
    content = str(messages[-1].get("content", "")) if messages else ""
    if not content.startswith(RESULT_PREFIX):
        return {}
    try:
        data = json.loads(content[len(RESULT_PREFIX) :].strip().split("\n\n")[0])
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def spent(turn: int, messages: list[dict[str, Any]]) -> bool:
    last = str(messages[-1].get("content", "")) if messages else ""
    return turn > 1 and ("'remaining': 0" in last or '"remaining": 0' in last)


def random_planner(size: dict[str, Any], seed: int) -> Any:
    """A scripted LLM that runs batches of random configs until the budget is spent, or until the ledger closes
    config-only edits: random search gets the product's rules."""
    base, space = space_of(size)
    rng, seen, edits = random.Random(seed), {tuple(base.get(k) for k in AXES)}, []
    while len(edits) < 4 * size["ideas"] and len(seen) < 10_000:
        point = {k: rng.choice(space[k]) for k in AXES}
        if tuple(point.values()) not in seen:
            seen.add(tuple(point.values()))
            edits.append(as_edit(point, base, "random"))
    batch = size["batch_size"]

    def reply(turn: int, messages: list[dict[str, Any]]) -> str:
        if spent(turn, messages):
            return "The budget is spent."
        return plan(edits[(turn - 1) * batch : turn * batch])

    return scripted_llm(reply)


def optuna_planner(size: dict[str, Any], seed: int) -> Any:
    """A scripted LLM whose batches Optuna's TPE sampler proposes over the planner's config space; each screen's
    val_bpb is told back to the study (a failed or unscored run as a failed trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base, space = space_of(size)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    dists = {k: optuna.distributions.CategoricalDistribution(space[k]) for k in AXES}
    pending: dict[str, Any] = {}

    def tell(observed: dict[str, Any]) -> None:
        for title, value in observed.get("screens") or []:
            trial = pending.pop(title, None)
            if trial is not None and isinstance(value, (int, float)):
                study.tell(trial, float(value))
            elif trial is not None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def reply(turn: int, messages: list[dict[str, Any]]) -> str:
        tell(last_observation(messages))
        if spent(turn, messages):
            return "The budget is spent."
        edits: list[dict[str, Any]] = []
        for _ in range(20 * size["batch_size"]):
            if len(edits) == size["batch_size"]:
                break
            trial = study.ask(dists)
            edit = as_edit(trial.params, base, "tpe")
            if edit["title"] in pending or not edit["overrides"] or any(e["title"] == edit["title"] for e in edits):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # a repeat: not a new idea
                continue
            pending[edit["title"]] = trial
            edits.append(edit)
        return plan(edits)

    return scripted_llm(reply)


STRATEGIES = {
    "planner": {"model": llm.BUILTIN, "scheduling": "async", "prune": "off"},
    "pruned": {"model": llm.BUILTIN, "scheduling": "async", "prune": "incumbent"},
    "random": {"model": "randomsearch/random", "scheduling": "batch", "prune": "off"},
    "optuna": {"model": "optunatpe/tpe", "scheduling": "batch", "prune": "off"},
}
BATCH = {"batch": {"model": llm.BUILTIN, "scheduling": "batch", "prune": "off"}}


split_env = flyte.TaskEnvironment(name="bench_search_split")


@split_env.task
async def share_split(memory_key: str, session: int) -> str:
    """Give a new key the session's held-out split before it starts (`splits.py`: the key then keeps it), so every
    strategy of a session trains and is scored on the same documents, as on the same seeds. A real key draws its
    own secret; here two keys of one session would otherwise differ by their split as much as by their strategy.
    A task, because the key's store is located from the Flyte context."""
    store = local_path(store_location(memory_key, state_dir_of(None)))
    if store is None:
        raise RuntimeError("bench_search runs locally: its keys' stores must be local paths")
    secret = splits.secret_path(store)
    secret.parent.mkdir(parents=True, mode=0o700)
    secret.write_text(json.dumps({"seed": SPLIT_SEED + session}))
    secret.chmod(0o600)
    return str(secret)


def research(size: dict[str, Any], strategy: dict[str, str], session: int) -> tuple[Any, float]:
    """One research session through the driver, on the session's own seed stream and split; its output and wall
    seconds."""
    started = time.perf_counter()
    memory_key = f"bench-search-{uuid.uuid4().hex[:8]}"
    flyte.with_runcontext(**ledger_mod.run_context_kwargs()).run(share_split, memory_key=memory_key, session=session)
    run = flyte.with_runcontext(disable_run_cache=not size.get("cache"), **ledger_mod.run_context_kwargs()).run(
        pa.parallelized_autoresearch,
        n_experiments=size["ideas"],
        batch_size=size["batch_size"],
        concurrency=CONCURRENCY,
        memory_key=memory_key,
        planner_seed=session,
        max_steps=size["max_steps"],
        vocab_size=size["vocab_size"],
        base_config={**size["base"], "seed": 1000 * (session + 1)},
        **strategy,
    )
    out = run.outputs()[0]
    if out.error:
        raise RuntimeError(f"{strategy} (session {session}) failed: {out.error}")
    return out, time.perf_counter() - started


def standing(out: Any, wall: float) -> dict[str, Any]:
    """What one session found and what it cost: the confirmed best, confirmed gains, the path it took, compute, the
    time to the first confirmed gain and the campaign's bound."""
    rows = out.leaderboard
    best = next(r for r in rows if r.get("incumbent"))
    base = next(r for r in rows if r["title"] == "baseline")
    path = tuple((r["title"], r["label"]) for r in sorted(rows, key=lambda r: r.get("seq") or 10**9))
    return {
        "confirmed_best": best["val_bpb"] if best["title"] == "baseline" else best.get("fresh_mean") or best["val_bpb"],
        "baseline": base["val_bpb"],
        "confirmed": sum(r.get("label") == "confirmed" for r in rows),
        "best_title": best["title"],
        "cpu_s": out.totals.get("compute_cpu_s_this_session", 0.0),
        "wall": wall,
        "first_gain_s": out.totals.get("first_confirmed_gain_s"),
        "pruned": sum(r.get("label") == "pruned" for r in rows),
        "bound": (out.totals.get("campaign") or {}).get("bound"),
        "path": path,
    }


def mean(values: list[float | None]) -> float:
    """The mean of the values that exist (nan when none does)."""
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 4) if present else float("nan")


def figures_of(results: dict[str, list[dict[str, Any]]], size: dict[str, Any]) -> dict[str, float]:
    """The flat figures: per strategy, then pruning's saving and the planner's distinct paths."""
    figures: dict[str, float] = {"sessions": size["sessions"], "ideas_per_session": size["ideas"]}
    for name, rows in results.items():
        figures[f"sessions_{name}"] = len(rows)
        cpu_h = sum(r["cpu_s"] for r in rows) / 3600
        figures[f"confirmed_gains_per_cpu_hour_{name}"] = round(sum(r["confirmed"] for r in rows) / cpu_h, 3)
        figures[f"{name}_confirmed_best_val_bpb"] = mean([r["confirmed_best"] for r in rows])
        figures[f"{name}_runs_with_confirmed_gain"] = sum(r["best_title"] != "baseline" for r in rows)
        figures[f"{name}_cpu_s"] = mean([r["cpu_s"] for r in rows])
        figures[f"{name}_wall_s"] = mean([r["wall"] for r in rows])
        figures[f"{name}_time_to_first_confirmed_gain_s"] = mean([r["first_gain_s"] for r in rows])
        figures[f"{name}_campaign_bound"] = mean([r["bound"] for r in rows])
    base_rows = results.get("planner") or [r for rows in results.values() for r in rows]  # as published: planner's
    figures["baseline_val_bpb"] = mean([r["baseline"] for r in base_rows])
    if "planner" in results:
        figures["sessions_distinct_paths"] = len({r["path"] for r in results["planner"]})
    if "planner" in results and "pruned" in results:
        figures |= pruning_figures(results["planner"], results["pruned"])
    if "batch" in results and "planner" in results:
        figures["time_to_first_confirmed_gain_batch_s"] = mean([r["first_gain_s"] for r in results["batch"]])
        figures["time_to_first_confirmed_gain_async_s"] = mean([r["first_gain_s"] for r in results["planner"]])
    return figures


def pruning_figures(planner: list[dict[str, Any]], pruned: list[dict[str, Any]]) -> dict[str, float]:
    """What pruning saved against the planner on the same sessions (the same seed streams), and what it cost."""
    paired = min(len(pruned), len(planner))
    figures: dict[str, float] = {"prune_sessions_paired": paired}
    planner_cpu = sum(r["cpu_s"] for r in planner[:paired])
    figures["pruned_runs"] = sum(r["pruned"] for r in pruned[:paired])
    figures["prune_compute_saved_frac"] = round(1 - sum(r["cpu_s"] for r in pruned[:paired]) / planner_cpu, 3)
    figures["prune_best_delta"] = round(
        mean([r["confirmed_best"] for r in pruned[:paired]]) - mean([r["confirmed_best"] for r in planner[:paired]]),
        4,
    )
    same = zip(planner[:paired], pruned[:paired], strict=True)
    figures["prune_same_best_sessions"] = sum(a["best_title"] == b["best_title"] for a, b in same)
    return figures


def partial_path(json_path: Path | None) -> Path | None:
    """Where each finished session is appended as it ends (beside `--json`), so a long run that is cut short still
    leaves its sessions."""
    return json_path.with_suffix(".sessions.jsonl") if json_path else None


def run_sessions(size: dict[str, Any], strategies: dict[str, Any], json_path: Path | None) -> dict[str, list]:
    """Every strategy on every session, session by session; each session's standing appended to the partial file."""
    ledger_mod.init_local(project="autoresearch-bench", log_level=logging.CRITICAL)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in strategies}
    partial = partial_path(json_path)
    for session in range(size["sessions"]):
        litellm.custom_provider_map = [{"provider": "randomsearch", "custom_handler": random_planner(size, session)}]
        if "optuna" in strategies:
            litellm.custom_provider_map.append(
                {"provider": "optunatpe", "custom_handler": optuna_planner(size, session)}
            )
        for name, strategy in strategies.items():
            results[name].append(standing(*research(size, strategy, session)))
            print(f"session {session} {name}: {results[name][-1]['best_title']}", flush=True)
            if partial:
                with partial.open("a") as f:
                    f.write(json.dumps({"strategy": name, "session": session, **results[name][-1]}) + "\n")
    return results


def read_partial(path: Path, strategies: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The sessions a (possibly cut short) run appended, by strategy, in session order."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in strategies}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        row["path"] = tuple(tuple(step) for step in row["path"])
        results.setdefault(row.pop("strategy"), []).append(row)
    return results


def main() -> None:
    def extra(parser: Any) -> None:
        parser.add_argument("--sessions", type=int, default=0, help="sessions per strategy (default 5; quick 1)")
        parser.add_argument("--batch", action="store_true", help="also run the planner batch by batch")
        parser.add_argument(
            "--strategies",
            default=",".join(STRATEGIES),
            help=f"the strategies to run, comma-separated (default all: {','.join(STRATEGIES)}; "
            "the pruning figures need planner and pruned)",
        )
        parser.add_argument(
            "--from-partial",
            type=Path,
            default=None,
            help="report the figures of the sessions a cut-short run appended (PATH.sessions.jsonl), without running",
        )

    args = parse_args(__doc__, extra)
    size = dict(QUICK if args.quick else FULL)
    size["sessions"] = args.sessions or size["sessions"]
    chosen = [name for name in args.strategies.split(",") if name]
    if unknown := set(chosen) - set(STRATEGIES):
        sys.exit(f"bench_search: unknown strateg(ies) {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
    strategies = {name: STRATEGIES[name] for name in chosen} | (BATCH if args.batch else {})
    if "optuna" in strategies and importlib.util.find_spec("optuna") is None:  # benchmark-only: the bench extra
        print("optuna is not installed (pip install -e '.[bench]'): the TPE strategy is left out of this run")
        strategies.pop("optuna")
    if args.from_partial:  # each strategy's figures rest on the sessions it finished (`sessions_<name>`)
        results = {name: rows for name, rows in read_partial(args.from_partial, strategies).items() if rows}
        size["sessions"] = min(len(rows) for rows in results.values())
    else:
        results = run_sessions(size, strategies, args.json)
    print(f"\n{size['ideas']} ideas per session, {size['max_steps']} steps, batches of {size['batch_size']}")
    print(
        f"{'strategy':<9}{'sess':>5}{'confirmed best':>16}{'baseline':>10}{'gains':>6}{'CPU s':>8}{'1st gain s':>11}  best"
    )
    for name, rows in results.items():
        for session, r in enumerate(rows):
            first = "-" if r["first_gain_s"] is None else f"{r['first_gain_s']:.0f}"
            print(
                f"{name:<9}{session:>5}{r['confirmed_best']:>16.4f}{r['baseline']:>10.4f}{r['confirmed']:>6}"
                f"{r['cpu_s']:>8.0f}{first:>11}  {r['best_title']}"
            )
    figures = figures_of(results, size)
    print()
    targets = {
        "prune_compute_saved_frac": ">= 0.3",
        "prune_best_delta": "<= 0 (equal or better)",
        "prune_same_best_sessions": f"= {size['sessions']} (the same confirmed best as the planner's)",
        "sessions_distinct_paths": f"= {size['sessions']}",
    }
    report(figures, args.json, targets)


if __name__ == "__main__":
    main()
