"""The trusted scorer, its file exchange and the careful readers, without a sandbox (fast).

A stand-in "server" answers in-process, so these tests pin the scorer's logic: the metric equals
the in-process reference, it does not depend on the random layout, probes look like scored rows,
and a leaking or inconsistent model is caught. The exchange and reader tests plant what a hostile
run could leave in its work dir (links, FIFOs, directories, oversized or mistyped files).
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import prepare
import train
from autoresearch.sandbox import processes as sandbox_proc
from autoresearch.sandbox import scorer
from autoresearch.sandbox.exchange import Exchange, Malformed, NonFinite, OutOfTime, ServerGone, response_name
from autoresearch_types import ExperimentConfig

TINY = ExperimentConfig(n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, vocab_size=512, eval_tokens=4096)


class InProcess:
    """Duck-typed `Exchange`: answers each request with `model`'s float32 logits, right away."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.pending = model, {}

    def send(self, index: int, tokens: np.ndarray) -> None:
        self.pending[index] = tokens

    def receive(self, index: int, shape: tuple[int, int, int]) -> np.ndarray:
        with torch.no_grad():
            logits = self.model(torch.from_numpy(self.pending.pop(index))).float().numpy()
        assert logits.shape == shape
        return logits


@pytest.fixture(scope="module")
def held_out(tiny_bundle: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    val = prepare.load_tokens(tiny_bundle / "data", "val")
    token_bytes = np.load(tiny_bundle / "tokenizer" / "token_bytes.npy")
    return val, prepare.eval_windows(val, TINY.seq_len, TINY.eval_tokens), token_bytes


def model_for(config: ExperimentConfig = TINY) -> torch.nn.Module:
    torch.set_num_threads(1)
    return train.build_model(config).eval()


class Peeking(torch.nn.Module):
    """A model that raises the logit of the next input token: it looks at the future."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = self.model(idx)
        logits[:, :-1] += 5.0 * torch.nn.functional.one_hot(idx[:, 1:], logits.shape[-1])
        return logits


def score_with(model, windows, token_bytes, seed: int, check_model=None) -> scorer.ScoreReport:
    plan = scorer.plan_scoring(windows, TINY.vocab_size, 24, random.Random(seed))
    return scorer.score(plan, windows, token_bytes, InProcess(model), InProcess(check_model or model))


def test_split_score_equals_the_in_process_reference_and_ignores_the_layout(held_out) -> None:
    val, windows, token_bytes = held_out
    model = model_for()
    reference = prepare.evaluate_bpb(model, val, token_bytes, TINY.seq_len, eval_tokens=TINY.eval_tokens)
    first, second = (score_with(model, windows, token_bytes, seed) for seed in (1, 2))
    assert first.error is None and first.metrics["probe_ok"] and first.metrics["consistent"]
    assert abs(first.metrics["val_bpb"] - reference) < 1e-9
    assert first.metrics["val_bpb"] == second.metrics["val_bpb"], "the metric must not depend on the batch layout"
    assert first.metrics["probe_max_diff"] <= scorer.PROBE_TOLERANCE_NATS


def test_probes_look_like_scored_rows_and_are_laid_out_blind(held_out) -> None:
    _, windows, _ = held_out
    n, seq_len, high = len(windows), TINY.seq_len, 24
    plan = scorer.plan_scoring(windows, TINY.vocab_size, high, random.Random(7))
    counts = scorer.ProbeCounts.for_windows(n)
    main = [row for batch in plan.main_batches for row in batch]
    check = [row for batch in plan.check_batches for row in batch]
    assert sorted(r for r in main if r < n) == list(range(n)), "every window is scored exactly once"
    assert len(main) == n + counts.main_cuts + counts.repeats
    assert len(check) == counts.check_cuts + counts.re_asks and not set(check) & set(main)
    assert all(r.shape == (seq_len,) and r.dtype == np.int64 for r in plan.rows)
    assert all(high // 2 <= len(b) <= high for b in plan.main_batches[:-1]) and 1 <= len(plan.main_batches[-1]) <= high
    where = {row: i for i, batch in enumerate(plan.main_batches) for row in batch}
    for c in plan.comparisons:
        a, b = plan.rows[c.a], plan.rows[c.b]
        assert np.array_equal(a[: c.upto + 1], b[: c.upto + 1])
        if c.kind == "leak":
            assert not np.array_equal(a, b), "a cut probe changes the suffix"
        elif c.b in where:
            assert where[c.a] != where[c.b], "a repeat is asked in another batch"
    other = scorer.plan_scoring(windows, TINY.vocab_size, high, random.Random(8))
    assert [len(b) for b in other.main_batches] != [len(b) for b in plan.main_batches]


def test_a_model_that_sees_the_future_fails_the_probes(held_out) -> None:
    _, windows, token_bytes = held_out
    report = score_with(Peeking(model_for()), windows, token_bytes, seed=3)
    assert not report.metrics["probe_ok"] and report.metrics["consistent"]


def test_answers_that_differ_between_servers_are_inconsistent(held_out) -> None:
    _, windows, token_bytes = held_out
    other = model_for()
    with torch.no_grad():
        other.head.weight.mul_(1.01)
    report = score_with(model_for(), windows, token_bytes, seed=4, check_model=other)
    assert not report.metrics["consistent"] and report.metrics["consistency_max_diff"] > scorer.PROBE_TOLERANCE_NATS


# ---------------------------------------------------------------- the exchange


@pytest.fixture
def workdir(state_root: Path):
    path = state_root / "scorer-tests" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path)


def exchange(workdir: Path, alive: bool = True, wait_s: float = 5.0) -> Exchange:
    return Exchange("serve", workdir, lambda: alive, time.monotonic() + wait_s)


def plant_answer(workdir: Path, index: int, array: np.ndarray) -> None:
    """Write an answer as the harness does: to a temporary name, then renamed into place."""
    tmp = workdir / f".{response_name(index)}.part"
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, workdir / response_name(index))


SHAPE = (2, 4, 8)


def test_an_exact_answer_is_read_once_and_removed(workdir: Path) -> None:
    answer = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    plant_answer(workdir, 0, answer)
    ex = exchange(workdir)
    assert np.array_equal(ex.receive(0, SHAPE), answer)
    assert not (workdir / response_name(0)).exists()
    ex.send(1, np.zeros((2, 4), dtype=np.int64))
    assert np.load(workdir / "req-000001.npy").dtype == np.int64


NEVER_BLOCKS_S = 120.0
"""A bound no non-blocking read comes near on any machine; a blocked one (a FIFO opened for reading) never ends."""


@pytest.mark.parametrize(
    "plant",
    [
        lambda p: np.save(p.open("wb"), np.zeros(SHAPE, dtype=np.float64)),
        lambda p: np.save(p.open("wb"), np.zeros((3, 4, 8), dtype=np.float32)),
        lambda p: np.save(p.open("wb"), np.asfortranarray(np.zeros(SHAPE, dtype=np.float32))),
        lambda p: p.write_bytes(b"not an array at all"),
        lambda p: (np.save(p.open("wb"), np.zeros(SHAPE, dtype=np.float32)), p.open("ab").write(b"x" * 64)),
        lambda p: os.mkfifo(p),
        lambda p: os.symlink("/etc/hostname", p),
        lambda p: os.mkdir(p),
    ],
    ids=["float64", "shape", "fortran", "garbage", "trailing-bytes", "fifo", "symlink", "directory"],
)
def test_anything_but_the_exact_answer_is_malformed_and_never_blocks(workdir: Path, plant) -> None:
    plant(workdir / response_name(0))
    with ThreadPoolExecutor(1) as pool:  # a blocking open (a FIFO) would never return: bound it, do not time it
        receiving = pool.submit(exchange(workdir).receive, 0, SHAPE)
        with pytest.raises(Malformed):
            receiving.result(timeout=NEVER_BLOCKS_S)


def test_non_finite_answers_missing_servers_and_deadlines(workdir: Path) -> None:
    bad = np.zeros(SHAPE, dtype=np.float32)
    bad[1, 2, 3] = np.inf
    plant_answer(workdir, 0, bad)
    with pytest.raises(NonFinite):
        exchange(workdir).receive(0, SHAPE)
    with pytest.raises(ServerGone):
        exchange(workdir, alive=False).receive(1, SHAPE)
    with pytest.raises(OutOfTime):
        exchange(workdir, wait_s=0.05).receive(1, SHAPE)


def test_requests_never_write_through_a_planted_link(workdir: Path, state_root: Path) -> None:
    victim = state_root / f"victim-{uuid.uuid4().hex[:8]}.json"
    victim.write_text("precious")
    os.symlink(victim, workdir / "req-000000.npy")
    try:
        exchange(workdir).send(0, np.zeros((1, 4), dtype=np.int64))
        assert victim.read_text() == "precious"
        assert not (workdir / "req-000000.npy").is_symlink()
    finally:
        victim.unlink()


def test_an_answer_written_while_we_wait_is_picked_up(workdir: Path) -> None:
    answer = np.ones(SHAPE, dtype=np.float32)
    writer = threading.Timer(0.05, plant_answer, (workdir, 0, answer))
    writer.start()
    assert np.array_equal(exchange(workdir).receive(0, SHAPE), answer)
    writer.join()


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
