"""The trusted scorer on an exported graph, and the careful readers of what a sandbox wrote, without a sandbox (fast).

The graph comes from the real harness export of the real baseline; these tests pin the scorer's logic:
the metric equals the in-process reference and does not depend on the batch size or the random order,
a look-ahead is caught, a graph that stops being a pure function is `tampered`, the deadline holds, and a
graph that fails on real values is a crash, not an exception in the orchestrator.
"""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

import prepare
import train
from autoresearch.sandbox import graph, graph_export, scorer
from autoresearch.sandbox import processes as sandbox_proc
from autoresearch_types import ExperimentConfig

TINY = ExperimentConfig(n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, vocab_size=512, eval_tokens=4096)
CAPS = scorer.caps_for(TINY, 3072)


@pytest.fixture(scope="module")
def held_out(tiny_bundle: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    val = prepare.load_tokens(tiny_bundle / "data", "val")
    token_bytes = np.load(tiny_bundle / "tokenizer" / "token_bytes.npy")
    return val, prepare.eval_windows(val, TINY.seq_len, TINY.eval_tokens), token_bytes


@pytest.fixture
def workdir(state_root: Path):
    path = state_root / "scorer-tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path)


def model_for(config: ExperimentConfig = TINY) -> torch.nn.Module:
    torch.set_num_threads(1)
    model = train.build_model(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the initialisation, so every row's logits differ
            p.add_(0.05 * torch.randn_like(p))
    return model


def program_of(model: torch.nn.Module, workdir: Path) -> graph.Program:
    path = workdir / "model.graph"
    graph_export.export_model(model, TINY.seq_len, str(path))
    program = graph.load_graph(path.read_bytes())
    program.analyse(TINY.vocab_size, CAPS)
    return program


class OffByTenThousand(torch.nn.Module):
    """Exports fine (shapes are right), but every real index is out of range."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx + 10_000)


def test_the_score_equals_the_in_process_reference_whatever_the_batch_size(held_out, workdir: Path) -> None:
    val, windows, token_bytes = held_out
    model = model_for()
    program = program_of(model, workdir)
    reference = prepare.evaluate_bpb(model, val, token_bytes, TINY.seq_len, eval_tokens=TINY.eval_tokens)
    one = scorer.score(program, windows, token_bytes, random.Random(1), rows_per_call=1)
    many = scorer.score(program, windows, token_bytes, random.Random(2), rows_per_call=16)
    assert abs(one["val_bpb"] - reference) < 1e-6 and one["val_bpb"] == many["val_bpb"]
    for metrics in (one, many):
        assert metrics["probe_ok"] and metrics["probe_max_diff"] == 0.0 and metrics["consistent"]
        assert metrics["probes"] == len(windows) and metrics["tolerance"] == 0.0


def test_a_graph_that_is_not_a_pure_function_is_tampered(held_out, workdir: Path) -> None:
    """The repeat can fail: a graph whose kernel answers differently the second time (here a patched op) is caught."""
    _, windows, token_bytes = held_out
    program = program_of(model_for(), workdir)
    calls = [0]
    head = program.nodes[-1]

    def drifting(*args, **kwargs):
        calls[0] += 1
        return head.fn(*args, **kwargs) + 1e-3 * calls[0]

    program.nodes[-1] = graph.Node(head.op, drifting, head.args, head.kwargs)
    metrics = scorer.score(program, windows[:48], token_bytes, random.Random(0))
    assert metrics["consistent"] is False and metrics["consistency_max_diff"] > 0


def test_the_deadline_and_a_graph_failing_on_real_values_end_the_scoring_cleanly(held_out, workdir: Path) -> None:
    _, windows, token_bytes = held_out
    path = workdir / "model.graph"
    graph_export.export_model(model_for(), TINY.seq_len, str(path))
    late = scorer.evaluate(path.read_bytes(), windows, token_bytes, TINY, CAPS, random.Random(0), time.monotonic())
    assert late.failure is not None and late.failure[0] == "timeout" and late.analysis is not None
    graph_export.export_model(OffByTenThousand(model_for()).eval(), TINY.seq_len, str(path))
    broken = scorer.evaluate(path.read_bytes(), windows, token_bytes, TINY, CAPS, random.Random(0))
    assert broken.failure is not None and broken.failure[0] == "crash" and "IndexError" in broken.failure[1]


class SliceWrite(torch.nn.Module):
    """`bonus[:, :-1] += ...` becomes `slice_scatter(..., end=-1)`, whose `vmap` batching rule fails in torch 2.13."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.model(idx)
        bonus = torch.zeros_like(logits)
        bonus[:, :-1] += 0.25
        return logits + bonus


def test_a_graph_whose_batching_rule_fails_is_scored_one_window_per_call(held_out, workdir: Path) -> None:
    val, windows, token_bytes = held_out
    model = SliceWrite(model_for()).eval()
    program = program_of(model, workdir)
    metrics = scorer.score(program, windows, token_bytes, random.Random(0))
    reference = prepare.evaluate_bpb(model, val, token_bytes, TINY.seq_len, eval_tokens=TINY.eval_tokens)
    assert metrics["batched"] is False and metrics["probe_ok"] and metrics["consistent"]
    assert abs(metrics["val_bpb"] - reference) < 1e-6
    assert scorer.score(program_of(model_for(), workdir), windows, token_bytes, random.Random(0))["batched"] is True


def test_caps_scale_with_the_largest_allowed_model() -> None:
    small, big = scorer.caps_for(TINY, 1024), scorer.caps_for(ExperimentConfig(), 4096)
    assert small.max_flops_per_token < big.max_flops_per_token and small.max_peak_bytes == 1024 * 2**20
    largest = ExperimentConfig(n_layer=8, n_embd=384)
    assert big.max_params == scorer.CAP_FACTOR * largest.nominal_params


# ---------------------------------------------------------------- careful readers


def test_readers_refuse_links_at_any_depth_fifos_and_oversized_files(workdir: Path, state_root: Path) -> None:
    outside = state_root / f"outside-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    (outside / "train.json").write_text('{"steps": 3}')
    try:
        (workdir / "out").mkdir()
        (workdir / "out" / "ok.json").write_text('{"steps": 3}')
        assert sandbox_proc.read_untrusted_json(workdir, "out/ok.json") == {"steps": 3}
        os.symlink(outside, workdir / "linked")
        assert sandbox_proc.read_untrusted_json(workdir, "linked/train.json") is None
        os.symlink(outside / "train.json", workdir / "out" / "link.json")
        assert sandbox_proc.read_untrusted_json(workdir, "out/link.json") is None
        os.mkfifo(workdir / "out" / "fifo.json")
        assert sandbox_proc.read_untrusted_json(workdir, "out/fifo.json") is None
        (workdir / "out" / "big.json").write_text('{"x": "' + "y" * sandbox_proc.MAX_RESULT_BYTES + '"}')
        assert sandbox_proc.read_untrusted_json(workdir, "out/big.json") is None
        (workdir / "out" / "list.json").write_text("[1, 2]")
        assert sandbox_proc.read_untrusted_json(workdir, "out/list.json") is None
        dest = workdir / "copy.pt"
        assert sandbox_proc.copy_untrusted(workdir, "linked/train.json", [dest], 1 << 20) == -1 and not dest.exists()
        assert sandbox_proc.copy_untrusted(workdir, "out/big.json", [dest], 1024) == -1 and not dest.exists()
        assert (
            sandbox_proc.copy_untrusted(workdir, "out/ok.json", [dest], 1024) == 12
            and dest.read_text() == '{"steps": 3}'
        )
    finally:
        shutil.rmtree(outside)


def test_bounded_fields() -> None:
    assert sandbox_proc.bounded_int(10**30, 0, 3) == 3 and sandbox_proc.bounded_int(float("nan"), 0, 3) == 0
    assert sandbox_proc.bounded_int(True, 0, 3) == 0 and sandbox_proc.bounded_int("3", 0, 3) == 0
    assert (
        sandbox_proc.bounded_float(float("inf"), 0.0, 5.0) == 0.0 and sandbox_proc.bounded_float(1e300, 0.0, 5.0) == 5.0
    )
    assert sandbox_proc.bounded_choice("x" * 10**5, ("cpu", "cuda"), "cpu") == "cpu"
