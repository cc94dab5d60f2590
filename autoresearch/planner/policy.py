"""The built-in planner's search policy: pure functions from the research history to the next batch.

Batch 1 sweeps one config axis per experiment around the baseline (the learning rate both ways first, then
the other axes up, then down). Later batches fork the confirmed best with one or two moves per experiment: a
recipe from `recipes.py`, optionally paired with another move that helped (a recipe, or one more step along a
config axis that helped, or the other direction of one that hurt). Moves are ranked by a prior plus the credit
earned from the gate's verdicts (see `verdicts.py`): a confirmed gain or a regression counts its measured
difference, a result within seed noise counts zero, and an unconfirmed or truncated one counts nothing yet. A
move already tried alone on a parent, or one that failed there, is not repeated on it. After `patience`
batches without a confirmed gain, batches switch to recipes never tried, in an order drawn from the seed.
Everything is deterministic for a seed and the history.
"""

from __future__ import annotations

import hashlib
import random
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE, infer_step
from autoresearch.planner.recipes import BY_NAME, RECIPES, Recipe
from autoresearch_types import trusted_bpb

AXES = ("learning_rate", "n_layer", "n_embd", "batch_size", "dropout")
"""The config knobs the sweep and random search move, most influential first."""

LABELS = {"learning_rate": "LR {v:g}", "n_layer": "Depth {v}L", "n_embd": "Width {v}", "batch_size": "Batch {v}"}
UP_WHY = {
    "learning_rate": "a short run may be too cautious: a larger step size learns faster per step",
    "n_layer": "more depth adds capacity at a modest cost per step",
    "n_embd": "a wider residual stream learns more per step",
    "batch_size": "a bigger batch sees more tokens per step and gives less noisy gradients",
    "dropout": "dropout regularises if the small corpus overfits",
}
DOWN_WHY = {
    "learning_rate": "the base LR may be too high for a run without warmup: a smaller step is more stable",
    "n_layer": "a shallower model trains faster per step in a short budget",
    "n_embd": "a narrower model may fit a short budget better",
    "batch_size": "a smaller batch takes noisier but cheaper steps",
    "dropout": "without dropout every unit learns at every step",
}
EVIDENCE_WEIGHT = 0.5
FAMILY_WEIGHT = 0.15
FAIL_PENALTY = 1.0


SCHEDULING = ("async", "batch")
"""How the built-in planner uses the slots."""


@dataclass(frozen=True)
class Policy:
    """The planner's knobs: seed for tie-breaks and exploration order, and when to switch to untried recipes."""

    seed: int = 0
    patience: int = 8
    """Experiments settled without a confirmed gain before new ones switch to recipes never tried."""
    scheduling: str = "async"
    """`async`: keep every slot busy (submit into each freed slot); `batch`: plan, run and wait batch by batch."""


@dataclass(frozen=True)
class Move:
    """One change: a recipe, or one step of a config axis to `value` (`direction` up or down)."""

    kind: str
    name: str
    value: Any = None
    direction: str = ""

    @property
    def tag(self) -> str:
        """How the move is tagged in change summaries: `[relu2]`, `[learning_rate:down]`."""
        return self.name if self.kind == "recipe" else f"{self.name}:{self.direction}"

    @property
    def label(self) -> str:
        """A short human label for titles."""
        if self.kind == "recipe":
            return self.name
        return LABELS.get(self.name, self.name.replace("_", " ").capitalize() + " {v:g}").format(v=self.value)

    @property
    def recipe(self) -> Recipe | None:
        """The recipe this move applies, or None for a config step."""
        return BY_NAME.get(self.name) if self.kind == "recipe" else None

    @property
    def step(self) -> str:
        """Its step type: the recipe's; a config step is small, or medium when it changes the model's size."""
        return self.recipe.step if self.recipe else infer_step({self.name}, False)


STEP_ORDER = ("small", "medium", "radical")


def step_of(moves: list[Move]) -> str:
    """An edit's step type: the largest of its moves'."""
    return max((m.step for m in moves), key=STEP_ORDER.index, default="small")


def preferred_step(stale: int, patience: int) -> str:
    """Which step type to try first: small while the line keeps paying off (a confirmed gain within the last
    half of `patience` experiments), medium after that, radical once patience has run out."""
    if stale >= patience:
        return "radical"
    return "small" if stale < max(1, patience // 2) else "medium"


def step_distance(step: str, want: str) -> int:
    """How far a step type is from the preferred one (orders candidates; ties keep their score order)."""
    return abs(STEP_ORDER.index(step) - STEP_ORDER.index(want))


@dataclass
class Finished:
    """One experiment from the history: who it forked, its tags, how it did and the gate's verdict."""

    title: str
    parent: str | None
    tags: tuple[str, ...]
    batch_id: str
    val_bpb: float | None
    ran: bool
    verdict: str = ""
    gain: float | None = None
    """The incumbent's mean minus this experiment's (positive is better), as the gate measured it."""


@dataclass
class Evidence:
    """What the history says: each tag's gains (parent minus child val_bpb), failures, and what was tried where."""

    gains: dict[str, list[float]] = field(default_factory=dict)
    """Per tag: the gate's measured gains (0 for within-noise results)."""
    fails: dict[str, float] = field(default_factory=dict)
    blocked: set[tuple[str, str]] = field(default_factory=set)
    """(parent, tag) pairs not to try again: tried alone there, or failed there."""
    combos: set[tuple[str, frozenset[str]]] = field(default_factory=set)
    """(parent, tags) of every experiment proposed or run: never proposed again."""
    tried_tags: set[str] = field(default_factory=set)
    scale: float = 0.01
    """The typical effect (median |gain| of judged results), the unit of credit."""

    def credit(self, tag: str) -> float | None:
        """Mean gain of experiments with this tag in units of the typical effect, or None if never measured."""
        gains = self.gains.get(tag)
        return max(-3.0, min(3.0, statistics.fmean(gains) / self.scale)) if gains else None


# ---------------------------------------------------------------- reading the history


TAG = re.compile(r"\[([A-Za-z0-9_.:\-]+)\]")


def tags_of(summary: str | None) -> tuple[str, ...]:
    """The move tags in a change summary (recipe names and `axis:direction`), in order."""
    known = []
    for tag in TAG.findall(summary or ""):
        key, _, direction = tag.partition(":")
        if tag in BY_NAME or (key in AXES and direction in ("up", "down")):
            known.append(tag)
    return tuple(known)


def tag_label(tag: str) -> str:
    """A tag in words: recipe names as they are, `n_embd:down` as "lower n_embd"."""
    key, _, direction = tag.partition(":")
    return f"{'raise' if direction == 'up' else 'lower'} {key}" if direction else tag


JUDGED = ("confirmed", "regression", "within_noise")
"""Verdicts that say something about a move; within-noise counts as zero gain."""
FAILED = ("failed",)
SOFT_FAILED = ("pruned",)
"""A pruned experiment was clearly losing: it counts against its moves, more gently than a crash."""


def finished(history: list[dict[str, Any]]) -> list[Finished]:
    """The history's experiments with a result, as `Finished` records (failures have val_bpb None)."""
    out = []
    for h in history:
        result = h.get("result") or {}
        standing = h.get("standing") or {}
        bpb = trusted_bpb(result.get("outcome"), result.get("val_bpb"))
        parent = h.get("parent") or (None if h.get("title") == BASELINE_TITLE else BASELINE_TITLE)
        tags = tags_of(h.get("change_summary"))
        verdict = str(standing.get("verdict") or "")
        gain = _gain(verdict, standing)
        out.append(Finished(h["title"], parent, tags, h.get("batch_id") or "", bpb, bool(result), verdict, gain))
    return out


def _gain(verdict: str, standing: dict[str, Any]) -> float | None:
    """What a verdict says a move gained (positive is better): its measured gain if confirmed or a regression,
    0 within noise, None when the gate has not decided."""
    if verdict == "within_noise":
        return 0.0
    gain = standing.get("gain")
    if verdict in ("confirmed", "regression") and isinstance(gain, (int, float)):
        return float(gain)
    return None


def evidence(history: list[dict[str, Any]], proposals: list[dict[str, Any]]) -> Evidence:
    """Fold the gate's verdicts and the planner's own proposals (saved, rejected or run) into per-tag evidence."""
    ev = Evidence()
    runs = finished(history)
    deltas = []
    for f in runs:
        if not f.ran or not f.tags:
            continue
        for tag in f.tags:
            if f.verdict in FAILED or (f.val_bpb is None and not f.verdict and f.ran):
                ev.fails[tag] = ev.fails.get(tag, 0) + 1
                ev.blocked.add((f.parent or "", tag))
            elif f.verdict in SOFT_FAILED:
                ev.fails[tag] = ev.fails.get(tag, 0) + 0.5
                ev.blocked.add((f.parent or "", tag))
            elif f.verdict in JUDGED and f.gain is not None:
                ev.gains.setdefault(tag, []).append(f.gain)
        if f.verdict in JUDGED and f.gain:
            deltas.append(abs(f.gain))
    for p in proposals + [{"parent": f.parent, "tags": list(f.tags)} for f in runs]:
        tags = frozenset(p.get("tags") or ())
        if not tags:
            continue
        parent = p.get("parent") or BASELINE_TITLE
        ev.combos.add((parent, tags))
        ev.tried_tags |= tags
        if len(tags) == 1 or p.get("error"):
            ev.blocked |= {(parent, t) for t in tags}
    ev.scale = max(1e-3, statistics.median(deltas)) if deltas else 0.01
    return ev


SETTLED = (*JUDGED, *FAILED, "pruned", "truncated", "over_budget")
"""Verdicts that are final: the experiment said what it will say."""


def stale_experiments(history: list[dict[str, Any]]) -> int:
    """How many experiments have settled without a confirmed gain since the last confirmed one (creation order)."""
    stale = 0
    for f in finished(history):
        if f.verdict == "confirmed":
            stale = 0
        elif f.verdict in SETTLED and f.title != BASELINE_TITLE:
            stale += 1
    return stale


# ---------------------------------------------------------------- config axes


def search_space(base: dict[str, Any], bounds: dict[str, list[float]] | None = None) -> dict[str, list[Any]]:
    """The values each config axis may take around the base, within the bounds: shared with random search."""
    lr, layers, width = base.get("learning_rate", 1.5e-3), base.get("n_layer", 3), base.get("n_embd", 128)
    heads, batch, dropout = base.get("n_head", 4), base.get("batch_size", 8), base.get("dropout", 0.0)
    grid: dict[str, list[Any]] = {
        "learning_rate": [round(lr * f, 8) for f in (0.25, 0.5, 1, 2, 4)],
        "n_layer": [layers + d for d in (-1, 0, 1, 2)],
        "n_embd": [max(1, round(width * f / heads)) * heads for f in (0.5, 0.75, 1, 1.5, 2)],
        "batch_size": [max(1, batch // 2), batch, batch * 2],
        "dropout": [0.0, 0.1, 0.2, dropout],
    }
    out = {}
    for key, values in grid.items():
        low, high = (bounds or {}).get(key, [float("-inf"), float("inf")])
        out[key] = sorted({v for v in values if low <= v <= high})
    return out


def axis_move(space: dict[str, list[Any]], key: str, current: Any, direction: str) -> Move | None:
    """One step of `key` from `current` to the next grid value up or down, or None at the edge."""
    values = space.get(key, [])
    nxt = [v for v in values if v > current] if direction == "up" else [v for v in values if v < current][::-1]
    return Move("axis", key, nxt[0], direction) if nxt else None


SWEEP_ORDER = [("learning_rate", "down"), ("learning_rate", "up")]
SWEEP_ORDER += [(k, "up") for k in AXES[1:]] + [(k, "down") for k in AXES[1:]]
"""The learning rate, the most influential knob, both ways first; then every other axis up, then down."""


def sweep(base: dict[str, Any], space: dict[str, list[Any]], k: int, tried: set[str]) -> list[dict[str, Any]]:
    """Batch 1: one axis per experiment around the base, in `SWEEP_ORDER`; distinct titles."""
    edits = []
    for key, direction in SWEEP_ORDER:
        move = axis_move(space, key, base.get(key), direction)
        if move is None or move.label in tried:
            continue
        why = (UP_WHY if direction == "up" else DOWN_WHY)[key]
        summary = f"[{move.tag}] {key} {base.get(key)} -> {move.value}"
        edits.append(_edit(move.label, None, [move], summary, why, "lower val_bpb than the baseline", None))
    return edits[:k]


def _edit(
    title: str, parent: str | None, moves: list[Move], summary: str, why: str, effect: str, patches: Any
) -> dict[str, Any]:
    """An edit for `edit_train_code_batch`, plus the move tags the planner tracks it by."""
    edit: dict[str, Any] = {"title": title}
    if parent:
        edit["parent_title"] = parent
    overrides = {m.name: m.value for m in moves if m.kind == "axis"}
    if overrides:
        edit["overrides"] = overrides
    if patches:
        edit["patches"] = patches
    edit.update(change_summary=summary, hypothesis=why, expected_effect=effect, step=step_of(moves))
    edit["tags"] = [m.tag for m in moves]
    return edit


# ---------------------------------------------------------------- code batches


@dataclass
class Fork:
    """What a code batch forks: the parent's title, its train.py and its effective config."""

    title: str
    source: str
    config: dict[str, Any]


def recipe_score(recipe: Recipe, ev: Evidence) -> float:
    """Prior, plus the recipe's own credit, plus a little of its family's, minus failures."""
    own = ev.credit(recipe.name) or 0.0
    family = [c for r in RECIPES if r.family == recipe.family and r is not recipe if (c := ev.credit(r.name))]
    fam = statistics.fmean(family) if family else 0.0
    return recipe.prior + EVIDENCE_WEIGHT * own + FAMILY_WEIGHT * fam - FAIL_PENALTY * ev.fails.get(recipe.name, 0)


def axis_candidates(fork: Fork, space: dict[str, list[Any]], ev: Evidence) -> list[tuple[float, Move]]:
    """Config steps worth pairing with a recipe: further along an axis that helped, or against one that hurt."""
    out = []
    for key in AXES:
        for direction, other in (("up", "down"), ("down", "up")):
            move = axis_move(space, key, fork.config.get(key), direction)
            if move is None or (fork.title, move.tag) in ev.blocked:
                continue
            mine, theirs = ev.credit(move.tag), ev.credit(move.tag.replace(direction, other))
            if mine is not None and mine > 0:
                out.append((0.5 + EVIDENCE_WEIGHT * mine, move))
            elif mine is None and theirs is not None and theirs < 0:
                out.append((0.3 - EVIDENCE_WEIGHT * theirs / 2, move))
    return sorted(out, key=lambda sm: -sm[0])


def ranked(items: list[tuple[float, Any]], rng: random.Random) -> list[Any]:
    """Items by score, highest first; ties in an order drawn from `rng`."""
    items = list(items)
    rng.shuffle(items)
    return [item for _, item in sorted(items, key=lambda sm: -sm[0])]


def applied(source: str, moves: list[Move]) -> str | None:
    """The source with every recipe among `moves` applied in order, or None if one does not apply."""
    for move in moves:
        if move.recipe is not None:
            source = move.recipe.apply(source)
            if source is None:
                return None
    return source


def code_edit(fork: Fork, moves: list[Move], ev: Evidence) -> dict[str, Any] | None:
    """The edit for `moves` on the fork, with patches checked against its real source; None if it cannot apply."""
    if (fork.title, frozenset(m.tag for m in moves)) in ev.combos or applied(fork.source, moves) is None:
        return None
    patches = [{"old": o, "new": n} for m in moves if m.recipe for o, n in m.recipe.patches]
    summary = " ".join(f"[{m.tag}]" for m in moves) + " " + "; ".join(_describe(m, fork) for m in moves)
    why = "; ".join(_why(m, ev) for m in moves)
    effect = "; ".join(m.recipe.expected_effect if m.recipe else "lower val_bpb" for m in moves)
    return _edit(_title(moves, fork.title), fork.title, moves, summary, why, effect, patches)


def _describe(move: Move, fork: Fork) -> str:
    """What the move changes, for the change summary."""
    return move.recipe.summary if move.recipe else f"{move.name} {fork.config.get(move.name)} -> {move.value}"


def _why(move: Move, ev: Evidence) -> str:
    """The move's hypothesis: the recipe's own, or what the axis's earlier results suggest."""
    if move.recipe:
        return move.recipe.hypothesis
    credit = ev.credit(move.tag)
    if credit is not None:
        return f"moving {move.name} {move.direction} helped before (credit {credit:+.1f}); one more step may help again"
    return f"moving {move.name} the other way hurt; {move.direction} may help"


def _title(moves: list[Move], parent: str) -> str:
    """A readable title that stays unique within the ledger's 80-character slug."""
    head = " + ".join(m.label for m in moves)
    title = f"{head} on {parent}"
    if len(title) <= 76:
        return title
    digest = hashlib.sha1(parent.encode()).hexdigest()[:6]
    return f"{head} on {parent[: max(8, 60 - len(head))]}~{digest}"


def code_batch(
    fork: Fork,
    history: list[dict[str, Any]],
    proposals: list[dict[str, Any]],
    policy: Policy,
    k: int,
    space: dict[str, list[Any]],
) -> tuple[list[dict[str, Any]], str]:
    """The next code batch on the fork and its rationale: exploit credited moves, or explore untried recipes."""
    ev = evidence(history, proposals)
    rng = random.Random(f"{policy.seed}:{len(history)}:{len(proposals)}")
    usable = [r for r in RECIPES if (fork.title, r.name) not in ev.blocked and r.apply(fork.source) is not None]
    stale = stale_experiments(history)
    want = preferred_step(stale, policy.patience)
    edits: list[dict[str, Any]] = []
    if stale >= policy.patience:
        fresh = [r for r in usable if r.name not in ev.tried_tags]
        rng.shuffle(fresh)
        fresh.sort(key=lambda r: step_distance(r.step, want))
        edits = _singles(fork, fresh, ev, k)
        rationale = (
            f"{stale} experiments since the last confirmed gain: explore recipes never tried, radical steps first"
        )
    else:
        rationale = f"fork the confirmed best ({fork.title}), {want} steps first, ranked by prior and credit"
    if len(edits) < k:
        edits += _exploit(fork, usable, ev, k - len(edits), rng, space, {e["title"] for e in edits}, want)
    return edits[:k], rationale


def _singles(fork: Fork, order: list[Recipe], ev: Evidence, k: int) -> list[dict[str, Any]]:
    """Single-recipe edits in `order`, one per family first, then the rest."""
    firsts, rest, families = [], [], set()
    for recipe in order:
        (rest if recipe.family in families else firsts).append(recipe)
        families.add(recipe.family)
    edits = [code_edit(fork, [Move("recipe", r.name)], ev) for r in firsts + rest]
    return [e for e in edits if e][:k]


def _exploit(
    fork: Fork,
    usable: list[Recipe],
    ev: Evidence,
    k: int,
    rng: random.Random,
    space: dict[str, list[Any]],
    taken: set[str],
    want: str = "medium",
) -> list[dict[str, Any]]:
    """Up to half the slots pair a credited move with a fresh recipe; the rest are the best single recipes, those
    of the preferred step type first. While small steps are preferred on a line of edits, a nudge further along
    a credited config axis comes first."""
    order = ranked([(recipe_score(r, ev), r) for r in usable], rng)
    order.sort(key=lambda r: step_distance(r.step, want))
    singles = [e for e in _singles(fork, order, ev, len(order)) if e["title"] not in taken]
    if want == "small" and fork.title != BASELINE_TITLE:
        nudges = [code_edit(fork, [m], ev) for m in ranked(axis_candidates(fork, space, ev), rng)[:1]]
        singles = [e for e in nudges if e and e["title"] not in taken] + singles
    credited: list[Move] = [Move("recipe", r.name) for r in order if (ev.credit(r.name) or 0) > 0]
    credited += ranked(axis_candidates(fork, space, ev), rng)
    n_singles = k - min(len(credited), k // 2)
    used = {t for e in singles[:n_singles] for t in e["tags"]}
    families = {BY_NAME[t].family for t in used if t in BY_NAME}
    partners = [r for r in order if (ev.credit(r.name) or 0) <= 0]
    partners.sort(key=lambda r: (r.name in used, r.family in families))  # fresh families first, stable by score
    pairs = []
    for move in sorted(credited, key=lambda m: m.tag in used):  # moves not already tried alone here first
        for partner in partners:
            if partner.name == move.name or (move.recipe and move.recipe.family == partner.family):
                continue
            edit = code_edit(fork, [move, Move("recipe", partner.name)], ev)
            if edit and edit["title"] not in taken:
                pairs.append(edit)
                partners.remove(partner)
                break
    chosen = singles[: k - min(len(pairs), k // 2)]
    return chosen + pairs[: k - len(chosen)]
