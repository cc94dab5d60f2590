"""`export --git DIR`: store a key's lineage in a git repository as commits and point branches at them.

The objects themselves (bytes and ids) are `autoresearch.report.lineage_git`'s pure functions of the records; here
they are only written, with `git hash-object -w` (each id git reports must be the one computed), and the branches
moved with `git update-ref`. Nothing else in the repository changes: its index and work tree are left alone unless
its checked-out branch is the exported one, which is then checked out again (safe: a dirty repository is refused).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from autoresearch.report.lineage_git import IDENTITY_EMAIL, CommitPlan, commit_objects

DEFAULT_BRANCH_PREFIX = "autoresearch/"
"""The branch when `--branch` is left out: `autoresearch/<memory key>`, as karpathy names his."""


class ExportRefused(ValueError):
    """The target cannot take the export (dirty, not a repository, a branch someone else wrote): exit 2."""


@dataclass(frozen=True)
class Target:
    """Where the export goes: the repository's top folder and whether it has to be created."""

    path: Path
    new: bool


def git(repo: Path, *args: str, data: bytes | None = None) -> str:
    """Run `git -C repo args...`; its stdout (stripped), or `ExportRefused` with git's own message."""
    proc = subprocess.run(["git", "-C", str(repo), *args], input=data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ExportRefused(
            f"git {' '.join(args[:2])} failed in {repo}: {proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout.decode(errors="replace").strip()


def checked_out(repo: Path) -> str:
    """The branch ref HEAD names (`refs/heads/...`), or "" when HEAD is detached."""
    proc = subprocess.run(["git", "-C", str(repo), "symbolic-ref", "-q", "HEAD"], capture_output=True, check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else ""


def top_level(path: Path) -> Path | None:
    """The repository whose top folder is `path`, or None (not a repository, or only a folder inside one)."""
    proc = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, check=False)
    found = proc.stdout.decode().strip()
    return path if proc.returncode == 0 and found and Path(found).resolve() == path else None


def check_target(directory: str, branches: list[str]) -> Target:
    """Refuse, before anything is written, a target that cannot take the export; say what to do instead."""
    if shutil.which("git") is None:
        raise ExportRefused("git is not installed: install it (apt-get install git) to export a lineage")
    path = Path(directory).expanduser().resolve()
    for name in branches:
        if subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True).returncode:
            raise ExportRefused(f"{name!r} is not a valid branch name")
    if path.exists() and not path.is_dir():
        raise ExportRefused(f"{path} is a file: give a directory (new, empty, or a clean git repository)")
    if top_level(path) is None:
        if path.exists() and any(path.iterdir()):
            raise ExportRefused(f"{path} is not empty and not a git repository: give a new or empty directory, or a "
                                "clean repository")  # fmt: skip
        return Target(path, new=True)
    dirty = git(path, "status", "--porcelain", "--untracked-files=all")
    if dirty:
        n = len(dirty.splitlines())
        raise ExportRefused(
            f"{path} has uncommitted changes ({n} path{'' if n == 1 else 's'}): commit or stash them first, or export "
            "into another directory"
        )
    for name in branches:
        author = git(path, "for-each-ref", "--format=%(authoremail)", f"refs/heads/{name}")
        if author and author != f"<{IDENTITY_EMAIL}>":
            raise ExportRefused(
                f"branch {name!r} in {path} holds commits the export did not write ({author}): choose another --branch"
            )
    return Target(path, new=False)


def write(target: Target, plans: dict[str, CommitPlan], refs: dict[str, str]) -> dict[str, str]:
    """Store the commits the branches need and move the branches; each title's commit id."""
    head_branch = next(iter(refs), "")
    if target.new:
        target.path.mkdir(parents=True, exist_ok=True)
        git(target.path, "init", "-q")
        git(target.path, "symbolic-ref", "HEAD", f"refs/heads/{head_branch}")
    algo = git(target.path, "rev-parse", "--show-object-format") or "sha1"
    needed = closure(plans, set(refs.values()))
    objects = commit_objects(plans, algo)
    for title in needed:
        for obj in objects[title]:
            got = git(target.path, "hash-object", "-w", "-t", obj.kind, "--stdin", data=obj.body)
            if got != obj.oid:
                raise ExportRefused(
                    f"git stored {obj.kind} {got} where {obj.oid} was computed: the export is not exact"
                )
    for name, title in refs.items():
        git(target.path, "update-ref", f"refs/heads/{name}", objects[title][-1].oid)
    if checked_out(target.path) == f"refs/heads/{head_branch}":
        git(target.path, "reset", "-q", "--hard")  # the checked-out branch moved: its files follow (it was clean)
    return {t: objects[t][-1].oid for t in needed}


def closure(plans: dict[str, CommitPlan], tips: set[str]) -> list[str]:
    """The titles the tips reach through their parents, parents first (the plans' order)."""
    reach: set[str] = set()
    for tip in tips:
        title: str | None = tip
        while title in plans and title not in reach:
            reach.add(title)
            title = plans[title].parent
    return [t for t in plans if t in reach]
