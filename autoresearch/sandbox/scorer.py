"""The trusted scorer: an exported graph and held-out windows in; `val_bpb`, the graph's size and an exact
causality verdict out. No code written by the agent runs here.

It runs in the orchestrator process, in worker threads (`evaluate` is called through
`asyncio.to_thread`), after every process of the run is dead. The graph file is hostile input:
`graph.load_graph` checks it and `Program.analyse` dry-runs it on the meta device under `caps_for`'s
caps before a real tensor is computed. Then each held-out window is evaluated alone (`Program.run`),
with nothing carried between calls: batched with `vmap` (which keeps rows independent) when that gives
bitwise what one call per window gives on the first batch, else one call per window (a batching rule
can be wrong). Each row is scored with `prepare.position_nats` / `prepare.scored_sums` in float64 and
the rows are summed exactly (`math.fsum`): the number equals `prepare.evaluate_bpb` of an eager model
with the same weights.

What each check catches, now that the scored function is a pure graph we run ourselves:

- *Cut probes* (`leak`): for every window one extra row, the window with every token after a cut `c`
  replaced by random tokens (the one right after `c` always differs). The logits at positions `0..c`
  must be bitwise equal to the window's: both rows are computed by the same kernels at the same batch
  position and shape, so an honest causal graph gives exactly 0.0 difference (measured on every honest
  model tried), and no tolerance is left to hide in. Half of the cuts are uniform; half are drawn in
  proportion to the probability the window's own pass gave the true next token, which aims probes at
  suspiciously confident positions (a leak only pays where it raises that probability). This also
  catches a graph that reads the future through IEEE tricks (0 * inf = NaN behind a causal mask), which
  an analysis of masks would call causal. Not certain: a look-ahead at few positions is caught per window
  with the probability its cut is drawn there (about 0.12 for a confident copy at one position of the
  trained default baseline, so it escapes 256 windows with about 3e-15; the README's Sandbox section).
- *Repeat* (`tampered`): the first batch is evaluated before the workers start and again by its worker,
  and the two must be bitwise equal. Nothing can keep state (no allowlisted op writes, nothing outlives
  a call), so this only catches what would break that assumption: an op that writes despite its schema,
  or non-deterministic kernels under which bitwise probes would mean nothing.
- A NaN or +inf logit (a non-finite log-normaliser) is `implausible`; a -inf logit is a zero probability.

Gone with the model servers: blind probe layouts, re-asks of a second server and batch-layout repeats.
They only existed because the edited code computed the logits; a graph sees one `(1, T)` window at a
time and cannot tell a probe from a scored row, keep a cache, or talk to anything.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

import prepare
from autoresearch.sandbox.graph import Analysis, Caps, GraphError, Program, load_graph
from autoresearch.sandbox.graph_export import GRAPH_FILE  # noqa: F401 - the file phase 1 writes, for the orchestrator
from autoresearch_types import ExperimentConfig, WorkshopBounds

ROWS_PER_CALL = 16
"""Windows evaluated per `vmap` call (fewer when one window's live tensors are large)."""
CAP_FACTOR = 8
"""A graph may read and cost up to this many times the largest model the workshop bounds allow."""
MIB = 1024 * 1024
HEADER_ROOM = 8 * MIB
"""Room in a graph file for its header and alignment, besides the weights' own bytes."""
SCORING_THREADS = 1
"""Intra-op threads of every kernel call. torch's count is process-wide, so concurrent scorings must agree on
it; one keeps results independent of what runs beside them (a row and its probe go through the same kernels
with the same partition, which the bitwise probes rely on), and more threads than free cores makes every
kernel wait on the others (70x slower measured on this loaded 2-core machine)."""
WORKERS = 2
"""Threads one scoring splits its windows between (each on `SCORING_THREADS`): the two model servers it
replaces ran in parallel, and so does this."""


class ScoringTimeout(Exception):
    """The experiment's deadline passed while scoring."""


def nominal_flops_per_token(config: ExperimentConfig) -> float:
    """Forward FLOPs per token of the baseline TinyGPT at `config`: 2 per parameter plus attention."""
    return 2.0 * config.nominal_params + 4.0 * config.n_layer * config.seq_len * config.n_embd


def caps_for(config: ExperimentConfig, memory_mb: int, bounds: WorkshopBounds | None = None) -> Caps:
    """Caps for a graph scored at `config`: `CAP_FACTOR` x the largest model the bounds allow at its vocabulary
    and sequence length (a memoriser or an honest wide edit fits; a graph built to exhaust the scorer does
    not), the run's own memory for one window's live tensors, and a file no larger than those weights in
    float64 (nor than the run's memory): what the orchestrator reads into its own memory is bounded."""
    bounds = (bounds or WorkshopBounds()).covering(config)  # a preset's base config may lie past the defaults
    biggest = config.with_overrides({"n_layer": bounds.max_layers, "n_embd": bounds.max_width})
    max_params = CAP_FACTOR * biggest.nominal_params
    return Caps(
        max_params=max_params,
        max_flops_per_token=CAP_FACTOR * nominal_flops_per_token(biggest),
        max_peak_bytes=max(1, memory_mb) * MIB,
        max_file_bytes=min(max(1, memory_mb) * MIB, 8 * max_params + HEADER_ROOM),
    )


def draw_cut(nats: torch.Tensor, rng: random.Random) -> int:
    """A cut in `0..T-2`: uniform, or (half the time) in proportion to p(true next token) at each position."""
    positions = nats.shape[0] - 1
    if rng.random() < 0.5:
        return rng.randrange(positions)
    weights = torch.exp(-nats[:positions]).tolist()
    return rng.choices(range(positions), weights=weights)[0] if sum(weights) > 0 else rng.randrange(positions)


def probe_rows(inputs: torch.Tensor, cuts: list[int], vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Each row with its tokens after its cut replaced by random ones (the first always differs)."""
    probes = inputs.clone()
    seq_len = inputs.shape[1]
    for r, cut in enumerate(cuts):
        tail = torch.randint(0, vocab, (seq_len - cut - 1,), generator=gen)
        first = int(torch.randint(0, vocab - 1, (1,), generator=gen))
        tail[0] = first + (first >= int(inputs[r, cut + 1]))
        probes[r, cut + 1 :] = tail
    return probes


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference (NaN anywhere counts as infinite)."""
    return float((a.double() - b.double()).abs().nan_to_num(nan=math.inf).max()) if a.numel() else 0.0


@dataclass
class Tally:
    """One worker's per-window nats and bytes, what its probes found, and its first batch (for the repeat)."""

    nats: list[float] = field(default_factory=list)
    n_bytes: list[float] = field(default_factory=list)
    probes: int = 0
    failures: int = 0
    worst: float = 0.0
    finite: bool = True
    first: torch.Tensor | None = None

    def add_probe(self, scored: torch.Tensor, probed: torch.Tensor) -> None:
        self.probes += 1
        if not torch.equal(scored, probed):
            self.failures += 1
            self.worst = max(self.worst, max_diff(scored, probed))


@dataclass(frozen=True)
class Batches:
    """The windows in scoring order (`inputs`, `targets`), the byte table, how to run, batch and stop them."""

    inputs: torch.Tensor
    targets: torch.Tensor
    table: torch.Tensor
    run: Callable[[torch.Tensor], torch.Tensor]
    rows_per_call: int
    deadline: float | None
    stop: threading.Event


def _score_batch(run: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
                 table: torch.Tensor, tally: Tally, rng: random.Random, gen: torch.Generator) -> torch.Tensor:  # fmt: skip
    """Score one batch of windows and probe each once; the scored logits.

    Non-finite is read off the per-position nats: a NaN or +inf logit anywhere in a row makes its
    log-normaliser non-finite (a -inf logit elsewhere is a zero probability, which is allowed).
    """
    logits = run(inputs)
    nats = prepare.position_nats(logits, targets)
    if not bool(torch.isfinite(nats).all()):
        tally.finite = False
        return logits
    cuts = []
    for r in range(inputs.shape[0]):
        n, b = prepare.scored_sums(nats[r], targets[r], table)
        tally.nats.append(n)
        tally.n_bytes.append(b)
        cuts.append(draw_cut(nats[r], rng))
    probed = run(probe_rows(inputs, cuts, logits.shape[-1], gen))  # same batch shape and positions
    for r, cut in enumerate(cuts):
        tally.add_probe(logits[r, : cut + 1], probed[r, : cut + 1])
    return logits


def _work(batches: Batches, rows: range, seed: int) -> Tally:
    """One worker: its share of the windows, batch by batch, with its own random streams."""
    try:
        return _work_share(batches, rows, seed)
    except BaseException:
        batches.stop.set()  # the other workers stop at their next batch
        raise


def _work_share(batches: Batches, rows: range, seed: int) -> Tally:
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    tally = Tally()
    for start in range(rows.start, rows.stop, batches.rows_per_call):
        if batches.stop.is_set():
            break
        if batches.deadline is not None and time.monotonic() > batches.deadline:
            raise ScoringTimeout("the deadline passed while scoring")
        part = slice(start, min(start + batches.rows_per_call, rows.stop))
        logits = _score_batch(batches.run, batches.inputs[part], batches.targets[part], batches.table, tally, rng, gen)
        if not tally.finite:
            batches.stop.set()
            break
        tally.first = logits if tally.first is None else tally.first
    return tally


def _shares(n: int, rows_per_call: int, workers: int) -> list[range]:
    """`n` rows cut into `workers` contiguous shares of whole batches."""
    batches = -(-n // rows_per_call)
    per = -(-batches // workers)
    return [range(min(n, w * per * rows_per_call), min(n, (w + 1) * per * rows_per_call)) for w in range(workers)]


def batched_runner(
    program: Program, first: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """`vmap` when it gives bitwise what one window per call gives on `first` (a batching rule can be wrong:
    `slice_scatter`'s fails in torch 2.13), else one call per window; and the runner's logits of `first`."""
    alone = program.run_each(first)
    try:
        together = program.run_rows(first)
    except (RuntimeError, IndexError, ValueError, TypeError):
        return program.run_each, alone
    return (program.run_rows, together) if torch.equal(together, alone) else (program.run_each, alone)


def score(program: Program, windows: np.ndarray, byte_table: np.ndarray, rng: random.Random,
          deadline: float | None = None, rows_per_call: int = ROWS_PER_CALL, workers: int = WORKERS) -> dict:  # fmt: skip
    """The metrics `classify.classify_metrics` reads: val_bpb of the windows, probe and repeat verdicts.

    Windows go through in a random order (consecutive windows are consecutive text, so no batch has a fixed
    neighbour structure), split between `workers` threads; a row and its probe are always computed by the same
    thread, in the same batch position. `math.fsum` is exact, so the order does not matter. The first batch is
    computed before the workers start (choosing `vmap` or one call per window) and again by its worker: the two
    must be bitwise equal (the repeat).
    """
    order = torch.tensor(rng.sample(range(len(windows)), len(windows)), dtype=torch.int64)
    inputs = torch.from_numpy(np.ascontiguousarray(windows[:, :-1], dtype=np.int64))[order]
    run, first = batched_runner(program, inputs[:rows_per_call])
    batches = Batches(
        inputs,
        torch.from_numpy(np.ascontiguousarray(windows[:, 1:], dtype=np.int64))[order],
        torch.as_tensor(np.asarray(byte_table), dtype=torch.float64),
        run,
        rows_per_call,
        deadline,
        threading.Event(),
    )
    shares = [r for r in _shares(len(windows), rows_per_call, max(1, workers)) if len(r)]
    with ThreadPoolExecutor(len(shares), thread_name_prefix="scorer") as pool:
        futures = [pool.submit(_work, batches, share, rng.randrange(1 << 62)) for share in shares]
        tallies = [future.result() for future in futures]
    if not all(t.finite for t in tallies):
        return {"val_bpb": math.nan, "logits_finite": False}
    same = torch.equal(tallies[0].first, first)
    return {
        "val_bpb": prepare.bits_per_byte(
            math.fsum(n for t in tallies for n in t.nats), math.fsum(b for t in tallies for b in t.n_bytes)
        ),
        "logits_finite": True,
        "probe_ok": all(t.failures == 0 for t in tallies),
        "probe_max_diff": max(t.worst for t in tallies),
        "probes": sum(t.probes for t in tallies),
        "probe_failures": sum(t.failures for t in tallies),
        "consistent": same,
        "consistency_max_diff": 0.0 if same else max_diff(tallies[0].first, first),
        "tolerance": 0.0,
        "windows": len(windows),
        "batched": run == program.run_rows,
    }


@dataclass
class Evaluation:
    """What scoring one graph gave: the metrics and the graph's measured size, or why it was not scored."""

    metrics: dict = field(default_factory=dict)
    analysis: Analysis | None = None
    failure: tuple[str, str] | None = None
    seconds: float = 0.0


def rows_per_call(analysis: Analysis, caps: Caps) -> int:
    """As many windows per call as fit the memory cap, at most `ROWS_PER_CALL`."""
    return max(1, min(ROWS_PER_CALL, caps.max_peak_bytes // max(1, analysis.peak_bytes)))


def evaluate(data: bytes, windows: np.ndarray, byte_table: np.ndarray, config: ExperimentConfig, caps: Caps,
             rng: random.Random, deadline: float | None = None) -> Evaluation:  # fmt: skip
    """Load, check, dry-run and score one graph file's bytes. Never raises for anything the file holds.

    Always on `SCORING_THREADS` intra-op threads (see there).
    """
    torch.set_num_threads(SCORING_THREADS)
    start = time.perf_counter()
    result = Evaluation()
    try:
        program = load_graph(data)
        if program.input_shape != (1, config.seq_len):
            raise GraphError(f"graph exported at {program.input_shape}, the harness exports (1, {config.seq_len})")
        result.analysis = program.analyse(config.vocab_size, caps)
        result.metrics = score(program, windows, byte_table, rng, deadline, rows_per_call(result.analysis, caps))
    except GraphError as error:
        result.failure = (error.outcome, str(error))
    except ScoringTimeout as error:
        result.failure = ("timeout", str(error))
    except (RuntimeError, IndexError, ValueError, TypeError) as error:  # a trusted kernel refusing its values
        result.failure = ("crash", f"the exported graph failed while scoring: {type(error).__name__}: {error}"[:500])
    result.seconds = time.perf_counter() - start
    return result
