"""karpathy's habits from the store: `summary --tsv` (results.tsv) and `export --git` (the lineage as git commits),
through the real CLI on a key built from records (`test_summary.build_key`), with real git repositories."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_subcommands import KEY, cli, keys_root
from test_summary import make_key

from autoresearch.ledger.verdicts import LABELS
from autoresearch.report import results_tsv
from autoresearch.report.lineage_git import IDENTITY

BRANCH = f"autoresearch/{KEY}"


@pytest.fixture
def built(state_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh state dir with the key `KEY` built by `test_summary.build_key`."""
    where = state_root / "export" / uuid.uuid4().hex[:8]
    assert make_key(where, KEY, monkeypatch)["sessions"] == 2
    return where


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def tsv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def stored_sources(where: Path) -> dict[str, str]:
    """title -> the train.py the store holds (read from its files, not through the code under test)."""
    out = {}
    for spec in (keys_root(where) / KEY / "experiments").glob("*/spec.json"):
        out[json.loads(spec.read_text())["title"]] = (spec.parent / "train.py").read_text()
    return out


def export(where: Path, repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, *extra: str) -> tuple:
    return cli(["export", "--memory-key", KEY, "--git", str(repo), *extra], where, monkeypatch, capsys)


# ---------------------------------------------------------------- results.tsv


def test_every_label_of_a_run_maps_to_one_of_karpathys_statuses() -> None:
    assert set(results_tsv.STATUS) == set(LABELS) - {"not_run"}
    assert set(results_tsv.STATUS.values()) == {"keep", "discard", "crash"}


def test_results_tsv_matches_summary_json(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, text, err = cli(["summary", "--memory-key", KEY, "--tsv"], built, monkeypatch, capsys)
    assert code == 0, err
    assert text.splitlines()[0].split("\t") == list(results_tsv.COLUMNS)
    assert text.splitlines()[0].startswith("commit\tval_bpb\tmemory_gb\tstatus\tdescription\t"), "karpathy's first"
    data = json.loads(cli(["summary", "--memory-key", KEY, "--json"], built, monkeypatch, capsys)[1])
    board = {r["title"]: r for r in data["leaderboard"]}
    rows = tsv_rows(text)
    ran = [r["title"] for r in sorted(data["leaderboard"], key=lambda r: r["seq"] or 0) if r["outcome"]]
    assert [r["description"] for r in rows] == ran, "every experiment that ran, baseline first, in run order"
    parents = {n["title"]: p["title"] for p in data["lineage"]["tree"] for n in p["children"]}
    parents["LR up + warmup"] = "LR up"
    for row in rows:
        want = board[row["description"]]
        assert float(row["val_bpb"]) == pytest.approx(want["val_bpb"], abs=5e-7)
        assert int(row["seeds"]) == want["n_seeds"] and row["verdict"] == want["label"]
        assert (float(row["se"]) if row["se"] else None) == pytest.approx(want["se"], abs=5e-7)
        assert row["status"] == results_tsv.STATUS[want["label"]] and row["step"] == want["step"]
        assert row["parent"] == ("" if row["description"] == "baseline" else parents[row["description"]])
        assert row["memory_gb"] == "0.0" and len(row["commit"]) == 7
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "keep"]


def test_summary_tsv_to_a_path_writes_it_and_a_path_that_cannot_be_written_is_refused(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    printed = cli(["summary", "--memory-key", KEY, "--tsv"], built, monkeypatch, capsys)[1]
    target = built / "out.tsv"
    code, out, _ = cli(["summary", "--memory-key", KEY, "--tsv", str(target)], built, monkeypatch, capsys)
    assert code == 0 and target.read_text() == printed and out == f"saved: {target}\n"
    (built / "locked").mkdir()
    (built / "locked").chmod(0o500)
    for bad, why in [
        (built / "missing" / "r.tsv", "does not exist"),
        (built, "it is a directory"),
        (built / "locked" / "r.tsv", "permission denied"),
    ]:
        code, out, err = cli(["summary", "--memory-key", KEY, "--tsv", str(bad)], built, monkeypatch, capsys)
        if why == "permission denied" and code == 0:  # root ignores the folder's mode
            (built / "locked" / "r.tsv").unlink()
            continue
        assert code == 2 and err.startswith(f"error: cannot write {bad}") and why in err, err
        assert len(err.strip().splitlines()) == 1 and out == ""
    assert target.read_text() == printed, "nothing else was touched"


# ---------------------------------------------------------------- export --git


def test_the_export_round_trips_and_carries_the_verdict_in_each_message(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    repo = built / "lineage"
    code, out, err = export(built, repo, monkeypatch, capsys)
    assert code == 0, err
    commits = git(repo, "rev-list", "--reverse", BRANCH).splitlines()
    sources = stored_sources(built)
    titles = [git(repo, "log", "-1", "--format=%s", c) for c in commits]
    assert titles == ["baseline", "LR up", "LR up + warmup"], "one commit per step, baseline to incumbent"
    for commit, title in zip(commits, titles, strict=True):
        git(repo, "checkout", "-q", commit)
        assert (repo / "train.py").read_text() == sources[title], f"{title}: checking out gives its train.py"
        assert json.loads((repo / "config.json").read_text())["token_budget"] > 0
    assert json.loads(git(repo, "show", f"{commits[1]}:config.json"))["learning_rate"] == 0.006
    body = git(repo, "log", "-1", "--format=%B", commits[2])
    assert "verdict: confirmed (decided by rule)" in body
    assert "val_bpb: 2.503333 ± 0.003333 (mean ± se over 3 seeds)" in body
    assert "seeds: 0 = 2.500000, 1 = 2.510000, 2 = 2.500000" in body and "Memory-Key: sum-key" in body
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", commits[2]) == f"{IDENTITY}|{IDENTITY}"
    assert "Wide" not in git(repo, "log", "--all", "--format=%s"), "without --all, only the lineage"
    tsv = tsv_rows(cli(["summary", "--memory-key", KEY, "--tsv"], built, monkeypatch, capsys)[1])
    ids = {r["description"]: r["commit"] for r in tsv}
    assert [ids[t] for t in titles] == [c[:7] for c in commits], "results.tsv's commit column names these commits"
    assert f"{commits[2][:7]} LR up + warmup" in out


def test_the_export_is_deterministic_and_all_puts_the_other_tries_on_side_branches(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    first, second = built / "one", built / "two"
    assert export(built, first, monkeypatch, capsys, "--all")[0] == 0
    refs = git(first, "for-each-ref", "--format=%(refname) %(objectname)")
    assert export(built, first, monkeypatch, capsys, "--all")[0] == 0, "a second export into the same repository"
    assert git(first, "for-each-ref", "--format=%(refname) %(objectname)") == refs
    assert export(built, second, monkeypatch, capsys, "--all")[0] == 0
    assert git(second, "for-each-ref", "--format=%(refname) %(objectname)") == refs, "the same commits anywhere"
    branches = [line.split()[0] for line in refs.splitlines()]
    assert branches == [f"refs/heads/{BRANCH}", f"refs/heads/{BRANCH}-tries/wide"], "'Deep' never ran: no branch"
    wide = git(first, "log", "--format=%s", f"{BRANCH}-tries/wide")
    assert wide.splitlines() == ["Wide", "baseline"] and "verdict: within_noise" in git(
        first, "log", "-1", "--format=%B", f"{BRANCH}-tries/wide"
    )
    assert git(first, "status", "--porcelain") == "" and (first / "train.py").exists(), "the branch is checked out"
    assert git(first, "symbolic-ref", "HEAD") == f"refs/heads/{BRANCH}"


def test_an_export_into_a_dirty_repository_or_a_foreign_branch_is_refused_and_changes_nothing(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    repo = built / "mine"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "notes.txt").write_text("work in progress\n")
    code, out, err = export(built, repo, monkeypatch, capsys)
    assert code == 2 and "has uncommitted changes (1 path)" in err and len(err.strip().splitlines()) == 1, err
    assert git(repo, "for-each-ref") == "" and out == ""
    git(repo, "add", "notes.txt")
    git(repo, "-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm", "notes")
    git(repo, "branch", "theirs")
    code, _, err = export(built, repo, monkeypatch, capsys, "--branch", "theirs")
    assert code == 2 and "branch 'theirs'" in err and "did not write" in err, err
    code, _, err = export(built, repo, monkeypatch, capsys)
    assert code == 0, err
    assert (repo / "notes.txt").exists() and git(repo, "status", "--porcelain") == "", "the user's branch untouched"
    assert git(repo, "log", "--format=%s", BRANCH).splitlines()[-1] == "baseline"
    stray = built / "stray"
    stray.mkdir()
    (stray / "file").write_text("x")
    code, _, err = export(built, stray, monkeypatch, capsys)
    assert code == 2 and "not empty and not a git repository" in err and not (stray / ".git").exists()
    code, _, err = export(built, built / "new", monkeypatch, capsys, "--branch", "bad..name")
    assert code == 2 and "'bad..name' is not a valid branch name" in err and not (built / "new").exists()
