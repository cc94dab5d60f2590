"""The trusted scorer: held-out windows in, `val_bpb` and blind-probe verdicts out. Never imports edited code.

It runs in the orchestrator process, in worker threads (`score` is called through
`asyncio.to_thread`). Why there and not in a subprocess: the orchestrator is already trusted and
outside every sandbox, no sandboxed process can read or write its memory (no PID namespace shares
it under `bubblewrap`; under `userns` a sandboxed process is in another user namespace and
`/proc/<pid>/mem` is refused), the metric never travels through a file the sandbox can reach, and
there is no interpreter to start. The held-out windows and the byte table stay in this process;
the model servers (`harness.py serve`, sandboxed) receive token rows and answer logits. The metric
is `prepare.score_logits` applied here to those logits, row by row, so its value does not depend
on how rows were batched (per-row sums in float64, added in window order).

**Blind probes.** Mixed into the scored rows, in an order and batch layout drawn from
`secrets.SystemRandom` (nothing the sandbox can derive), are rows that look exactly like scored
rows: every row is `seq_len` real held-out tokens, every batch has a random size in the same range,
and the servers see no targets, no labels and no row ids. A server therefore cannot tell which
rows are probes: a cheat must apply to probes whenever it applies to scored rows. A spliced row may
read oddly after its cut, but noticing that does not help: the cut is checked on the *original*
window, an ordinary scored row, and the check server's probes never reach the main server.

- *Cut probes* (`leak`): a held-out window whose suffix after a random cut `c` is replaced by the
  same positions of another real window. A causal model's log-probabilities at positions `0..c`
  must match those it gave the original window. Any use of a later token there is caught whenever
  it touches the probed position; copying the next token at position `c` always is.
  Some go to the main server (mixed with its scored rows: catches stateless cheats, whatever call,
  batch size, row position or sequence length they fire on). Others go only to the *check* server,
  a fresh process that shares no writable storage with the main one: the main server never sees
  them, so even a stateful server that notices pairs of rows with a shared prefix (and answers
  them consistently) cannot know where the cut of the check's probe is.
- *Repeats* (`tampered`): a scored window sent again, at another point, in another batch (other
  neighbours, position and batch size). Its answer must match: catches answers that depend on the
  batch layout or the call.
- *Re-asks* (`tampered`): scored windows answered again by the check server. Catches state carried
  across rows (test-time adaptation on the eval text, caches, using one window to predict another),
  since the fresh server has not seen the rows the main one had seen, and non-determinism.

Comparisons are of log-softmax values (float32), max absolute difference over every compared
position and vocabulary entry, against `PROBE_TOLERANCE_NATS`. Honest batch-layout noise measured
here is 0.0 on CPU (fp32 kernels treat rows independently); the tolerance leaves room for kernels
that do not. What a cheat under the tolerance can gain: at a probed position its log-probability
of the true next token exceeds that of a prediction made without the true future by at most the
tolerance, i.e. at most 1e-3 nats per token, about 5e-4 bits per byte at 3 bytes per token.
What the probes only catch with some probability is stated in `ProbeCounts`.
"""

from __future__ import annotations

import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import prepare
from autoresearch.sandbox.exchange import Exchange, ExchangeError

PROBE_TOLERANCE_NATS = 1e-3
"""Largest difference in log-probability (nats) two answers for the same tokens may show."""
IN_FLIGHT = 2
"""Requests handed to a server ahead of the answer being read (the server computes while we score)."""


@dataclass(frozen=True)
class ProbeCounts:
    """How many probes of each kind an evaluation of `n` windows mixes in.

    A model that uses later tokens at a fraction `f` of (row, position) slots escapes every cut
    probe with probability about `(1 - f) ** (2 * main_cuts + check_cuts)` if it is stateless, and
    `(1 - f) ** check_cuts` if it keeps state to answer the main server's probe pairs consistently
    (at 256 windows: 32 check cuts, so f = 0.1 escapes with probability 0.034 and f = 0.2 with 0.0008).
    """

    main_cuts: int
    repeats: int
    check_cuts: int
    re_asks: int

    @classmethod
    def for_windows(cls, n: int) -> ProbeCounts:
        def clamp(value: int, low: int, high: int) -> int:
            return min(n, max(low, min(high, value)))

        return cls(clamp(n // 16, 4, 32), clamp(n // 32, 2, 16), clamp(n // 8, 8, 32), clamp(n // 16, 4, 16))


@dataclass(frozen=True)
class Comparison:
    """Rows `a` and `b` must get the same log-probabilities at positions `0..upto`, else `kind`."""

    a: int
    b: int
    upto: int
    kind: str


@dataclass
class Plan:
    """Every row to ask (ids `0..n-1` are the scored windows, in order), who gets it, and what to compare."""

    rows: list[np.ndarray]
    n_scored: int
    vocab: int
    main_batches: list[list[int]]
    check_batches: list[list[int]]
    comparisons: list[Comparison]


def _spliced(windows: np.ndarray, origin: int, rng: random.Random) -> tuple[int, np.ndarray]:
    """A random cut `c` and the origin's inputs with positions `c+1..` taken from another window."""
    n, seq_len = windows.shape[0], windows.shape[1] - 1
    cut = rng.randrange(0, seq_len - 1)
    donor = origin
    for _ in range(8):  # prefer a donor whose token right after the cut differs (it tests next-token copying)
        donor = rng.randrange(n)
        if donor != origin and windows[donor, cut + 1] != windows[origin, cut + 1]:
            break
    suffix = windows[donor, cut + 1 : seq_len] if donor != origin else windows[origin, cut + 1 : seq_len][::-1]
    return cut, np.concatenate([windows[origin, : cut + 1], suffix])


def _batches(order: list[int], low: int, high: int, rng: random.Random) -> list[list[int]]:
    """`order` cut into consecutive batches of random sizes in `[low, high]`."""
    out, i = [], 0
    while i < len(order):
        size = rng.randint(low, high)
        out.append(order[i : i + size])
        i += size
    return out


def _separate(batches: list[list[int]], pairs: list[tuple[int, int]], rng: random.Random) -> None:
    """Move the second row of each pair out of its partner's batch (repeats must see another layout)."""
    if len(batches) < 2:
        return
    where = {row: b for b, batch in enumerate(batches) for row in batch}
    for a, b in pairs:
        if where[a] != where[b]:
            continue
        other = rng.choice([i for i in range(len(batches)) if i != where[a]])
        j, k = batches[where[b]].index(b), rng.randrange(len(batches[other]))
        swapped = batches[other][k]
        batches[where[b]][j], batches[other][k] = swapped, b
        where[b], where[swapped] = other, where[a]


def plan_scoring(windows: np.ndarray, vocab: int, batch_rows: int, rng: random.Random) -> Plan:
    """Scored rows plus blind probes, in a random order and random batch sizes (see the module doc)."""
    n, seq_len = windows.shape[0], windows.shape[1] - 1
    counts = ProbeCounts.for_windows(n)
    rows = [windows[i, :seq_len] for i in range(n)]
    comparisons: list[Comparison] = []

    def add(tokens: np.ndarray, origin: int, upto: int, kind: str) -> int:
        rows.append(np.ascontiguousarray(tokens))
        comparisons.append(Comparison(origin, len(rows) - 1, upto, kind))
        return len(rows) - 1

    main = [
        add(t, o, c, "leak") for o in rng.sample(range(n), counts.main_cuts) for c, t in [_spliced(windows, o, rng)]
    ]
    repeats = [add(rows[o], o, seq_len - 1, "tampered") for o in rng.sample(range(n), counts.repeats)]
    check = [
        add(t, o, c, "leak") for o in rng.sample(range(n), counts.check_cuts) for c, t in [_spliced(windows, o, rng)]
    ]
    check += [add(rows[o], o, seq_len - 1, "tampered") for o in rng.sample(range(n), counts.re_asks)]
    order = list(range(n)) + main + repeats
    rng.shuffle(order)
    rng.shuffle(check)
    high = max(1, batch_rows)
    main_batches = _batches(order, max(1, high // 2), high, rng)
    again = set(repeats)
    _separate(main_batches, [(c.a, c.b) for c in comparisons if c.b in again], rng)
    return Plan(rows, n, vocab, main_batches, _batches(check, 1, high, rng), comparisons)


@dataclass
class Comparator:
    """Collects answers for compared rows, compares each pair as soon as both are in, keeps the worst."""

    comparisons: list[Comparison]
    worst: dict[str, float] = field(default_factory=lambda: {"leak": 0.0, "tampered": 0.0})
    _waiting: dict[int, object] = field(default_factory=dict)
    _by_row: dict[int, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for i, c in enumerate(self.comparisons):
            self._by_row.setdefault(c.a, []).append(i)
            self._by_row.setdefault(c.b, []).append(i)

    def offer(self, row: int, logits) -> None:
        """The answer (a `(seq_len, vocab)` float32 tensor) for `row`; compares what it completes."""
        import torch

        ids = self._by_row.get(row)
        if not ids:
            return
        upto = max(self.comparisons[i].upto for i in ids)
        logp = torch.log_softmax(logits[: upto + 1], dim=-1)
        for i in ids:
            part = logp[: self.comparisons[i].upto + 1]
            with self._lock:
                other = self._waiting.pop(i, None)
                if other is None:
                    self._waiting[i] = part
                    continue
            diff = float((part - other).abs().max())
            kind = self.comparisons[i].kind
            with self._lock:
                self.worst[kind] = max(self.worst[kind], diff)

    def complete(self) -> bool:
        return not self._waiting


@dataclass
class Tally:
    """Per-window nats and bytes of the scored rows (summed in window order at the end)."""

    n: int
    nats: np.ndarray = field(init=False)
    n_bytes: np.ndarray = field(init=False)
    seen: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.nats, self.n_bytes, self.seen = np.zeros(self.n), np.zeros(self.n), np.zeros(self.n, dtype=bool)

    def bpb(self) -> float:
        return prepare.bits_per_byte(math.fsum(self.nats), math.fsum(self.n_bytes))


def warm_up() -> None:
    """Import torch now (about a second, once per process), so the first scoring does not wait for it."""
    import torch  # noqa: F401


def _converse(exchange: Exchange, plan: Plan, batches: list[list[int]], on_row) -> None:
    """Ask `batches` of one server (keeping `IN_FLIGHT` requests ahead) and pass each answered row on."""
    seq_len = len(plan.rows[0])
    stack = [np.stack([plan.rows[r] for r in batch]) for batch in batches]
    for i in range(min(IN_FLIGHT, len(batches))):
        exchange.send(i, stack[i])
    for i, batch in enumerate(batches):
        logits = exchange.receive(i, (len(batch), seq_len, plan.vocab))
        if i + IN_FLIGHT < len(batches):
            exchange.send(i + IN_FLIGHT, stack[i + IN_FLIGHT])
        for j, row in enumerate(batch):
            on_row(row, logits[j])


@dataclass
class ScoreReport:
    """What the scorer found: the metric and probe verdicts, or why the answers could not be scored."""

    metrics: dict = field(default_factory=dict)
    error: ExchangeError | None = None


def score(plan: Plan, windows: np.ndarray, byte_table: np.ndarray, main: Exchange, check: Exchange) -> ScoreReport:
    """Run both conversations (two threads), score the main server's scored rows, compare every probe."""
    import torch

    targets = torch.from_numpy(np.ascontiguousarray(windows[:, 1:], dtype=np.int64))
    table = torch.as_tensor(np.asarray(byte_table), dtype=torch.float64)
    tally, comparator = Tally(plan.n_scored), Comparator(plan.comparisons)

    def on_main(row: int, logits: np.ndarray) -> None:
        tensor = torch.from_numpy(logits)
        if row < plan.n_scored:
            tally.nats[row], tally.n_bytes[row] = prepare.score_logits(tensor, targets[row], table)
            tally.seen[row] = True
        comparator.offer(row, tensor)

    def on_check(row: int, logits: np.ndarray) -> None:
        comparator.offer(row, torch.from_numpy(logits))

    with ThreadPoolExecutor(2, thread_name_prefix="scorer") as pool:
        futures = [
            pool.submit(_converse, main, plan, plan.main_batches, on_main),
            pool.submit(_converse, check, plan, plan.check_batches, on_check),
        ]
    errors = [f.exception() for f in futures if f.exception() is not None]
    for error in errors:
        if not isinstance(error, ExchangeError):
            raise error
    if errors:
        return ScoreReport(error=errors[0])
    return ScoreReport(metrics=_metrics(plan, tally, comparator))


def _metrics(plan: Plan, tally: Tally, comparator: Comparator) -> dict:
    """The verdict inputs `sandbox.classify_metrics` reads (every row was answered and finite by now)."""
    if not tally.seen.all() or not comparator.complete():
        raise RuntimeError("scorer bug: a planned row was never answered")
    leak, tampered = comparator.worst["leak"], comparator.worst["tampered"]
    return {
        "val_bpb": tally.bpb(),
        "logits_finite": True,
        "probe_ok": leak <= PROBE_TOLERANCE_NATS,
        "probe_max_diff": leak,
        "consistent": tampered <= PROBE_TOLERANCE_NATS,
        "consistency_max_diff": tampered,
        "tolerance": PROBE_TOLERANCE_NATS,
        "rows_main": sum(len(b) for b in plan.main_batches),
        "rows_check": sum(len(b) for b in plan.check_batches),
    }
