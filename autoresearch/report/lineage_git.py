"""A key's lineage as git commits: one commit per experiment, its tree that step's `train.py` and `config.json`.

Pure functions of the records: every byte of every object (blob, tree, commit) is computed here, with a fixed
author and committer and dates taken from the records, so the same records always give the same commit ids.
`export --git` (`autoresearch.session.git_export`) only stores these objects in a repository and points branches
at them; `results.tsv` quotes the same ids in its `commit` column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, LeaderboardRow
from autoresearch.report.summary import best_path, rooted
from autoresearch_types import ExperimentConfig

IDENTITY = "autoresearch <autoresearch@localhost>"
"""The author and committer of every exported commit: fixed, so an export is reproducible."""
IDENTITY_EMAIL = "autoresearch@localhost"
TRIES_SUFFIX = "-tries"
"""`--all` puts each try that is not on the incumbent's path on `<branch>-tries/<slug>`."""
FILES = ("config.json", "train.py")
"""What each commit's tree holds, in git's (byte) order."""


@dataclass(frozen=True)
class CommitPlan:
    """One experiment as a commit: its files, its message, its dates (epoch seconds, UTC) and its parent's title."""

    title: str
    slug: str
    parent: str | None
    files: dict[str, str]
    message: str
    author_time: int
    commit_time: int
    ran: bool


def epoch(stamp: str) -> int:
    """Seconds since the epoch of an ISO time from the records (UTC when it names no zone); 0 when unreadable."""
    try:
        when = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return 0
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def one_line(text: str) -> str:
    """`text` on one line (tabs and line breaks become spaces), for a subject, a field or a TSV cell."""
    return " ".join(str(text).split())


def seeds_text(rec: ExperimentRecord) -> str:
    """Each run's seed and its val_bpb (or its outcome): `0 = 2.500000, 1 = crash`."""
    parts = [
        f"{r.seed} = {r.val_bpb:.6f}" if r.val_bpb is not None else f"{r.seed} = {r.result.outcome}" for r in rec.runs
    ]
    return ", ".join(parts) or "none (not run)"


def mean_text(row: LeaderboardRow | None) -> str:
    """`2.503333 ± 0.003333 (mean ± se over 3 seeds)`, or why there is no mean."""
    if row is None or row.val_bpb is None:
        return f"none ({(row.outcome if row else None) or 'not run'})"
    spread = f" ± {row.se:.6f}" if row.se is not None else ""
    seeds = f"{row.n_seeds} seed{'' if row.n_seeds == 1 else 's'}"
    what = "mean ± se" if row.se is not None else "mean"
    return f"{row.val_bpb:.6f}{spread} ({what} over {seeds})"


def message(rec: ExperimentRecord, row: LeaderboardRow | None, key: str) -> str:
    """The commit message: the title, then the verdict and who decided, mean ± se, the seeds, step and change."""
    label = row.label if row else "not_run"
    lines = [
        one_line(rec.title),
        "",
        f"verdict: {label} (decided by {row.decided_by if row else 'rule'})",
        f"val_bpb: {mean_text(row)}",
        f"seeds: {seeds_text(rec)}",
    ]
    if row and row.verdict:
        lines.append(f"reason: {one_line(row.verdict)}")
    if rec.spec.step:
        lines.append(f"step: {rec.spec.step}")
    if rec.spec.change_summary:
        lines.append(f"change: {one_line(rec.spec.change_summary)}")
    lines += ["", f"Memory-Key: {key}", f"Experiment: {rec.spec.slug}"]
    return "\n".join(lines) + "\n"


def config_json(rec: ExperimentRecord, base: ExperimentConfig) -> str:
    """The config this step trains with (seeds aside: they are the runs'), so an override-only step has a diff."""
    config = rec.spec.effective_config(base).to_dict()
    config.pop("seed", None)
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def commit_plans(
    records: list[ExperimentRecord], rows: list[LeaderboardRow], key: str, base: ExperimentConfig
) -> dict[str, CommitPlan]:
    """Every experiment as a commit plan, by title, parents before children (the baseline is the root)."""
    by_row = {r.title: r for r in rows}
    tree = rooted(records)
    plans: dict[str, CommitPlan] = {}
    for rec in sorted(tree, key=lambda r: (r.title != BASELINE_TITLE, r.spec.created_at, r.title)):
        runs = [epoch(r.recorded_at) for r in rec.runs]
        author = epoch(rec.spec.created_at) or min(runs, default=0)
        plans[rec.title] = CommitPlan(
            title=rec.title,
            slug=rec.spec.slug,
            parent=rec.spec.parent if rec.title != BASELINE_TITLE else None,
            files={"config.json": config_json(rec, base), "train.py": rec.train_py},
            message=message(rec, by_row.get(rec.title), key),
            author_time=author,
            commit_time=max([author, *runs]),
            ran=bool(rec.runs),
        )
    return {t: plans[t] for t in topological(plans)}


def topological(plans: dict[str, CommitPlan]) -> list[str]:
    """Titles with every parent before its children (a parent the plans lack, or a cycle, makes a root)."""
    done: list[str] = []
    seen: set[str] = set()
    for title in plans:
        chain = []
        t: str | None = title
        while t is not None and t in plans and t not in seen and t not in chain:
            chain.append(t)
            t = plans[t].parent
        for t in reversed(chain):
            seen.add(t)
            done.append(t)
    return done


# ---------------------------------------------------------------- git objects


def object_id(kind: str, body: bytes, algo: str = "sha1") -> str:
    """Git's id of an object: the hash of `<kind> <size>\\0<body>`."""
    return hashlib.new(algo, f"{kind} {len(body)}\0".encode() + body).hexdigest()


def tree_body(blobs: dict[str, str]) -> bytes:
    """A flat tree of regular files (`name -> blob id`), entries in git's byte order."""
    return b"".join(f"100644 {name}\0".encode() + bytes.fromhex(blobs[name]) for name in sorted(blobs))


def commit_body(tree: str, parent: str | None, plan: CommitPlan) -> bytes:
    """A commit object's body: tree, parent, the fixed identity with the plan's dates, then the message."""
    head = [f"tree {tree}"] + ([f"parent {parent}"] if parent else [])
    head += [f"author {IDENTITY} {plan.author_time} +0000", f"committer {IDENTITY} {plan.commit_time} +0000"]
    return ("\n".join(head) + "\n\n" + plan.message).encode()


@dataclass(frozen=True)
class GitObject:
    """One object to store: its kind, its body and the id git must give it."""

    kind: str
    body: bytes
    oid: str


def commit_objects(plans: dict[str, CommitPlan], algo: str = "sha1") -> dict[str, list[GitObject]]:
    """For each title: its blobs, its tree and (last) its commit, computed parents first."""
    out: dict[str, list[GitObject]] = {}
    for title, plan in plans.items():
        objs = [GitObject("blob", text.encode(), "") for text in plan.files.values()]
        objs = [GitObject(o.kind, o.body, object_id("blob", o.body, algo)) for o in objs]
        blob_ids = {name: o.oid for name, o in zip(plan.files, objs, strict=True)}
        tree = tree_body(blob_ids)
        tree_obj = GitObject("tree", tree, object_id("tree", tree, algo))
        parent = out[plan.parent][-1].oid if plan.parent in out else None
        body = commit_body(tree_obj.oid, parent, plan)
        out[title] = [*objs, tree_obj, GitObject("commit", body, object_id("commit", body, algo))]
    return out


def commit_ids(plans: dict[str, CommitPlan], algo: str = "sha1") -> dict[str, str]:
    """Each title's commit id."""
    return {t: objs[-1].oid for t, objs in commit_objects(plans, algo).items()}


def branch_refs(
    records: list[ExperimentRecord],
    plans: dict[str, CommitPlan],
    incumbent: str | None,
    branch: str,
    include_tries: bool,
) -> dict[str, str]:
    """Which title each branch points at: `branch` at the incumbent (the baseline when there is none) and, with
    `include_tries`, `<branch>-tries/<slug>` at every try that ran and is not on the incumbent's path."""
    tip = incumbent if incumbent in plans else BASELINE_TITLE
    if tip not in plans:
        return {}
    refs = {branch: tip}
    if include_tries:
        on_path = set(best_path(rooted(records), tip))
        refs.update({f"{branch}{TRIES_SUFFIX}/{p.slug}": t for t, p in plans.items() if p.ran and t not in on_path})
    return refs
