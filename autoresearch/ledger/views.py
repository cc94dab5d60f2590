"""Pure functions behind the ledger: the spec record, code normalisation, signatures and derived views.

Nothing here touches Flyte or the `MemoryStore`: `ledger.py` reads the records and hands them in, so
every decision and every view (leaderboard, history table, lineage, diff) is testable on plain data.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoresearch.lab.pruning import PruneRule, thresholds
from autoresearch.ledger.verdicts import Arrival, Decision, GateRule, Judgement, judge
from autoresearch.sandbox.classify import preflight
from autoresearch_types import RUN_KEYS, ExperimentConfig, ExperimentResult, trusted_bpb

BASELINE_TITLE = "baseline"

STEPS = {
    "small": "a nudge to one knob (one config value, or a one-line tweak)",
    "medium": "one component changed (the schedule, the init, a norm, the activation, the model's size)",
    "radical": "the architecture or the optimiser changed",
}
"""The step types every saved edit carries; the agent ends research with `stop_research(reason)` instead."""
CAPACITY_KEYS = frozenset({"n_layer", "n_embd", "n_head", "seq_len"})
"""Config keys that change the model's size: moving them is at least a medium step."""


def infer_step(changed_keys: set[str], code_changed: bool) -> str:
    """The step type of an edit that did not say: a one-knob config nudge is small, anything more is medium
    (radical is never inferred: only the author knows the architecture or optimiser was changed)."""
    if code_changed or len(changed_keys) > 1 or changed_keys & CAPACITY_KEYS:
        return "medium"
    return "small"


"""The experiment every ledger starts with: the repository's `train.py` under the base config."""

BUDGET_KEYS = tuple(k for k in RUN_KEYS if k != "seed")
"""The base-config fields a spec pins at creation, so a resumed run with another budget reproduces it."""

RANKED_LABELS = ("baseline", "confirmed", "accepted", "unconfirmed", "within_noise", "regression", "unjudged")
"""Verdict labels whose experiments are ranked (they have a comparable val_bpb); see `verdicts.LABELS`."""


@dataclass
class ExperimentSpec:
    """One planned experiment as `experiments/<slug>/spec.json` stores it (its code lives beside it).

    `overrides` are already clamped and include those inherited from `parent`; `budget` pins the
    base budget the experiment was planned (and signed) under, so `effective_config(base)` gives the
    same config even if a later run of the ledger uses another budget.
    """

    title: str
    slug: str
    parent: str | None = None
    change_summary: str = ""
    hypothesis: str = ""
    expected_effect: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    batch_id: str = ""
    created_at: str = ""
    signature: str = ""
    budget: dict[str, Any] = field(default_factory=dict)
    step: str = ""
    """`small`, `medium` or `radical` (see `STEPS`); "" for the baseline and older records."""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSpec:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def effective_config(self, base: ExperimentConfig) -> ExperimentConfig:
        """The config this experiment trains with: `base`, then the pinned budget, then the overrides."""
        return base.with_overrides({**self.budget, **self.overrides})


@dataclass
class SeedRun:
    """One finished run of an experiment on one seed, as `experiments/<slug>/runs/seed-<n>.json` stores it.

    `seq` is its arrival number across the whole ledger; `role` is `screen` (its first run), `replicate`
    (a baseline seed) or `confirm` (a fresh seed re-run of a candidate).
    """

    seed: int
    seq: int
    role: str
    result: ExperimentResult
    recorded_at: str = ""

    @property
    def val_bpb(self) -> float | None:
        """The trusted metric of a successful run with a finite value, else None."""
        return trusted_bpb(self.result.outcome, self.result.val_bpb)


def seed_run(payload: dict[str, Any]) -> SeedRun:
    """A `SeedRun` from its stored JSON."""
    result = ExperimentResult.from_dict(payload["result"])
    seed = int(payload.get("seed", result.seed))
    return SeedRun(
        seed, int(payload["seq"]), str(payload.get("role", "screen")), result, payload.get("recorded_at", "")
    )


@dataclass
class ExperimentRecord:
    """Everything the ledger holds about one experiment: spec, effective source, and its runs (oldest first)."""

    spec: ExperimentSpec
    train_py: str
    runs: list[SeedRun] = field(default_factory=list)
    legacy: ExperimentResult | None = None
    """A result from before seeds and token budgets were recorded: shown, never compared."""

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def screen(self) -> SeedRun | None:
        """Its first run (the one the gate screens)."""
        return self.runs[0] if self.runs else None

    @property
    def result(self) -> ExperimentResult | None:
        """The first run's result (None before any run finished)."""
        return self.runs[0].result if self.runs else None

    @property
    def seq(self) -> int | None:
        """When its first run arrived (its place in the run order)."""
        return self.runs[0].seq if self.runs else None

    @property
    def recorded_at(self) -> str:
        return self.runs[0].recorded_at if self.runs else ""

    @property
    def val_bpb(self) -> float | None:
        """The first run's trusted val_bpb (None unless it succeeded)."""
        return self.runs[0].val_bpb if self.runs else None

    @property
    def values(self) -> list[float]:
        """The val_bpb of every successful seed."""
        return [r.val_bpb for r in self.runs if r.val_bpb is not None]

    def run_for(self, seed: int) -> SeedRun | None:
        """Its run on `seed`, if one finished."""
        return next((r for r in self.runs if r.seed == seed), None)


@dataclass
class LeaderboardRow:
    """One leaderboard line: rank by mean val_bpb over seeds (None if not ranked), its spread, and its verdict."""

    rank: int | None
    title: str
    parent: str | None
    val_bpb: float | None
    """Mean over successful seeds (the first run's value for unranked experiments that were scored)."""
    se: float | None
    n_seeds: int
    delta_vs_best: float | None
    delta_vs_baseline: float | None
    label: str
    verdict: str
    gain: float | None
    """The gate's measured gain over the incumbent it was judged against (positive is better)."""
    incumbent: bool
    outcome: str | None
    seq: int | None
    change_summary: str
    overrides: dict[str, Any]
    step: str = ""
    decided_by: str = "rule"
    """Who settled the verdict: `rule` (the gate), `judge` (a borderline case) or `human`."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the key's fixed comparison


def settings_record(base: ExperimentConfig, rule: GateRule, dataset: dict[str, Any], created_at: str) -> dict[str, Any]:
    """What `settings.json` stores: the base config (with its budget), the gate rule and the data."""
    return {
        "base_config": base.to_dict(),
        "gate": dataclasses.asdict(rule),
        "dataset": dataset,
        "created_at": created_at,
    }


def settle_settings(
    stored: dict[str, Any] | None,
    base: ExperimentConfig,
    rule: GateRule,
    dataset: dict[str, Any],
    explicit: set[str],
) -> tuple[ExperimentConfig, GateRule, dict[str, Any]]:
    """The key's settings: `stored` if the key has them, else the requested ones (a new key).

    A resumed key keeps its own budget, base config, data and gate rule, so every experiment in it is compared
    at the same budget. A setting the user gave explicitly (`explicit` names config fields, `replicates`,
    `dataset`, `num_shards`) that differs from the stored one raises ValueError naming both values.
    """
    if not stored:
        return base, rule, dataset
    kept = ExperimentConfig.from_dict(stored.get("base_config") or {})
    kept_rule = GateRule(**{k: v for k, v in (stored.get("gate") or {}).items() if k in GateRule.__dataclass_fields__})
    kept_data = dict(stored.get("dataset") or {})
    wanted = {**base.to_dict(), **dataclasses.asdict(rule), **dataset}
    have = {**kept.to_dict(), **dataclasses.asdict(kept_rule), **kept_data}
    clashes = [
        f"{k}: this key uses {have[k]!r}, you asked for {wanted[k]!r}"
        for k in sorted(explicit)
        if k in have and wanted.get(k) != have[k]
    ]
    if clashes:
        raise ValueError(
            "this memory key was created with other settings, and every experiment in a key is compared at the same "
            "budget: " + "; ".join(clashes) + ". Resume without those flags (the key's own settings apply), or start a "
            "new key."
        )
    return kept, kept_rule, kept_data


# ---------------------------------------------------------------- names and code


def budget_of(config: ExperimentConfig) -> dict[str, Any]:
    """The budget fields of a config (see `BUDGET_KEYS`)."""
    return {k: getattr(config, k) for k in BUDGET_KEYS}


def slugify(title: str) -> str:
    """A path-safe, case-insensitive name: 'Deeper 6L' and 'deeper-6l' both give 'deeper-6l'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop module, class and function docstrings so editing prose is not a code change."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def normalize_code(source: str) -> str:
    """The code's AST without comments, whitespace or docstrings (raises SyntaxError if it does not parse)."""
    return ast.dump(_strip_docstrings(ast.parse(source)))


def check_source(source: str) -> str | None:
    """None if `source` is runnable by the harness (the sandbox's `preflight` rule), else what is wrong and what
    to do about it, phrased for the agent."""
    problem = preflight(source)
    if problem is None:
        return None
    if "SyntaxError" in problem:
        return f"train_py does not parse ({problem}). Send the full corrected file."
    return (
        f"train_py cannot run: {problem}. It must define run_training(config, data_dir) and build_model(config) "
        "at top level (the harness calls both). Send the whole file, not a fragment; or leave train_py out to "
        "reuse the parent's code."
    )


def signature(source: str, config: ExperimentConfig) -> str:
    """The dedup key: normalised code plus the effective config (overrides and budget included)."""
    payload = json.dumps({"code": normalize_code(source), "config": config.to_dict()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def close_titles(name: str, titles: list[str], n: int = 5) -> list[str]:
    """Titles that look like `name` (by text and by slug), for 'did you mean' messages."""
    by_slug = {slugify(t): t for t in titles}
    hits = difflib.get_close_matches(name, titles, n=n, cutoff=0.5)
    hits += [by_slug[s] for s in difflib.get_close_matches(slugify(name), list(by_slug), n=n, cutoff=0.5)]
    return list(dict.fromkeys(hits))[:n]


def unified_diff(a_title: str, a_src: str, b_title: str, b_src: str, context: int = 3) -> str:
    """A unified diff of two sources, labelled by experiment title."""
    lines = difflib.unified_diff(
        a_src.splitlines(keepends=True),
        b_src.splitlines(keepends=True),
        f"{a_title}/train.py",
        f"{b_title}/train.py",
        n=context,
    )
    return "".join(lines)


# ---------------------------------------------------------------- derived views


def arrival_order(items: list[Any], seq: Callable[[Any], float | None]) -> list[Any]:
    """The one run-order rule: items with a result sequence number in arrival order, then the rest; ties and the
    rest keep the order given (creation order)."""
    ran = sorted((x for x in items if seq(x) is not None), key=lambda x: seq(x) or 0)
    return ran + [x for x in items if seq(x) is None]


def run_order(records: list[ExperimentRecord]) -> list[ExperimentRecord]:
    """Experiments with a result in the order their first runs arrived, then those not run in creation order."""
    return arrival_order(sorted(records, key=lambda r: (r.spec.created_at, r.title)), lambda r: r.seq)


def judgement(
    records: list[ExperimentRecord],
    rule: GateRule,
    base: ExperimentConfig | None = None,
    decisions: dict[str, Decision] | None = None,
) -> Judgement:
    """The gate's verdicts for the ledger's records under the key's base config, with the judge's and humans'
    decisions applied (see `verdicts.judge`)."""
    base = base or ExperimentConfig()
    arrivals = []
    for rec in records:
        params = rec.spec.effective_config(base).nominal_params
        for run in rec.runs:
            work = float(run.result.tokens) * params
            arrivals.append(
                Arrival(run.seq, rec.title, run.seed, run.result.outcome, run.val_bpb, run.result.train_cpu_s, work)
            )
    return judge(arrivals, [r.title for r in records], rule, base.seed, decisions)


LEGACY_NOTE = "ran before seeds and token budgets were recorded: shown, not compared"


def leaderboard(records: list[ExperimentRecord], verdicts: Judgement) -> list[LeaderboardRow]:
    """Ranked experiments by mean val_bpb over seeds (lower is better), then scored-but-unranked, failed, not run.

    `delta_vs_best` is against the incumbent (the confirmed best, or the baseline before any confirmed gain).
    """
    means = {r.title: verdicts.verdicts[r.title].mean for r in records}
    best = means.get(verdicts.incumbent) if verdicts.incumbent else None
    baseline = means.get(BASELINE_TITLE)
    order = {r.title: i for i, r in enumerate(run_order(records))}

    def ranked(rec: ExperimentRecord) -> bool:
        return verdicts.verdicts[rec.title].label in RANKED_LABELS and means[rec.title] is not None

    def key(rec: ExperimentRecord) -> tuple:
        if ranked(rec):
            return (0, means[rec.title], order[rec.title])
        return (1 if rec.runs or rec.legacy else 2, 0.0, order[rec.title])

    rows = []
    for i, rec in enumerate(sorted(records, key=key)):
        verdict = verdicts.verdicts[rec.title]
        shown = rec.result or (None if rec.runs else rec.legacy)
        mean = means[rec.title] if ranked(rec) else (shown.val_bpb if shown else None)
        legacy = not rec.runs and rec.legacy is not None
        rows.append(
            LeaderboardRow(
                rank=i + 1 if ranked(rec) else None,
                title=rec.title,
                parent=rec.spec.parent,
                val_bpb=mean,
                se=verdict.se,
                n_seeds=verdict.n,
                delta_vs_best=None if mean is None or best is None else mean - best,
                delta_vs_baseline=None if mean is None or baseline is None else mean - baseline,
                label="legacy" if legacy else verdict.label,
                verdict=LEGACY_NOTE if legacy else verdict.reason,
                gain=None if legacy else verdict.gain,
                incumbent=rec.title == verdicts.incumbent,
                outcome=shown.outcome if shown else None,
                seq=rec.seq,
                change_summary=rec.spec.change_summary,
                overrides=dict(rec.spec.overrides),
                step=rec.spec.step,
                decided_by=verdict.by,
            )
        )
    return rows


def prune_limits(records: list[ExperimentRecord], parent: str | None, rule: PruneRule) -> list[tuple[float, float]]:
    """The pruning thresholds for a new experiment forked from `parent`, from the finished runs' learning curves
    (see `pruning.thresholds`): every successful run's for `median`, the parent's for `parent`."""
    if not rule.on:
        return []

    def curves(recs: list[ExperimentRecord]) -> list[list[tuple[float, float]]]:
        return [[(f, loss) for f, loss in run.result.curve] for r in recs for run in r.runs if run.val_bpb is not None]

    replicates = curves([r for r in records if r.title == BASELINE_TITLE])
    if rule.mode == "parent":
        references = curves([r for r in records if r.title == (parent or BASELINE_TITLE)])
    else:
        references = curves(records)
    return thresholds(rule, references, replicates)


def fmt_mean(mean: float | None, se: float | None, n: int) -> str:
    """`2.5421 ± 0.0123 (3 seeds)`, or just the value for one seed."""
    if mean is None:
        return "-"
    if se is None or n < 2:
        return f"{mean:.4f} (1 seed)" if n == 1 else f"{mean:.4f}"
    return f"{mean:.4f} ± {se:.4f} ({n} seeds)"


def best_line(rows: list[dict[str, Any]], sigma: float | None = None) -> str | None:
    """The verdict in one sentence, from leaderboard row dicts: the confirmed best and its gain, or that nothing
    beat seed noise. None before the baseline succeeded."""
    best = next((r for r in rows if r.get("incumbent")), None)
    if best is None:
        return None
    noise = f"sigma = {sigma:.4f}" if sigma is not None else "sigma not measured"
    shown = fmt_mean(best["val_bpb"], best.get("se"), best.get("n_seeds", 0))
    if best["title"] == BASELINE_TITLE:
        return f"No edit beat seed noise ({noise}); the baseline stays best at val_bpb {shown}"
    text = f"Best: {best['title']!r} at val_bpb {shown}, confirmed against seed noise ({noise})"
    base = next((r for r in rows if r.get("title") == BASELINE_TITLE), None)
    if base and base.get("val_bpb"):
        gain = base["val_bpb"] - best["val_bpb"]
        text += f", {gain:+.4f} ({gain / base['val_bpb'] * 100:.2f}%) better than the baseline's {base['val_bpb']:.4f}"
    return text


def _cell(text: Any, width: int = 60) -> str:
    """One markdown table cell: single line, pipes escaped, long text cut."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= width else s[: width - 1] + "…"


def _fmt(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{x:+.4f}" if signed else f"{x:.4f}"


def history_table(records: list[ExperimentRecord], rows: list[LeaderboardRow], last_n: int = 20) -> str:
    """The research history for the directive: a markdown table of the last `last_n` experiments in run order."""
    if not records:
        return "No experiments yet."
    by_title = {r.title: r for r in rows}
    ordered = run_order(records)
    shown = ordered[-last_n:] if last_n > 0 else []
    out = [
        "| # | title | parent | step | change | overrides | val_bpb (mean ± se, seeds) | Δ best | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rec in shown:
        row = by_title[rec.title]
        label = row.label if row.label != "failed" else f"failed ({row.outcome})"
        label += f" ({row.decided_by})" if row.decided_by != "rule" else ""
        overrides = ", ".join(f"{k}={v}" for k, v in sorted(rec.spec.overrides.items())) or "-"
        out.append(
            f"| {rec.seq if rec.seq is not None else '-'} | {_cell(rec.title, 40)} | {_cell(rec.spec.parent or '-', 30)} "
            f"| {rec.spec.step or '-'} | {_cell(rec.spec.change_summary or '-')} | {_cell(overrides, 50)} "
            f"| {fmt_mean(row.val_bpb, row.se, row.n_seeds)} | {_fmt(row.delta_vs_best, signed=True)} | {label} |"
        )
    out.append("\n(Δ best = mean val_bpb minus the incumbent's; verdicts: see the gate rule above.)")
    omitted = len(ordered) - len(shown)
    if omitted:
        out.append(f"\n({omitted} earlier experiment{'s' if omitted != 1 else ''} omitted; {len(ordered)} in total.)")
    return "\n".join(out)


def lineage(records: list[ExperimentRecord], rows: list[LeaderboardRow]) -> list[dict[str, Any]]:
    """The fork tree: roots (no parent, or a parent the ledger does not know) with nested children."""
    by_row = {r.title: r for r in rows}
    by_title = {r.title: r for r in records}
    children: dict[str | None, list[ExperimentRecord]] = {}
    for rec in run_order(records):
        parent = rec.spec.parent if rec.spec.parent in by_title else None
        children.setdefault(parent, []).append(rec)

    def node(rec: ExperimentRecord) -> dict[str, Any]:
        row = by_row[rec.title]
        return {
            "title": rec.title,
            "val_bpb": row.val_bpb if row.rank is not None else None,
            "label": row.label,
            "step": rec.spec.step,
            "incumbent": row.incumbent,
            "outcome": rec.result.outcome if rec.result else None,
            "children": [node(c) for c in children.get(rec.title, [])],
        }

    return [node(r) for r in children.get(None, [])]


def lineage_text(tree: list[dict[str, Any]]) -> str:
    """The fork tree as indented text lines, each with its val_bpb or outcome."""
    lines: list[str] = []

    def walk(nodes: list[dict[str, Any]], depth: int) -> None:
        for n in nodes:
            metric = _fmt(n["val_bpb"]) if n["val_bpb"] is not None else (n["outcome"] or "not run")
            mark = " *best*" if n.get("incumbent") else ""
            step = f" ({n['step']})" if n.get("step") else ""
            lines.append(f"{'  ' * depth}- {n['title']}{step}: {metric} [{n.get('label') or '-'}]{mark}")
            walk(n["children"], depth + 1)

    walk(tree, 0)
    return "\n".join(lines)
