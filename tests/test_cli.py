"""The CLI: every bad input is refused before any work with one clear line; the success path writes what it says."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import parallelized_autoresearch as pa
from autoresearch.lab.budget import auto_max_runs
from autoresearch.ledger.verdicts import GateRule
from autoresearch.session import inputs

ROOT = Path(__file__).resolve().parent.parent

BAD = [
    (["--memory-key", "../escape"], "memory key '../escape' is not allowed"),
    (["--memory-key", "k" * 500], "(500 characters)"),
    (["--base-config", '{"n_layer": 100}'], "base config n_layer must be in 1..8, got 100"),
    (["--base-config", '{"n_layer": -3}'], "base config n_layer must be in 1..8, got -3"),
    (["--base-config", '{"learning_rate": "fast"}'], "learning_rate must be a number"),
    (["--base-config", '{"n_embd": 33}'], "n_embd (33) must be divisible by n_head (4)"),
    (["--base-config", '{"wings": 2}'], "unknown base-config keys ['wings']"),
    (["--base-config", "[1, 2]"], "must be a JSON object"),
    (["--base-config", "{nope"], "--base-config is not valid JSON"),
    (["--time-budget", "nan"], "--time-budget must be a number in 1..86400, got nan"),
    (["--time-budget", "inf"], "--time-budget must be a number in 1..86400, got inf"),
    (["--time-budget", "0"], "--time-budget must be positive, got 0"),
    (["--api-base", "garbage"], "--api-base must be an http(s) URL with a host"),
    (["--api-base", "http://127.0.0.1:99999/v1"], "--api-base has a bad port"),
    (["--n-experiments", "1000000000"], "--n-experiments must be in 1..10000"),
    (["--concurrency", "1000"], "--concurrency must be in 0..256, got 1000"),
    (["--replicates", "1"], "--replicates must be in 2..10, got 1"),
    (["--max-llm-cost", "-1"], "--max-llm-cost must be in 0..1e+06"),
    (["--num-shards", "0"], "--num-shards must be positive, got 0"),
    (["--vocab-size", "100"], "--vocab-size must be in 264..65536, got 100"),
    (["--backend", "none"], "opt in explicitly (--allow-unsandboxed"),
    (["--llm-timeout", "0"], "--llm-timeout must be positive, got 0"),
    (["--llm-timeout", "-5"], "--llm-timeout must be in 1..7200, got -5.0"),
    (["--llm-timeout", "nan"], "--llm-timeout must be a number in 1..7200, got nan"),
    (
        ["--max-runs", "9"],
        "--max-runs 9 cannot try one idea: the baseline's 5 seeds, one screen and its 4 confirmation runs need 10 runs",
    ),
    (["--max-runs", "7", "--replicates", "4"], "need 8 runs"),
    (["--transfer-check", "100"], "--transfer-check must be in 1..64"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_input_exits_2_with_one_clear_line_before_any_work(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    state = Path.home() / ".cache" / "parallelized-autoresearch" / "tests" / f"cli-{uuid.uuid4().hex[:8]}"
    code = pa.main([*argv, "--state-dir", str(state)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert not (state / "bundles").exists() and not (state / "flyte").exists(), "nothing ran"


def test_more_runs_than_cores_is_allowed_with_a_warning() -> None:
    given = {"n_experiments": 4, "batch_size": 2, "concurrency": 3, "max_turns": 3}
    warnings = inputs.run_inputs(given, cores=2)
    assert (
        warnings and "each run still trains on the key's fixed threads" in warnings[0] and "2 CPU cores" in warnings[0]
    )
    assert inputs.run_inputs(given, cores=3) == [], "no warning when every run has a core"


def test_the_driver_task_applies_the_same_rules_to_its_inputs() -> None:
    with pytest.raises(inputs.InputError, match="memory key"):
        inputs.run_inputs({"n_experiments": 1, "batch_size": 1, "concurrency": 1, "max_turns": 1, "memory_key": "a/b"})
    assert pa.ExperimentConfig(n_embd=60, n_head=8).problem() == "n_embd (60) must be divisible by n_head (8)"


@pytest.mark.timeout(600)
def test_the_success_path_writes_the_results_and_the_exported_best(
    state_root: Path, capsys: pytest.CaptureFixture
) -> None:
    key = f"cli-ok-{uuid.uuid4().hex[:8]}"
    state = state_root / "cli-success"
    export = state / "exported" / "best_train.py"
    config = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
    config["seed"] = random.randint(1, 2**30)
    argv = ["--memory-key", key, "--state-dir", str(state), "--export-best", str(export), "--n-experiments", "5"]
    argv += ["--batch-size", "2", "--vocab-size", "512", "--max-steps", "6", "--base-config", json.dumps(config)]
    assert pa.main(argv) == 0
    out = capsys.readouterr().out
    results = state / "results" / key
    assert (results / "best_train.py").read_text() == export.read_text() and "def run_training" in export.read_text()
    assert (results / "report.html").exists()
    assert f"saved: {export}" in out and f"resume with: --memory-key {key}" in out and "Leaderboard" in out
    assert "seed noise" in out, "the closing verdict names the noise it was judged against"
    assert f"report: {results / 'report.html'} (live" in out, "the live report is in the results dir, not /tmp"
    assert all(f"saved: {results / name}" in out for name in ("report.html", "results.tsv", "best_train.py"))
    assert pa.main(["summary", "--memory-key", key, "--tsv", "--state-dir", str(state)]) == 0
    assert (results / "results.tsv").read_text() == capsys.readouterr().out, "the file is what `summary --tsv` prints"
    counters = [tuple(map(int, m)) for m in re.findall(r"\] (\d+)/(\d+)  ", out)]
    budget = auto_max_runs(5, GateRule().replicates)
    assert counters and {t for _, t in counters} == {budget}, "the counter's total is the key's run budget"
    assert [d for d, _ in counters] == sorted(d for d, _ in counters), "and it never goes back"


@pytest.mark.timeout(600)
def test_flyte_run_local_writes_the_results_dir_and_an_unwritable_tsv_loses_nothing_else(state_root: Path) -> None:
    """The Flyte CLI entry point (`flyte run --local`) passes through the same close: the report and best train.py
    land in the results dir; a results.tsv that cannot be written (a folder in its place) is one error line, and
    the run, the other files and the ledger are unaffected."""
    key = f"flyte-local-{uuid.uuid4().hex[:8]}"
    state = state_root / "flyte-local"
    results = state / "results" / key
    (results / "results.tsv").mkdir(parents=True)  # the path cannot be written as a file
    config = {"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "batch_size": 4, "eval_tokens": 2048}
    config["seed"] = random.randint(1, 2**30)
    flyte_cli = Path(sys.executable).parent / "flyte"
    argv = [str(flyte_cli), "run", "--local", "parallelized_autoresearch.py", "parallelized_autoresearch"]
    argv += ["--n_experiments", "4", "--batch_size", "2", "--vocab_size", "512", "--max_steps", "6"]
    argv += ["--memory_key", key, "--base_config", json.dumps(config)]
    env = {**os.environ, "AUTORESEARCH_STATE_DIR": str(state), "NO_COLOR": "1", "COLUMNS": "300"}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=580)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert f"report: {results / 'report.html'} (live" in output
    assert f"error: could not write {results / 'results.tsv'}" in output, output[-3000:]
    assert "def run_training" in (results / "best_train.py").read_text()
    assert "Leaderboard" in (results / "report.html").read_text()
    assert (results / "results.tsv").is_dir() and not list((results / "results.tsv").iterdir())
    assert not [p for p in results.iterdir() if p.name.startswith(".")], "no temporary file left behind"
    summary = subprocess.run(
        [sys.executable, "parallelized_autoresearch.py", "summary", "--memory-key", key, "--tsv"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert summary.returncode == 0 and summary.stdout.startswith("commit\tval_bpb\tmemory_gb\tstatus\t")
    assert len(summary.stdout.splitlines()) >= 3, "the ledger kept every run: baseline and the experiments"
