"""Edit validation as pure functions: whether an agent's proposed experiment may be saved, and why not.

Each check returns either the planned experiment or a message that says what was wrong and what to do
instead, so a tool never raises into the agent loop. `Ledger.save_edits` builds the context from the
records and applies `plan_edit` to each edit of a batch in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE, STEPS, ExperimentSpec, budget_of, infer_step
from autoresearch.ledger.source import check_source, close_titles, normalize_code, signature, slugify
from autoresearch_types import ExperimentConfig, WorkshopBounds


def now() -> str:
    """A UTC timestamp with microseconds: record creation times sort in order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class EditContext:
    """What an edit is checked against: the base, the bounds, and every experiment known so far."""

    base: ExperimentConfig
    bounds: WorkshopBounds
    baseline_src: str
    config_only_after: int
    titles: dict[str, str] = field(default_factory=dict)  # slug -> title
    sources: dict[str, str] = field(default_factory=dict)  # title -> train.py
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # title -> overrides
    signatures: dict[str, str] = field(default_factory=dict)  # signature -> title
    n_saved: int = 0  # experiments other than the baseline
    unforkable: dict[str, str] = field(default_factory=dict)
    """title -> why no edit may start from it (`lineage.fork_refusal`: rejected, unranked or failed)."""

    def add(self, spec: ExperimentSpec, source: str) -> None:
        """Make a saved (or accepted-in-this-batch) experiment visible to the next edits."""
        self.titles[spec.slug] = spec.title
        self.sources[spec.title] = source
        self.overrides[spec.title] = dict(spec.overrides)
        self.signatures.setdefault(spec.signature, spec.title)
        if spec.title != BASELINE_TITLE:
            self.n_saved += 1


@dataclass
class PlannedEdit:
    """An edit that passed every check: its spec, its source, and what clamping did."""

    spec: ExperimentSpec
    train_py: str
    clamped: dict[str, Any]
    ignored: list[str]


def _text(edit: dict[str, Any], key: str) -> str:
    value = edit.get(key)
    return value.strip() if isinstance(value, str) else ""


def _check_title(edit: dict[str, Any], ctx: EditContext) -> tuple[str, str] | str:
    """(title, slug), or why the title is unusable."""
    title = _text(edit, "title")
    if not title:
        return "a title is required: give each edit a short, unique, descriptive title such as 'Deeper 6L'."
    slug = slugify(title)
    if not slug:
        return f"title {title!r} has no letters or digits; use a descriptive title such as 'Cosine LR schedule'."
    other = ctx.titles.get(slug)
    if other == title:
        return (
            f"an experiment titled {title!r} already exists. Pick a new title, or fork it with "
            f"parent_title={title!r} and a change on top."
        )
    if other is not None:
        return (
            f"title {title!r} collides with the existing experiment {other!r} (both become '{slug}'). "
            "Pick a clearly different title."
        )
    return title, slug


def _resolve_parent(edit: dict[str, Any], ctx: EditContext) -> tuple[str | None, str, dict[str, Any]] | str:
    """(parent title, code to start from, inherited overrides), or why the parent is unknown."""
    parent = _text(edit, "parent_title") or None
    if parent is None:
        return None, ctx.baseline_src, {}
    if parent not in ctx.sources:
        by_slug = ctx.titles.get(slugify(parent))
        if by_slug is not None:
            parent = by_slug
        else:
            near = close_titles(parent, list(ctx.sources))
            hint = f" Close titles: {', '.join(repr(t) for t in near)}." if near else ""
            recent = list(ctx.sources)[-5:]
            return (
                f"parent_title {parent!r} is not in the ledger.{hint} Use an exact existing title "
                f"(recent: {', '.join(repr(t) for t in recent)}), or leave parent_title out to start from the baseline."
            )
    if parent in ctx.unforkable:
        return (
            f"parent_title {parent!r} cannot be forked: {ctx.unforkable[parent]}. Fork the confirmed best "
            "(get_promising_code) or another ranked experiment, or leave parent_title out to start from the baseline."
        )
    return parent, ctx.sources[parent], ctx.overrides[parent]


def _check_overrides(edit: dict[str, Any], ctx: EditContext) -> Any:
    """A `ClampReport`, or why the overrides are unusable."""
    raw = edit.get("overrides")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return (
            f"overrides must be a dict of config values such as {{'n_layer': 4, 'learning_rate': 0.002}}, "
            f"got {type(raw).__name__}. Allowed keys and ranges: {ctx.bounds.describe()}."
        )
    report = ctx.bounds.clamp(raw)
    if report.errors:
        bad = "; ".join(f"{k} {msg}" for k, msg in report.errors.items())
        return f"bad override values: {bad}. Give plain numbers within {ctx.bounds.describe()}."
    return report


def plan_edit(edit: Any, ctx: EditContext, batch_id: str) -> PlannedEdit | str:
    """Check one edit from the agent against everything known; a `PlannedEdit`, or what was wrong and what to do."""
    if not isinstance(edit, dict):
        return f"each edit must be a dict with title, train_py and/or overrides; got {type(edit).__name__}."
    named = _check_title(edit, ctx)
    if isinstance(named, str):
        return named
    title, slug = named
    report = _check_overrides(edit, ctx)
    if isinstance(report, str):
        return report
    parent = _resolve_parent(edit, ctx)
    if isinstance(parent, str):
        return parent
    parent_title, start_src, inherited = parent
    source = edit.get("train_py")
    if source is None:
        source = start_src
    elif not isinstance(source, str):
        return f"train_py must be the full source as a string, got {type(source).__name__}."
    bad_source = check_source(source)
    if bad_source:
        return bad_source
    overrides = {**inherited, **report.values}
    config = ctx.base.with_overrides(overrides)
    inconsistent = config.problem()
    if inconsistent:
        return f"these overrides cannot train: {inconsistent}. Change one of them (allowed ranges: {ctx.bounds.describe()})."
    step = _check_step(edit)
    if step is None:
        return f"step must be one of {', '.join(STEPS)} ({'; '.join(f'{k}: {v}' for k, v in STEPS.items())}); got {edit.get('step')!r}. To end research, call stop_research(reason) instead."
    code = normalize_code(source)
    config_only = code == normalize_code(start_src)
    if code == normalize_code(ctx.baseline_src) and config == ctx.base:
        return (
            "this edit is identical to the baseline (same code, no override that changes the base config). "
            "Change train_py, or give overrides that differ from the base config."
        )
    if config_only and parent_title in (None, BASELINE_TITLE) and ctx.n_saved >= ctx.config_only_after:
        return (
            f"config-only edits of the baseline are closed: {ctx.n_saved} experiments are saved (limit "
            f"{ctx.config_only_after}). Change the training code instead: send train_py with a real change (for "
            "example a warmup + cosine learning_rate(), weight tying, a different activation or norm), with overrides "
            "on top if you like; a config nudge (a small step) on an experiment that changed the code is still open."
        )
    sig = signature(source, config)
    if sig in ctx.signatures:
        original = ctx.signatures[sig]
        return (
            f"duplicate of {original!r}: the same code, config and budget are already in the ledger. "
            f"Use {original!r}'s result, or change something."
        )
    spec = ExperimentSpec(
        title=title,
        slug=slug,
        parent=parent_title,
        change_summary=_text(edit, "change_summary"),
        hypothesis=_text(edit, "hypothesis"),
        expected_effect=_text(edit, "expected_effect"),
        overrides=overrides,
        batch_id=batch_id,
        created_at=now(),
        signature=sig,
        budget=budget_of(ctx.base),
        step=step or infer_step({k for k, v in overrides.items() if inherited.get(k) != v}, not config_only),
    )
    return PlannedEdit(spec, source, report.clamped, report.ignored)


def _check_step(edit: dict[str, Any]) -> str | None:
    """The edit's declared step type ("" when it gave none, to be inferred), or None when it is not a known one."""
    raw = edit.get("step")
    if raw is None or raw == "":
        return ""
    step = raw.strip().lower() if isinstance(raw, str) else None
    return step if step in STEPS else None


# ---------------------------------------------------------------- the ledger
