"""The command line: every flag, checked before any work; local or cluster; the outcome and the exit code.

With no subcommand it runs research. The subcommands read the state dir's store and never train or call an LLM:
`summary` (one key: leaderboard, lineage, verdicts, noise, audit, totals), `list` (every key) and `verdict` (store
a person's accept/reject of an experiment).

Exit codes: 0 done; 1 the research failed or found nothing to report (a subcommand: the store could not be read);
2 bad input (a subcommand: also an unknown key or title, or a decision other than accept/reject); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import flyte

import bundle
import prepare
import ui
from autoresearch import llm
from autoresearch.lab.pruning import MODES as PRUNE_MODES
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.ledger.verdicts import GateRule
from autoresearch.planner.policy import SCHEDULING
from autoresearch.report import summary
from autoresearch.sandbox import backends, trust
from autoresearch.session import inputs
from autoresearch.session.driver import (
    CLUSTER_CONCURRENCY,
    LOCAL_CONCURRENCY,
    check_backend,
    new_memory_key,
    save_results,
)
from autoresearch_types import AutoresearchOutput, ExperimentConfig

PROG = "parallelized_autoresearch.py"
SUBCOMMANDS = {
    "summary": "print a memory key's leaderboard, lineage, verdicts, noise, audit and totals from the store alone",
    "list": "list the memory keys in the state dir with their experiments, best and last activity",
    "verdict": "store a person's verdict (accept or reject) on one experiment of a memory key",
    "move": "move a memory key from this machine to a cluster (--to cluster) or back (--to local)",
}
"""The subcommands (`PROG SUBCOMMAND --help` for each); with none, the command runs research."""
PAST = {"accept": "accepted", "reject": "rejected"}
"""How `verdict` reports a stored decision."""


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
        default=16,
        help="runs in total for the memory key, baseline seeds and confirmations included (default 16)",
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
        help="stop runs whose learning curve is clearly worse: against the median of finished runs, or the parent's "
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
        "--interruptible", action="store_true", help="with --config: experiments may run on spot/preemptible nodes"
    )
    p.add_argument(
        "--reuse",
        type=int,
        default=0,
        help="with --config: warm experiment pods to keep (flyte.ReusePolicy; default 0)",
    )
    return p


def build_subcommand_parser() -> argparse.ArgumentParser:
    """The subcommands and their flags: `summary`, `list` and `verdict` (each with its own --help)."""
    p = argparse.ArgumentParser(prog=PROG, description="Read a memory key's research store, or add a human verdict.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    state = f"local state directory (default ${prepare.STATE_DIR_ENV} or ~/.cache/...)"
    s = sub.add_parser(
        "summary",
        help=SUBCOMMANDS["summary"],
        description="Print a memory key's leaderboard (mean +/- se over seeds), an ASCII lineage tree with the best "
        "path marked, every verdict and who made it (rule or human), sigma and the gate, the latest held-out test "
        "audit and the totals (experiments, runs, compute seconds, LLM cost), from the store alone: no training, no "
        "LLM call, the same bytes every time. Exit 2 for an unknown key.",
    )
    s.add_argument("--memory-key", required=True, help="the key to summarise (`list` shows them)")
    s.add_argument("--json", action="store_true", help="print the same content as one JSON object (sorted keys)")
    s.add_argument("--state-dir", default=None, help=state)
    ls = sub.add_parser(
        "list",
        help=SUBCOMMANDS["list"],
        description="List the memory keys in the state dir's local store, newest activity first, each with its "
        "experiment and run counts, its best (the incumbent and its mean val_bpb) and its last activity.",
    )
    ls.add_argument("--json", action="store_true", help="print one JSON object (sorted keys)")
    ls.add_argument("--state-dir", default=None, help=state)
    v = sub.add_parser(
        "verdict",
        help=SUBCOMMANDS["verdict"],
        description="Store a person's verdict on one experiment in the key's ledger (a later one for the same title "
        "replaces it; the earlier ones are kept as its history). The baseline cannot be rejected. Exit 2 for an "
        "unknown key or title, or a decision other than accept/reject.",
    )
    v.add_argument("decision", metavar="accept|reject", help="the verdict")
    v.add_argument("--memory-key", required=True, help="the key the experiment belongs to")
    v.add_argument("--title", required=True, help="the experiment's exact title (`summary` shows them)")
    v.add_argument("--note", default="", help="why, in a few words (shown by `summary`)")
    v.add_argument("--state-dir", default=None, help=state)
    m = sub.add_parser(
        "move",
        help=SUBCOMMANDS["move"],
        description="Copy a memory key's store from this machine's state dir to the cluster's store (--to cluster) "
        "or back (--to local), check that every file arrived, then remove it from where it was; a resume there "
        "continues it. Refused while a run holds the key, or when the destination already has it.",
    )
    m.add_argument("--memory-key", required=True, help="the key to move")
    m.add_argument("--to", required=True, choices=("cluster", "local"), help="where the key goes")
    m.add_argument("--state-dir", default=None, help=state)
    for sp in (s, ls, v, m):
        sp.add_argument(
            "--config",
            default=os.environ.get("FLYTE_CONFIG"),
            required=sp is m and not os.environ.get("FLYTE_CONFIG"),
            help="a Flyte config file: the cluster whose store to use (default $FLYTE_CONFIG; none: the state dir's)",
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
        llm_secret=args.llm_secret if args.config else "", interruptible=args.interruptible, reuse=args.reuse,
        retries=args.retries,
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
    warnings = inputs.run_inputs(values, inputs.cli_flag, local=not args.config)
    if args.config:
        check_cluster_flags(args)
    else:
        check_backend(args.backend, args.allow_unsandboxed)
    prepare.validate_request(
        args.dataset or prepare.DEFAULT_DATASET,
        args.num_shards or prepare.DEFAULT_NUM_SHARDS,
        args.vocab_size or ExperimentConfig().vocab_size,
    )
    return values, warnings


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


def init_flyte(config: str | None) -> None:
    """Local mode by default; a cluster when a Flyte config file is given (the code bundle's root is this
    repository whatever the working directory, so every shipped file has its path relative to it)."""
    if config:
        flyte.init_from_config(config, root_dir=trust.REPO, log_level=logging.WARNING)
    else:
        ledger_mod.init_local(log_level=logging.WARNING)


def save_best(out: AutoresearchOutput, export: str | None) -> list[Path]:
    """Where the best train.py and the report are: what a local run saved, else saved here now (a cluster run's
    output); and a copy of the best train.py at `export`."""
    written = [Path(p) for p in out.saved] or save_results(out)
    if export and out.best_train_py:
        path = Path(export).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out.best_train_py)
        written.append(path)
    return written


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


def use_state_dir(path: str | None) -> None:
    """`--state-dir`, when given, becomes the state dir of everything this process does."""
    if path:
        os.environ[prepare.STATE_DIR_ENV] = str(Path(path).expanduser().resolve())


def subcommand_inputs(args: argparse.Namespace) -> dict[str, str]:
    """The store task's inputs, checked before any work; raises `InputError` with what is allowed."""
    values = {}
    if args.command in ("summary", "verdict", "move"):
        values["key"] = inputs.memory_key(args.memory_key)
    if args.command == "verdict":
        inputs.choice("decision", args.decision, ledger_mod.HUMAN_DECISIONS)
        values.update(title=args.title, decision=args.decision, note=args.note)
    return values


def run_store_command(command: str, state: Path, values: dict[str, Any], config: str | None = None) -> dict:
    """Run one store command in a Flyte task: locally under the state dir, or on the cluster of `config` against
    its store; its JSON answer. A `data` value (a folder) travels as a `flyte.io.Dir` (uploaded for a cluster)."""
    from flyte.io import Dir

    from autoresearch.session import (
        commands as store_commands,  # only here: a research run never registers the store task's environment
    )

    init_flyte(config)
    if "data" in values:
        values = {**values, "data": Dir.from_local_sync(values["data"]) if config else Dir(path=values["data"])}
    if config:
        run = flyte.run(store_commands.store_command, command=command, state_dir="", **values)
        run.wait()
    else:
        runner = flyte.with_runcontext(**ledger_mod.run_context_kwargs(state))
        run = runner.run(store_commands.store_command, command=command, state_dir=str(state), **values)
    return json.loads(run.outputs()[0])


def side(state: Path, config: str | None) -> Any:
    """One side of a `move`: its store commands, with a refusal raised as the store task's `BadInput`."""
    from autoresearch.session.commands import BadInput

    def run(command: str, values: dict[str, Any]) -> dict[str, Any]:
        answer = run_store_command(command, state, values, config)
        if "error" in answer:
            raise BadInput(answer["error"])
        return answer["data"]

    return run


def fetch_folder(uri: str, dest: Path) -> Path:
    """A cluster store's folder copied to this machine (with this client's storage access)."""
    from flyte.io import Dir

    Dir.from_existing_remote(uri).download_sync(local_path=str(dest))
    return dest


def move_command(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    """`move`: the key from the state dir to the cluster, or back; what moved."""
    from autoresearch.session.moves import move_key

    here, there = side(state, None), side(state, args.config)
    source, dest = (here, there) if args.to == "cluster" else (there, here)
    return move_key(args.memory_key, source, dest, fetch_folder, state / "moving")


def print_subcommand(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """A subcommand's answer: text by default, one JSON object (sorted keys) with --json."""
    if args.command == "move":
        print(f"moved: {data['key']}: {data['files']} files from {data['from']} to {data['to']}")
    elif args.command == "verdict":
        earlier = len(data.get("history") or [])
        note = f" ({data['note']})" if data.get("note") else ""
        print(
            f"recorded: {args.memory_key}: {data['title']!r} {PAST[data['decision']]} by a person{note}; "
            f"{earlier} earlier verdict(s) on it kept as history"
        )
    elif args.json:
        print(summary.summary_json(data))
    elif args.command == "summary":
        sys.stdout.write(summary.summary_text(data))
    else:
        sys.stdout.write(summary.list_text(data["keys"], data["where"]))


def subcommand_main(argv: list[str]) -> int:
    """`summary`, `list` or `verdict`: read (or annotate) the store, print, and return the exit code."""
    args = build_subcommand_parser().parse_args(argv)
    use_state_dir(args.state_dir)
    try:
        values = subcommand_inputs(args)
        state = prepare.state_dir()
    except (ValueError, prepare.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "move":
            answer = {"data": move_command(args, state)}
        else:
            answer = run_store_command(args.command, state, values, args.config)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except ValueError as exc:  # a refusal by the store task on one side of a move
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: could not use the store ({args.config or state}): {exc}", file=sys.stderr)
        return 1
    if "error" in answer:
        print(f"error: {answer['error']}", file=sys.stderr)
        return int(answer.get("code", 2))
    print_subcommand(args, answer["data"])
    return 0


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
        print(f"error: the research run failed: {exc}\nresume with --memory-key {key}", file=sys.stderr)
        return 1
    print_result(out, save_best(out, args.export_best))
    if out.error:
        print(f"error: {out.error}\nresume with --memory-key {out.memory_key}", file=sys.stderr)
        return 1
    return 0
