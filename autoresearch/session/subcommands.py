"""The subcommands' command line: `summary`, `list`, `verdict`, `export` and `move` parsed, checked, run as the store
task (`commands.py`) locally or on a cluster (`--config`), printed; and the exit code.

None of them trains or calls an LLM, and none creates a key. Exit codes: 0 done; 1 the store could not be read; 2
bad input: an unknown key or title, a decision other than accept/reject, a TSV path that cannot be written, a git
target that cannot take the export, or a `move` of a key a run holds or the destination already has.
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

import prepare
from autoresearch.ledger import ledger as ledger_mod
from autoresearch.report import summary
from autoresearch.report.lineage_git import CommitPlan
from autoresearch.sandbox import trust
from autoresearch.session import git_export, inputs, results

PROG = "parallelized_autoresearch.py"

SUBCOMMANDS = {
    "summary": "print a memory key's leaderboard, lineage, verdicts, noise, audit and totals from the store alone",
    "list": "list the memory keys in the state dir with their experiments, best and last activity",
    "verdict": "store a person's verdict (accept or reject) on one experiment of a memory key",
    "export": "write a memory key's lineage (baseline to incumbent) as git commits on a branch",
    "move": "move a memory key from this machine to a cluster (--to cluster) or back (--to local)",
}
"""The subcommands (`PROG SUBCOMMAND --help` for each); with none, the command runs research."""


PAST = {"accept": "accepted", "reject": "rejected"}
"""How `verdict` reports a stored decision."""


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
    shape = s.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the same content as one JSON object (sorted keys)")
    shape.add_argument(
        "--tsv",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="print the key's results.tsv instead (karpathy's columns, then ours), or write it to PATH",
    )
    ls = sub.add_parser(
        "list",
        help=SUBCOMMANDS["list"],
        description="List the memory keys in the state dir's local store, newest activity first, each with its "
        "experiment and run counts, its best (the incumbent and its mean val_bpb) and its last activity.",
    )
    ls.add_argument("--json", action="store_true", help="print one JSON object (sorted keys)")
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
    e = sub.add_parser(
        "export",
        help=SUBCOMMANDS["export"],
        description="Write the path from the baseline to the incumbent into a git repository as commits, one per "
        "step: each commit's tree holds that step's train.py and config.json, its message the title, the verdict, "
        "mean +/- se and the seeds. Author, committer and dates come from the records, so a second export gives "
        "identical commits. DIR may be new, empty, or a clean repository (a dirty one is refused, exit 2).",
    )
    e.add_argument("--memory-key", required=True, help="the key to export (`list` shows them)")
    e.add_argument("--git", required=True, metavar="DIR", help="the repository (created when new or empty)")
    e.add_argument(
        "--branch",
        default=None,
        help=f"the branch of the lineage (default {git_export.DEFAULT_BRANCH_PREFIX}<memory key>)",
    )
    e.add_argument(
        "--all", action="store_true", help="also write every other try that ran, each on <branch>-tries/<slug>"
    )
    m = sub.add_parser(
        "move",
        help=SUBCOMMANDS["move"],
        description="Copy a memory key's store from this machine's state dir to the cluster's store (--to cluster) "
        "or back (--to local), check that every file arrived, then remove it from where it was; a resume there "
        "continues it. Refused while a run holds the key, or when the destination already has it.",
    )
    m.add_argument("--memory-key", required=True, help="the key to move")
    m.add_argument("--to", required=True, choices=("cluster", "local"), help="where the key goes")
    for sp in (s, ls, v, e, m):
        sp.add_argument("--state-dir", default=None, help=state)
        sp.add_argument(
            "--config",
            default=os.environ.get("FLYTE_CONFIG"),
            required=sp is m and not os.environ.get("FLYTE_CONFIG"),
            help="a Flyte config file: the cluster whose store to use (default $FLYTE_CONFIG; none: the state dir's)",
        )
    return p


def init_flyte(config: str | None) -> None:
    """Local mode by default; a cluster when a Flyte config file is given (the code bundle's root is this
    repository whatever the working directory, so every shipped file has its path relative to it)."""
    if config:
        flyte.init_from_config(config, root_dir=trust.REPO, log_level=logging.WARNING)
    else:
        ledger_mod.init_local(log_level=logging.WARNING)


def use_state_dir(path: str | None) -> None:
    """`--state-dir`, when given, becomes the state dir of everything this process does."""
    if path:
        os.environ[prepare.STATE_DIR_ENV] = str(Path(path).expanduser().resolve())


def subcommand_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The store task's inputs, checked before any work; raises `InputError` with what is allowed."""
    values: dict[str, Any] = {}
    if args.command in ("summary", "verdict", "export", "move"):
        values["key"] = inputs.memory_key(args.memory_key)
    if args.command == "verdict":
        inputs.choice("decision", args.decision, ledger_mod.HUMAN_DECISIONS)
        values.update(title=args.title, decision=args.decision, note=args.note)
    if args.command == "summary" and args.tsv:
        if args.tsv != "-":
            results.check_writable(Path(args.tsv).expanduser().resolve())
        values["command"] = "tsv"
    if args.command == "export":
        values.update(branch=args.branch or git_export.DEFAULT_BRANCH_PREFIX + values["key"], include_tries=args.all)
        git_export.check_target(args.git, [values["branch"]])
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
    elif args.command == "export":
        print_export(args, data)
    elif args.command == "summary" and args.tsv:
        if args.tsv == "-":
            sys.stdout.write(data["tsv"])
        else:
            print(f"saved: {results.write_atomic(Path(args.tsv).expanduser().resolve(), data['tsv'])}")
    elif args.json:
        print(summary.summary_json(data))
    elif args.command == "summary":
        sys.stdout.write(summary.summary_text(data))
    else:
        sys.stdout.write(summary.list_text(data["keys"], data["where"]))


def print_export(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """Write the exported commits into the repository (checked again now that the side branches are known) and
    say what each branch holds."""
    plans = {p["title"]: CommitPlan(**p) for p in data["plans"]}
    refs = data["refs"]
    target = git_export.check_target(args.git, list(refs))
    ids = git_export.write(target, plans, refs)
    branch, *tries = refs
    path = [t for t in ids if t in git_export.closure(plans, {refs[branch]})]
    print(f"exported {len(path)} commit(s) to {target.path} on branch {branch} (baseline -> incumbent):")
    for title in path:
        print(f"  {ids[title][:7]} {title}")
    if tries:
        print(f"and {len(tries)} other tr{'y' if len(tries) == 1 else 'ies'} on side branches {branch}-tries/<slug>")


def subcommand_main(argv: list[str]) -> int:
    """`summary`, `list`, `verdict`, `export` or `move`: read (or annotate, or move) the store, print or write, and
    return the exit code."""
    args = build_subcommand_parser().parse_args(argv)
    use_state_dir(args.state_dir)
    try:
        values = subcommand_inputs(args)
        state = prepare.state_dir()
        command = values.pop("command", args.command)
    except (ValueError, prepare.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "move":
            answer = {"data": move_command(args, state)}
        else:
            answer = run_store_command(command, state, values, args.config)
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
    try:
        print_subcommand(args, answer["data"])
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
