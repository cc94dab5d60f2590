"""The command line: every flag, checked before any work; local or cluster; the outcome and the exit code.

With no subcommand it runs research. The subcommands read the state dir's store and never train or call an LLM:
`summary` (one key: leaderboard, lineage, verdicts, noise, audit, totals; or its `results.tsv`), `list` (every key),
`verdict` (store a person's accept/reject of an experiment) and `export` (the lineage as git commits).

Exit codes: 0 done; 1 the research failed or found nothing to report, including a session that could run experiments
and ran none (a subcommand: the store could not be read); 2 bad input (a --program file that is missing, unreadable or
empty, too), also when the driver task refuses it (a flag that contradicts the key's settings; a subcommand: also an
unknown key or title, a decision other than accept/reject, a TSV path that cannot be written, or a git target that
cannot take the export); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import flyte

import bundle
import prepare
import ui
from autoresearch import llm
from autoresearch.agent import program as program_mod
from autoresearch.agent.prompts import PROMPT_FORMS
from autoresearch.lab import placement
from autoresearch.lab.pruning import MODES as PRUNE_MODES
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger.verdicts import GateRule
from autoresearch.planner.policy import SCHEDULING
from autoresearch.sandbox import backends
from autoresearch.session import inputs, presets, results
from autoresearch.session.driver import CLUSTER_CONCURRENCY, LOCAL_CONCURRENCY, check_backend, new_memory_key
from autoresearch.session.subcommands import PROG, SUBCOMMANDS, init_flyte, subcommand_main, use_state_dir
from autoresearch_types import AutoresearchOutput, ExperimentConfig


def effective_defaults() -> dict[str, Any]:
    """What a flag left out means, where that is decided by the code that applies it rather than by argparse (the
    key's own setting on resume, else these): the help text and the README quote them."""
    base = ExperimentConfig()
    return {
        "--dataset": prepare.DEFAULT_DATASET,
        "--num-shards": prepare.DEFAULT_NUM_SHARDS,
        "--vocab-size": base.vocab_size,
        "--time-budget": base.time_budget_s,
        "--max-steps": base.max_steps,
        "--replicates": GateRule().replicates,
        "--program": program_mod.DEFAULT.name,
    }


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the CLI (the research run), with its default; the epilog names the subcommands."""
    epilog = "subcommands (each has its own --help; none of them trains or calls an LLM):\n" + "\n".join(
        f"  {PROG} {name:<8} {text}" for name, text in SUBCOMMANDS.items()
    )
    default = effective_defaults()
    p = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [flags] | {PROG} {{{','.join(SUBCOMMANDS)}}} ...",
        description="An LLM agent that improves train.py by running batches of sandboxed experiments.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--n-experiments",
        type=int,
        default=10,
        help="ideas to try in total for the memory key: experiments beyond the baseline (default 10)",
    )
    p.add_argument(
        "--max-runs",
        type=int,
        default=0,
        help="runs in total for the memory key: the baseline's seeds, every idea's screen and the confirmation re-runs "
        "(default 0: replicates + ideas + (replicates - 1) x half the ideas, rounded up)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="experiments planned per batch (default 4)")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"experiments running at once (default {LOCAL_CONCURRENCY}; {CLUSTER_CONCURRENCY} with --config)",
    )
    p.add_argument(
        "--max-turns",
        type=int,
        default=0,
        help="agent turns at most (default: 2 x --n-experiments + 6, enough for one experiment per turn)",
    )
    p.add_argument(
        "--preset",
        default=presets.NO_PRESET,
        choices=(presets.NO_PRESET, *presets.PRESETS),
        help="a named setup whose values are the defaults of the flags below; flags given explicitly win, and "
        "--base-config keys win one by one (karpathy: climbmix, vocab 8192, seq 2048, his eval tokens and token "
        f"budget; default {presets.NO_PRESET})",
    )
    p.add_argument(
        "--dataset", default=None, choices=sorted(prepare.DATASETS), help=f"corpus (default {default['--dataset']})"
    )
    p.add_argument(
        "--num-shards", type=int, default=None, help=f"training shards to fetch (default {default['--num-shards']})"
    )
    p.add_argument(
        "--vocab-size", type=int, default=None, help=f"BPE vocabulary size (default {default['--vocab-size']})"
    )
    p.add_argument("--memory-key", default=None, help="resume this research key (default: a fresh key)")
    p.add_argument("--model", default=None, help="litellm model name (default: hosted if a key is set, else built-in)")
    p.add_argument("--api-base", default=None, help="base URL of an OpenAI-compatible server")
    p.add_argument("--max-llm-cost", type=float, default=0.0, help="stop the agent after this many USD (0: no cap)")
    p.add_argument(
        "--prompt",
        default="auto",
        choices=PROMPT_FORMS,
        help="the agent's prompt: compact (about 1,100 tokens, the core tools) or full; auto picks compact for a local "
        "--api-base or a small context window (default auto)",
    )
    p.add_argument(
        "--program",
        default=None,
        metavar="PATH",
        help="the research program the agent reads: goal, strategy, style of edits (default program.md at the "
        "repository root); the built-in planner ignores it",
    )
    p.add_argument(
        "--llm-timeout",
        type=float,
        default=None,
        help=f"seconds one LLM call may take (default {llm.LOCAL_TIMEOUT_S:g} with --api-base, else "
        f"{llm.HOSTED_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help=f"safety cap on training seconds per experiment (default {default['--time-budget']:g})",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="training steps of the base config; with its batch and length this fixes every experiment's token "
        f"budget (default {default['--max-steps']})",
    )
    p.add_argument(
        "--replicates",
        type=int,
        default=None,
        help="seeds of the baseline that measure seed noise; a gain is confirmed on as many (default {}, {}..{})".format(
            default["--replicates"], *inputs.LIMITS["replicates"]
        ),
    )
    p.add_argument("--base-config", default=None, help="JSON overrides of the base config, e.g. '{\"n_layer\": 2}'")
    p.add_argument(
        "--backend",
        default="",
        choices=("", *backends.BACKENDS),
        help="sandbox backend (default: bubblewrap if bwrap works here, else userns)",
    )
    p.add_argument(
        "--prune",
        default="off",
        choices=PRUNE_MODES,
        help="stop runs whose learning curve is clearly worse: against the incumbent's, the median of finished runs, "
        "or the parent's; any mode also runs a candidate's fresh seeds one at a time and stops futile confirmations "
        "(default off)",
    )
    p.add_argument(
        "--scheduling",
        default="async",
        choices=SCHEDULING,
        help="the built-in planner: keep every slot busy (async), or plan and wait batch by batch (batch)",
    )
    p.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="let --backend none run the edited train.py with NO isolation (never with code you do not trust)",
    )
    p.add_argument("--planner-seed", type=int, default=0, help="seed of the built-in planner's choices (default 0)")
    p.add_argument(
        "--target-val-bpb",
        type=float,
        default=0.0,
        help="stop once a confirmed result reaches this val_bpb (default: run to the budget)",
    )
    p.add_argument(
        "--target-gain",
        type=float,
        default=0.0,
        help="stop once a confirmed result beats the baseline by this many percent (default: run to the budget)",
    )
    p.add_argument(
        "--transfer-check",
        type=float,
        default=0.0,
        help="after research, re-run the final pick and the baseline at K x the token budget on fresh seeds and say "
        "whether the gain holds (default 0: off; 1..64)",
    )
    p.add_argument("--export-best", default=None, help="also write the best train.py to this path")
    p.add_argument(
        "--state-dir", default=None, help=f"local state directory (default ${prepare.STATE_DIR_ENV} or ~/.cache/...)"
    )
    p.add_argument("--config", default=os.environ.get("FLYTE_CONFIG"), help="Flyte config file: run on that cluster")
    p.add_argument(
        "--llm-secret",
        default=os.environ.get(bundle.SECRET_ENV, ""),
        metavar="NAME[:ENV]",
        help=f"with --config: the cluster secret holding the LLM API key, set in the driver pod as ENV (default "
        f"${bundle.SECRET_ENV}, else none; ENV defaults to NAME upper-cased)",
    )
    p.add_argument(
        "--max-action-concurrency",
        type=int,
        default=None,
        help="with --config: Flyte's cap on this run's actions running at once (default: the cluster's)",
    )
    p.add_argument("--retries", type=int, default=2, help="with --config: retries of a lost experiment pod (default 2)")
    p.add_argument(
        "--gpu",
        action="store_true",
        help="train every experiment on a GPU, its device memory sized and several packed on one GPU (locally: "
        "needs an NVIDIA GPU; with --config: needs AUTORESEARCH_IMAGE=gpu)",
    )
    p.add_argument(
        "--interruptible", action="store_true", help="with --config: experiments may run on spot/preemptible nodes"
    )
    p.add_argument(
        "--reuse",
        type=int,
        default=0,
        help="with --config: warm experiment pods to keep (flyte.ReusePolicy; default 0)",
    )
    return p


def task_inputs(args: argparse.Namespace, key: str, base_config: dict[str, Any]) -> dict[str, Any]:
    """The driver task's inputs from the CLI flags (0 / "" mean "the key's own setting, or the default")."""
    return dict(
        n_experiments=args.n_experiments, batch_size=args.batch_size, concurrency=args.concurrency or 0,
        max_turns=args.max_turns, dataset=args.dataset or "", num_shards=args.num_shards or 0,
        vocab_size=args.vocab_size or 0, memory_key=key, model=args.model or "", api_base=args.api_base or "",
        max_llm_cost=args.max_llm_cost, time_budget=args.time_budget or 0.0, max_steps=args.max_steps or 0,
        base_config=base_config, backend=args.backend, planner_seed=args.planner_seed, replicates=args.replicates or 0,
        allow_unsandboxed=args.allow_unsandboxed, prune=args.prune, scheduling=args.scheduling,
        target_val_bpb=args.target_val_bpb, target_gain=args.target_gain, llm_timeout=args.llm_timeout or 0.0,
        max_runs=args.max_runs, transfer_check=args.transfer_check,
        prompt=args.prompt,
        llm_secret=args.llm_secret if args.config else "", interruptible=args.interruptible, reuse=args.reuse,
        retries=args.retries, gpu=args.gpu, preset=args.preset,
    )  # fmt: skip


def check_args(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Every flag checked before any work (the same rules the driver task applies to its inputs): the task
    inputs and any warnings. Raises `InputError` / `DataError` with the fix."""
    positive = ("num_shards", "vocab_size", "max_steps", "time_budget", "replicates", "llm_timeout")
    explicit_zero = [f for f in positive if getattr(args, f) == 0]
    if explicit_zero:
        name = explicit_zero[0]
        raise inputs.InputError(f"--{name.replace('_', '-')} must be positive, got 0")
    overrides: dict[str, Any] = {}
    if args.base_config:
        try:
            overrides = json.loads(args.base_config)
        except json.JSONDecodeError as exc:
            raise inputs.InputError(f"--base-config is not valid JSON ({exc}); example: '{{\"n_layer\": 2}}'") from exc
    values = task_inputs(args, args.memory_key or new_memory_key(), overrides)
    values["program"] = program_mod.read(args.program) if args.program else program_mod.default_text()
    data = presets.apply(args.preset, values)
    warnings = inputs.run_inputs(data, inputs.cli_flag, local=not args.config)
    if args.config:
        check_cluster_flags(args)
    else:
        check_backend(args.backend, args.allow_unsandboxed)
        if args.gpu:
            check_local_gpu()
    prepare.validate_request(
        data["dataset"] or prepare.DEFAULT_DATASET,
        data["num_shards"] or prepare.DEFAULT_NUM_SHARDS,
        data["vocab_size"] or ExperimentConfig().vocab_size,
    )
    return values, warnings


def check_local_gpu() -> None:
    """`--gpu` without `--config` needs an NVIDIA GPU here; refused before any work otherwise."""
    try:
        placement.device_mb(local=True)
    except placement.NoGpu as exc:
        raise inputs.InputError(str(exc)) from None


def check_cluster_flags(args: argparse.Namespace) -> None:
    """What a cluster run needs from the submitter: an endpoint its pods can reach and a well-formed secret name
    (the backend is checked where experiments run: in their pods)."""
    if args.backend == "none":  # the rest of the backend's rules are the pods' to check, where it runs
        check_backend(args.backend, args.allow_unsandboxed)
    if args.api_base:
        inputs.cluster_endpoint("--api-base", args.api_base)
    if args.llm_secret:
        bundle.parse_secret(args.llm_secret)
    if args.max_action_concurrency is not None:
        inputs.number("--max-action-concurrency", args.max_action_concurrency, 1, 10_000)
    if args.gpu and bundle.VARIANT != "gpu":
        raise inputs.InputError("--gpu on a cluster needs the GPU image and pods: set AUTORESEARCH_IMAGE=gpu")


def save_best(out: AutoresearchOutput, export: str | None, remote: bool) -> list[Path]:
    """The files of the results dir: the driver wrote them in a local run; a cluster run's best train.py and
    results.tsv are written here from its output. Also the best train.py to `export`. A file that cannot be written
    is one error line; the others are still written."""
    written = [Path(p) for p in out.saved]
    if remote:
        files = results.ResultsDir(results.results_dir(out.memory_key))
        written += [files.save_text(results.TSV, out.results_tsv) if out.results_tsv else None]
        written += [files.save_text(results.BEST, out.best_train_py) if out.best_train_py else None]
        for problem in files.errors.values():
            print(f"error: {problem}", file=sys.stderr)
    if export and out.best_train_py:
        try:
            written.append(results.write_atomic(Path(export).expanduser(), out.best_train_py))
        except OSError as exc:
            print(f"error: could not write --export-best {export}: {exc.strerror or exc}", file=sys.stderr)
    return [p for p in written if p is not None]


def submit(task: Any, values: dict[str, Any], args: argparse.Namespace) -> Any:
    """Start the driver task on the cluster, with the LLM secret attached and Flyte's action cap, if given."""
    secret = bundle.llm_secret(args.llm_secret)
    driver = task.override(secrets=secret) if secret else task
    context = {"max_action_concurrency": args.max_action_concurrency} if args.max_action_concurrency else {}
    return flyte.with_runcontext(**context).run(driver, **values)


def print_result(out: AutoresearchOutput, written: list[Path]) -> None:
    """The final leaderboard, the best experiment, and where the report and the best train.py are."""
    print("\nLeaderboard\n" + ui.leaderboard_text(out.leaderboard))
    print(f"\n{out.summary}")
    for line in ui.closing_lines(out.totals):
        print(line)
    for path in written:
        print(f"saved: {path}")
    print(f"resume with: --memory-key {out.memory_key}")


def refused_input(exc: BaseException) -> bool:
    """True when the driver task refused its inputs (`inputs.InputError`, which Flyte carries by class name as the
    error's code): bad input, exit 2, its message alone."""
    return isinstance(exc, inputs.InputError) or getattr(exc, "code", None) == inputs.InputError.__name__


def main(argv: list[str] | None, task: Any) -> int:
    """A subcommand (`summary`, `list`, `verdict`), or: parse flags, pick local or cluster, run the research (the
    driver `task`), print the outcome."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        return subcommand_main(argv)
    args = build_parser().parse_args(argv)
    use_state_dir(args.state_dir)
    try:
        values, warnings = check_args(args)
        state = prepare.state_dir()
    except (ValueError, prepare.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    key = values["memory_key"]
    init_flyte(args.config)
    try:
        if args.config:
            run = submit(task, values, args)
            print(f"submitted: {run.url}")
            run.wait()
        else:
            run = flyte.with_runcontext(**ledger_mod.run_context_kwargs(state)).run(task, **values)
        out = run.outputs()[0]
    except KeyboardInterrupt:
        print(f"\ninterrupted: every finished experiment is saved; resume with --memory-key {key}", file=sys.stderr)
        return 130
    except Exception as exc:
        if refused_input(exc):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"error: the research run failed: {exc}\nresume with --memory-key {key}", file=sys.stderr)
        return 1
    print_result(out, save_best(out, args.export_best, remote=bool(args.config)))
    if out.error:
        print(f"error: {out.error}\nresume with --memory-key {out.memory_key}", file=sys.stderr)
        return 1
    return 0
