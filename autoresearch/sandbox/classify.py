"""Pure decisions about one experiment: pre-flight of the edited source, outcome classification, typed errors.

No process is started and nothing is read here: `experiment.py` runs the phases and the scorer, then
calls these with what it measured. `sandbox` re-exports every name, so callers keep using
`sandbox.preflight`, `sandbox.classify_exit`, `sandbox.raise_for_outcome` and the rest.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from autoresearch_types import ExperimentResult

OOM_MARKERS = (
    "MemoryError",
    "Cannot allocate memory",
    "can't allocate memory",
    "DefaultCPUAllocator",
    "std::bad_alloc",
    "CUDA out of memory",
    "OutOfMemoryError",
    "Thread creation failed",
    "can't start new thread",
    "failed to map segment from shared object",
)
"""`failed to map segment` is how a shared library fails to load once `RLIMIT_AS` is reached."""
KILL_CODES = (137, -9)
CPU_CAP_CODES = (152, -24)
BPB_FLOOR = 0.1
"""Bits per byte below which no model of this size is believable (the best compressors reach ~0.9)."""
STDERR_TAIL_CHARS = 3000


# ---------------------------------------------------------------- pre-flight


def _signature_problem(node: ast.FunctionDef | ast.AsyncFunctionDef, required: int) -> str | None:
    """Why `node` cannot be called with `required` positional arguments, or None."""
    if isinstance(node, ast.AsyncFunctionDef):
        return f"line {node.lineno}: {node.name} must be a plain def, not async"
    args = node.args
    positional = len(args.posonlyargs) + len(args.args)
    no_default = positional - len(args.defaults)
    kw_required = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if (positional < required and args.vararg is None) or no_default > required or kw_required:
        return f"line {node.lineno}: {node.name} must accept exactly {required} positional argument(s)"
    return None


ENTRY_POINTS = {"build_model": ("config",), "run_training": ("config", "data_dir")}


def preflight(source: str) -> str | None:
    """None if `source` parses and defines the entry points with usable signatures; else why not.

    The last top-level definition of each name wins, as it does at import time.
    """
    try:
        tree = ast.parse(source, filename="train.py")
    except SyntaxError as exc:
        return f"line {exc.lineno}: SyntaxError: {exc.msg}"
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in ENTRY_POINTS:
            found[node.name] = node
    for name, params in ENTRY_POINTS.items():
        if name not in found:
            return f"line 0: train.py defines no top-level `def {name}({', '.join(params)})`"
        problem = _signature_problem(found[name], len(params))
        if problem:
            return problem
    return None


# ---------------------------------------------------------------- classification (pure)


def stderr_tail(stderr: str, limit: int = STDERR_TAIL_CHARS) -> str:
    """The last `limit` characters of stderr."""
    return stderr[-limit:]


def has_oom_marker(stderr: str) -> bool:
    """True when stderr shows an allocation failure under rlimits."""
    return any(marker in stderr for marker in OOM_MARKERS)


def last_error_line(stderr: str) -> str:
    """The last non-empty stderr line (usually the exception), for a one-line message."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def classify_exit(returncode: int, stderr: str, hit_deadline: bool, oom_killed: bool = False) -> tuple[str, str] | None:
    """(outcome, message) for a phase that failed, or None when it exited cleanly.

    A kill at the deadline is a timeout; a kill before it is the memory limit (kernel/cgroup OOM). `oom_killed`:
    the run's cgroup counted an OOM kill at its memory limit, which settles a failure as `oom`.
    """
    if hit_deadline:
        return "timeout", "killed at the wall-clock deadline"
    if returncode == 0:
        return None
    if oom_killed:
        return "oom", f"killed at the memory limit of its cgroup (exit {returncode})"
    if has_oom_marker(stderr):
        return "oom", f"out of memory: {last_error_line(stderr)}"
    if returncode in KILL_CODES:
        return "oom", f"killed (exit {returncode}) before the deadline: memory limit"
    if returncode in CPU_CAP_CODES:
        return "crash", f"exceeded the CPU-seconds cap (exit {returncode}): more threads than CPUs granted?"
    return "crash", f"exit {returncode}: {last_error_line(stderr) or 'no stderr'}"


def classify_metrics(metrics: dict[str, Any], floor: float = BPB_FLOOR) -> tuple[str, str]:
    """(outcome, message) from the trusted scorer's metrics: success, leak, tampered or implausible.

    A missing verdict counts against the run: `probe_ok` and `consistent` must be present and true.
    An inconsistent graph (`tampered`) comes first: if the same window gives two answers, no probe
    comparison means anything.
    """
    bpb = metrics.get("val_bpb")
    finite = isinstance(bpb, (int, float)) and math.isfinite(bpb)
    if not finite or not metrics.get("logits_finite", False):
        return "implausible", f"non-finite result: val_bpb={bpb!r}, finite logits={metrics.get('logits_finite')}"
    if metrics.get("consistent") is not True:
        diff = metrics.get("consistency_max_diff")
        return "tampered", (
            f"the exported graph gave the same window different logits on a second evaluation (max difference "
            f"{diff}): it is not a pure function"
        )
    if metrics.get("probe_ok") is not True:
        return "leak", (
            f"causality probe failed: replacing only the tokens after a cut changed the logits at or before it "
            f"in {metrics.get('probe_failures')} of {metrics.get('probes')} windows (max difference "
            f"{metrics.get('probe_max_diff')}; an honest causal graph gives exactly 0): forward() looks ahead"
        )
    if bpb < floor:
        return "implausible", f"val_bpb={bpb:.4f} is below the physical floor {floor}"
    return "success", f"val_bpb={bpb:.4f}"


# ---------------------------------------------------------------- errors at the task boundary


RESULT_TAG = "RESULT_JSON: "


class ExperimentFailed(RuntimeError):
    """A terminal, non-OOM failure; the message carries the full result as JSON after `RESULT_TAG`."""

    def __init__(self, result: ExperimentResult):
        self.outcome = result.outcome
        self.result_json = json.dumps(result.to_dict())
        super().__init__(f"{result.outcome}: {result.message}\n{RESULT_TAG}{self.result_json}")


class ExperimentTimeout(ExperimentFailed):
    """The run passed its wall-clock deadline."""


class ExperimentCrash(ExperimentFailed):
    """The edited code raised or exited non-zero."""


class ExperimentInvalid(ExperimentFailed):
    """Pre-flight rejected the source: nothing ran."""


class ExperimentLeak(ExperimentFailed):
    """The model's earlier logits depend on future tokens."""


class ExperimentImplausible(ExperimentFailed):
    """A non-finite metric, or one below the physical floor."""


class ExperimentTruncated(ExperimentFailed):
    """Scored, but stopped at the time cap before its token budget: not comparable, and not cached."""


class ExperimentTampered(ExperimentFailed):
    """The model's answers were inconsistent in a way only tampering explains."""


class ExperimentOverBudget(ExperimentFailed):
    """Scored, but with far more compute than its config predicts."""


class ExperimentUnexportable(ExperimentFailed):
    """Trained, but its forward pass is not a pure graph the scorer accepts (the message says what to change)."""


class ExperimentPruned(ExperimentFailed):
    """Stopped early: its learning curve was clearly worse than the finished runs' (not scored, not cached)."""


FAILURES: dict[str, type[ExperimentFailed]] = {
    "timeout": ExperimentTimeout,
    "crash": ExperimentCrash,
    "invalid": ExperimentInvalid,
    "leak": ExperimentLeak,
    "implausible": ExperimentImplausible,
    "truncated": ExperimentTruncated,
    "tampered": ExperimentTampered,
    "over_budget": ExperimentOverBudget,
    "pruned": ExperimentPruned,
    "unexportable": ExperimentUnexportable,
}


def raise_for_outcome(result: ExperimentResult) -> ExperimentResult:
    """Return a success; raise `flyte.errors.OOMError` for oom, a typed `ExperimentFailed` otherwise.

    Raising keeps failures out of Flyte's cache; a cluster reports them as `RuntimeUserError`
    with `code` set to the class name, and `result_from_error` recovers the result.
    """
    if result.outcome == "success":
        return result
    if result.outcome == "oom":
        import flyte.errors

        raise flyte.errors.OOMError("OOMKilled", f"{result.message}\n{RESULT_TAG}{json.dumps(result.to_dict())}")
    raise FAILURES.get(result.outcome, ExperimentFailed)(result)


def result_from_error(exc: BaseException) -> ExperimentResult | None:
    """The `ExperimentResult` carried in an error raised by `raise_for_outcome`, if any."""
    text = str(exc)
    if RESULT_TAG not in text:
        return None
    try:
        return ExperimentResult.from_dict(json.loads(text.split(RESULT_TAG, 1)[1].splitlines()[0]))
    except (ValueError, TypeError):
        return None
