"""The store subcommands through the real CLI, in-process: `summary`, `list` and `verdict` on a key built from
records (no training, no LLM), with the exit codes and help the README documents."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_summary import make_key

import parallelized_autoresearch as pa
import prepare
from autoresearch.session import subcommands

ROOT = Path(__file__).resolve().parent.parent
KEY = "sum-key"


def keys_root(state: Path) -> Path:
    """Where the CLI's keys live under `state` (org local, project autoresearch, domain development)."""
    return state / "flyte" / "raw" / "agents" / "memory-store" / "v0" / "local" / "autoresearch" / "development"


@pytest.fixture
def state(state_root: Path) -> Path:
    """A fresh per-test state dir under the tests' state root."""
    return state_root / "subcommands" / uuid.uuid4().hex[:8]


@pytest.fixture
def built(state: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`state` with the key `KEY` built by `test_summary.build_key`."""
    assert make_key(state, KEY, monkeypatch)["sessions"] == 2
    return state


def cli(argv: list[str], state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple:
    """Run the CLI in-process with `--state-dir state`: (exit code, stdout, stderr)."""
    monkeypatch.setenv(prepare.STATE_DIR_ENV, str(state))  # main() sets it too; this restores it afterwards
    capsys.readouterr()
    code = pa.main([*argv, "--state-dir", str(state)])
    out, err = capsys.readouterr()
    return code, out, err


def summary_json(state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict[str, Any]:
    code, out, err = cli(["summary", "--memory-key", KEY, "--json"], state, monkeypatch, capsys)
    assert code == 0, err
    return json.loads(out)


def test_summary_is_byte_identical_across_calls_and_marks_the_best_path(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    first = cli(["summary", "--memory-key", KEY], built, monkeypatch, capsys)
    second = cli(["summary", "--memory-key", KEY], built, monkeypatch, capsys)
    assert first[0] == 0 and first == second, "the same store gives the same bytes"
    out = first[1]
    assert "LR up + warmup                         2.5033  0.0033     3" in out, "leaderboard with ± and seeds"
    assert "Lineage (* = best path: baseline -> LR up -> LR up + warmup)" in out
    assert "* baseline  2.7100 +/- 0.0058 (3 seeds) [baseline]\n|-- * LR up  2.6033" in out
    assert "|   `-- * LR up + warmup  2.5033 +/- 0.0033 (3 seeds) [confirmed] <- incumbent" in out
    assert "|-- Wide  2.7150 (1 seed) [within_noise]" in out and "`-- Deep  not run [not_run]" in out
    assert "- Wide [within_noise] by rule: screen seed 0" in out
    assert "sigma (pooled seed noise): 0.0087 val_bpb (df 4)" in out
    assert "Held-out test audit of 'LR up + warmup': test 2.5600" in out
    assert "compute: 100.0 s wall, 80.0 s training CPU" in out and "LLM: $0.0200 over 5 calls in 2 session(s)" in out


def test_summary_json_parses_and_carries_every_part(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = cli(["summary", "--memory-key", KEY, "--json"], built, monkeypatch, capsys)
    again = cli(["summary", "--memory-key", KEY, "--json"], built, monkeypatch, capsys)[1]
    data = json.loads(out)
    assert code == 0 and out == again and out == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert [r["title"] for r in data["leaderboard"]][:3] == ["LR up + warmup", "LR up", "baseline"]
    assert data["leaderboard"][0]["n_seeds"] == 3 and data["leaderboard"][0]["incumbent"] is True
    assert data["lineage"]["best_path"] == ["baseline", "LR up", "LR up + warmup"]
    root = data["lineage"]["tree"][0]
    assert root["title"] == "baseline" and root["best_path"] is True
    assert {c["title"]: c["best_path"] for c in root["children"]} == {"LR up": True, "Wide": False, "Deep": False}
    assert {v["title"]: v["decided_by"] for v in data["verdicts"]} == dict.fromkeys(
        ["baseline", "LR up", "Wide", "LR up + warmup", "Deep"], "rule"
    )
    assert data["noise"]["sigma"] == pytest.approx(0.0087, abs=1e-4) and "Welch" in data["noise"]["gate"]
    assert data["audit"]["best"] == "LR up + warmup" and data["audit"]["test_gain"] == pytest.approx(0.2)
    totals = data["totals"]
    assert (totals["experiments"], totals["runs"], totals["compute"]["train_cpu_s"]) == (5, 10, 80.0)
    assert totals["llm"]["cost_usd"] == pytest.approx(0.02) and totals["llm"]["sessions"] == 2


def test_verdicts_are_stored_replaced_with_history_and_shown_as_human(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = cli(
        ["verdict", "--memory-key", KEY, "--title", "Wide", "reject", "--note", "a fluke"], built, monkeypatch, capsys
    )
    assert code == 0 and "'Wide' rejected by a person (a fluke); 0 earlier" in out, err
    code, out, _ = cli(["verdict", "--memory-key", KEY, "--title", "Wide", "accept"], built, monkeypatch, capsys)
    assert code == 0 and "'Wide' accepted by a person; 1 earlier verdict(s)" in out
    stored = json.loads((keys_root(built) / KEY / "human_verdicts" / "wide.json").read_text())
    assert (stored["decision"], stored["note"]) == ("accept", "")
    assert [(h["decision"], h["note"]) for h in stored["history"]] == [("reject", "a fluke")]
    data = summary_json(built, monkeypatch, capsys)
    rows = {v["title"]: v for v in data["verdicts"]}
    assert rows["Wide"]["decided_by"] == "human" and rows["Wide"]["human_decision"] == "accept"
    labels = {r["title"]: r["label"] for r in data["leaderboard"]}
    assert labels["Wide"] == "accepted", "the gate honours a person's accept, as it would a confirmed gain"
    assert rows["LR up"]["decided_by"] == "rule"
    text = cli(["summary", "--memory-key", KEY], built, monkeypatch, capsys)[1]
    assert "- Wide [accepted] by human: accept (" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--title", "Wdie", "accept"], "no experiment titled 'Wdie' under this key. Close titles: 'Wide'"),
        (["--title", "Wide", "maybe"], "decision must be one of accept, reject, got 'maybe'"),
        (["--title", "baseline", "reject"], "the baseline cannot be rejected"),
    ],
)
def test_a_bad_verdict_exits_2_with_one_clear_line_and_stores_nothing(
    built: Path, argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = cli(["verdict", "--memory-key", KEY, *argv], built, monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (keys_root(built) / KEY / "human_verdicts").exists()


def test_an_unknown_key_exits_2_with_close_keys_and_is_not_created(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for argv in (
        ["summary", "--memory-key", "sum-kye"],
        ["verdict", "--memory-key", "sum-kye", "--title", "x", "accept"],
    ):
        code, _, err = cli(argv, built, monkeypatch, capsys)
        assert code == 2 and "no memory key 'sum-kye'" in err and "Close keys: 'sum-key'" in err, err
    assert not (keys_root(built) / "sum-kye").exists(), "opening a key never creates it"
    code, _, err = cli(["summary", "--memory-key", "../escape"], built, monkeypatch, capsys)
    assert code == 2 and "memory key '../escape' is not allowed" in err


def test_list_shows_each_key_with_counts_best_and_last_activity(
    built: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    make_key(built, "sum-newer", monkeypatch)
    cli(["verdict", "--memory-key", "sum-newer", "--title", "Deep", "accept"], built, monkeypatch, capsys)
    code, out, _ = cli(["list"], built, monkeypatch, capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("memory key") and len(lines) == 4
    assert lines[2].split()[:3] == ["sum-newer", "5", "10"], "newest activity first"
    assert lines[3].split()[:3] == [KEY, "5", "10"] and "LR up + warmup 2.5033" in lines[3]
    data = json.loads(cli(["list", "--json"], built, monkeypatch, capsys)[1])
    newer, older = data["keys"]
    assert newer["last_activity"] > older["last_activity"] and newer["best"]["title"] == "LR up + warmup"
    assert older["best"]["val_bpb"] == pytest.approx(2.5033, abs=1e-4) and data["where"] == str(keys_root(built))


def test_list_on_an_empty_state_dir_says_so(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = cli(["list"], state, monkeypatch, capsys)
    assert code == 0 and out == f"no memory keys under {keys_root(state.resolve())}\n"
    assert json.loads(cli(["list", "--json"], state, monkeypatch, capsys)[1])["keys"] == []
    assert not keys_root(state).exists() or not any(keys_root(state).iterdir())


def test_help_covers_every_subcommand(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as top:
        pa.main(["--help"])
    text = capsys.readouterr().out
    assert top.value.code == 0 and all(
        f"parallelized_autoresearch.py {c}" in text for c in ("summary", "list", "verdict", "export")
    )
    for command, flag in [
        ("summary", "--tsv"),
        ("list", "--state-dir"),
        ("verdict", "--note"),
        ("export", "--git"),
    ]:
        with pytest.raises(SystemExit) as sub:
            pa.main([command, "--help"])
        assert sub.value.code == 0 and flag in capsys.readouterr().out


def test_the_readme_documents_every_subcommand_and_its_flags() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = subcommands.build_subcommand_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        assert f"parallelized_autoresearch.py {name}" in readme
        flags = [a.option_strings[0] for a in sub._actions if a.option_strings and a.option_strings[0] != "-h"]
        assert all(f in readme for f in flags), (name, flags)
    assert "`summary.py`: what `summary` and `list` show" in readme and "`commands.py`: the store side" in readme
