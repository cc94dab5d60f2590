"""The recipe library: named, checked source transformations of `train.py` for the built-in planner.

Each recipe is a list of anchored patches (`old` must occur exactly once, `new` replaces it). Applying
one is checked: it is skipped (None) when an anchor is missing or ambiguous, when it is already in the
source, or when another variant of its family is (SiLU and squared-ReLU do not stack); the result must
pass the ledger's `check_source` (it parses and still defines the entry points). Every recipe leaves a marker
comment `# recipe: <family>/<name>` on a line it writes, so "already applied" is visible in the source
itself, whoever forked it. Patches that insert code keep their anchor intact, so recipes that insert at
the same place (tied embeddings before the init, an init variant after it) still compose.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from autoresearch.ledger.source import check_source

MARKER = "# recipe: "
FAMILY_STEP = {
    "grad-clip": "small",
    "adam-betas": "small",
    "lr-schedule": "medium",
    "activation": "medium",
    "norm": "medium",
    "init": "medium",
    "decay-groups": "medium",
    "embedding-lr": "medium",
    "tie-embeddings": "radical",
    "qk-norm": "radical",
}
"""Each recipe family's step type; a family not listed is medium."""
SLOT = "{marker}"
"""Placeholder in a patch's new text for the recipe's marker comment."""

# Anchors in the baseline train.py that recipes insert next to or replace.
LR_RETURN = "    return config.learning_rate\n"
LR_SET = '            group["lr"] = learning_rate(config, step)\n'
OPTIMIZER = (
    "    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)\n"
)
BACKWARD = "        loss.backward()\n"
INIT_APPLY = "        self.apply(self._init_weights)\n"
ATTN_DROPOUT = "        self.dropout = config.dropout\n"
ATTN_DROP = "        drop = self.dropout if self.training else 0.0\n"
MLP_RETURN = "        return self.drop(self.proj(F.gelu(self.fc(x))))\n"
NORMS = ("self.norm1 = nn.LayerNorm(config.n_embd)", "self.norm2 = nn.LayerNorm(config.n_embd)")
FINAL_NORM = "self.norm = nn.LayerNorm(config.n_embd)"


def apply_patches(source: str, patches: Any) -> str:
    """Apply `[{"old": str, "new": str}, ...]` to `source`; each `old` must occur exactly once. Raises ValueError."""
    if isinstance(patches, dict):
        patches = [patches]
    if not isinstance(patches, (list, tuple)) or not patches:
        raise ValueError('patches must be a non-empty list like [{"old": "exact text", "new": "replacement"}]')
    for i, patch in enumerate(patches):
        old, new = (patch.get("old"), patch.get("new")) if isinstance(patch, dict) else (None, None)
        if not isinstance(old, str) or not isinstance(new, str) or not old:
            raise ValueError(f'patch {i} must be {{"old": "exact text", "new": "replacement"}} with non-empty old')
        count = source.count(old)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise ValueError(
                f"patch {i}: old text {where} in the parent's train.py ({old[:60]!r}...). Copy an exact, unique "
                "snippet from read_train_code(parent_title)."
            )
        source = source.replace(old, new)
    return source


@dataclass(frozen=True)
class Recipe:
    """A named code change with its hypothesis; `apply(source)` returns the new source or None (skip)."""

    name: str
    family: str
    summary: str
    hypothesis: str
    expected_effect: str
    prior: float
    """How likely it helps a short run, from the literature (0..1); orders recipes nothing is known about."""
    patches: tuple[tuple[str, str], ...]

    @property
    def step(self) -> str:
        """Its step type (see `autoresearch.ledger.records.STEPS`): a one-line tweak is small, a component medium, a change to
        the architecture radical."""
        return FAMILY_STEP.get(self.family, "medium")

    @property
    def marker(self) -> str:
        """The comment this recipe leaves in the source it changes."""
        return f"{MARKER}{self.family}/{self.name}"

    def blocked_by(self, source: str) -> str | None:
        """Why this recipe cannot apply to `source` (applied already, a family variant present, bad anchor)."""
        if self.marker in source:
            return "already applied"
        if f"{MARKER}{self.family}/" in source:
            return f"another {self.family} variant is applied"
        for old, _ in self.patches:
            count = source.count(old)
            if count != 1:
                return f"anchor {old.strip()[:50]!r} occurs {count} times"
        return None

    def apply(self, source: str) -> str | None:
        """The source with this recipe applied, or None when it does not apply cleanly or breaks the contract."""
        if self.blocked_by(source):
            return None
        try:  # an earlier patch of this recipe may touch a later anchor
            source = apply_patches(source, [{"old": old, "new": new} for old, new in self.patches])
        except ValueError:
            return None
        return source if check_source(source) is None else None


def _block(code: str, spaces: int) -> str:
    """`code` dedented, re-indented by `spaces`, with the marker slot on its first line."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    lines[0] += f"  {SLOT}"
    return textwrap.indent("\n".join(lines) + "\n", " " * spaces)


def _after(anchor: str, code: str, spaces: int) -> tuple[str, str]:
    """A patch inserting `code` after the anchor line, keeping the anchor."""
    return anchor, anchor + _block(code, spaces)


def _before(anchor: str, code: str, spaces: int) -> tuple[str, str]:
    """A patch inserting `code` before the anchor line, keeping the anchor."""
    return anchor, _block(code, spaces) + anchor


def _recipe(name: str, family: str, text: tuple[str, str, str], prior: float, patches: list[tuple[str, str]]) -> Recipe:
    """A recipe whose marker slots are filled with its own marker (`text` is summary, hypothesis, effect)."""
    marker = f"{MARKER}{family}/{name}"
    return Recipe(name, family, *text, prior, tuple((old, new.replace(SLOT, marker)) for old, new in patches))


def _schedule(name: str, decay: str, summary: str, prior: float) -> Recipe:
    """Linear warmup over the first 10% of steps, then `decay`, an expression of `progress` in [0, 1]."""
    body = f"""
    warmup = max(1, config.max_steps // 10)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
    return config.learning_rate * ({decay})
    """
    hypothesis = (
        "a constant LR starts too hot and stays too hot at the end of a short run; warmup then decay settles lower"
    )
    text = (summary, hypothesis, "-0.02 to -0.06 val_bpb")
    return _recipe(name, "lr-schedule", text, prior, [(LR_RETURN, _block(body, 4))])


def _regroup(predicate: str, settings: str) -> str:
    """Code that moves the parameters matching `predicate` (of `p`) into optimizer groups with `settings`."""
    return f"""
for group in list(optimizer.param_groups):
    moved = [p for p in group["params"] if {predicate}]
    kept = [p for p in group["params"] if not ({predicate})]
    if moved:
        group["params"] = kept
        optimizer.add_param_group({{**group, "params": moved, {settings}}})
optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
"""


def _activation(name: str, expr: str, text: tuple[str, str, str], prior: float) -> Recipe:
    """The MLP's GELU replaced by `expr`, a format string of `h`, the expanded hidden state."""
    new = MLP_RETURN.replace("F.gelu(self.fc(x))", expr.format(h="self.fc(x)")).rstrip("\n") + f"  {SLOT}\n"
    return _recipe(name, "activation", text, prior, [(MLP_RETURN, new)])


def _clip(value: float, prior: float) -> Recipe:
    """Clip the global gradient norm at `value` after each backward pass."""
    text = (
        f"clip the global gradient norm at {value:g}",
        "clipping tames the loss spikes of a short run at a high learning rate",
        "-0.005 to -0.02 val_bpb",
    )
    code = f"torch.nn.utils.clip_grad_norm_(model.parameters(), {value!r})"
    return _recipe(f"grad-clip-{value:g}", "grad-clip", text, prior, [_after(BACKWARD, code, 8)])


RMS_NORM = _recipe(
    "rmsnorm",
    "norm",
    (
        "RMSNorm instead of LayerNorm in every block and before the head",
        "RMSNorm drops the mean-centring and bias; it is as stable and slightly cheaper, as in LLaMA",
        "-0.01 to +0.005 val_bpb",
    ),
    0.35,
    [(NORMS[0], NORMS[0].replace("LayerNorm", "RMSNorm") + f"  {SLOT}")]
    + [(old, old.replace("LayerNorm", "RMSNorm")) for old in (NORMS[1], FINAL_NORM)],
)

RECIPES: tuple[Recipe, ...] = (
    _schedule(
        "warmup-cosine",
        "0.1 + 0.45 * (1 + math.cos(math.pi * progress))",
        "linear warmup over 10% of the steps, then cosine decay to 10% of the peak LR",
        0.9,
    ),
    _schedule(
        "warmup-linear",
        "max(0.0, 1.0 - progress)",
        "linear warmup over 10% of the steps, then linear decay to zero",
        0.85,
    ),
    _recipe(
        "tied-embeddings",
        "tie-embeddings",
        (
            "tie the LM head to the token embedding",
            "the head and the embedding learn the same token geometry; sharing them regularises a small model "
            "and gives the rare tokens' embeddings a gradient at every step",
            "-0.01 to -0.03 val_bpb, fewer parameters",
        ),
        0.6,
        [_before(INIT_APPLY, "self.head.weight = self.tok_emb.weight", 8)],
    ),
    _recipe(
        "adamw-beta2-0.95",
        "adam-betas",
        (
            "AdamW betas (0.9, 0.95)",
            "a shorter second-moment memory adapts faster to the fast-changing gradients of a short run",
            "-0.005 to -0.02 val_bpb",
        ),
        0.55,
        [_after(OPTIMIZER, 'for group in optimizer.param_groups:\n    group["betas"] = (0.9, 0.95)', 4)],
    ),
    _recipe(
        "embedding-lr-3x",
        "embedding-lr",
        (
            "3x the learning rate for the token and position embeddings",
            "embedding rows of rare tokens get few updates; a larger step size lets them catch up in a short run",
            "-0.005 to -0.02 val_bpb",
        ),
        0.45,
        [
            _after(
                OPTIMIZER,
                "embeddings = {id(model.tok_emb.weight), id(model.pos_emb.weight)}"
                + _regroup("id(p) in embeddings", '"lr_scale": 3.0'),
                4,
            ),
            (LR_SET, LR_SET.rstrip("\n") + ' * group.get("lr_scale", 1.0)\n'),
        ],
    ),
    _recipe(
        "no-decay-norms-biases",
        "decay-groups",
        (
            "no weight decay on norm weights, biases and other 1-D parameters",
            "decaying norm gains and biases toward zero only fights the model; decay belongs on matrices",
            "-0.002 to -0.01 val_bpb",
        ),
        0.4,
        [_after(OPTIMIZER, _regroup("p.dim() < 2", '"weight_decay": 0.0'), 4)],
    ),
    _activation(
        "relu2",
        "F.relu({h}).square()",
        (
            "squared ReLU instead of GELU in the MLP (Primer)",
            "squared ReLU gives sparser, sharper MLP features and trained faster than GELU in the Primer search",
            "-0.005 to -0.02 val_bpb",
        ),
        0.45,
    ),
    _activation(
        "silu",
        "F.silu({h})",
        (
            "SiLU instead of GELU in the MLP",
            "SiLU is smooth like GELU but cheaper, and trains as well in small transformers",
            "-0.005 to +0.005 val_bpb",
        ),
        0.3,
    ),
    RMS_NORM,
    _recipe(
        "qk-norm",
        "qk-norm",
        (
            "RMS-normalise queries and keys per head before attention",
            "normalised q and k keep attention logits bounded, which stabilises training at a high learning rate",
            "-0.005 to -0.02 val_bpb",
        ),
        0.4,
        [
            _after(
                ATTN_DROPOUT,
                "self.q_norm = nn.RMSNorm(config.n_embd // config.n_head)\n"
                "self.k_norm = nn.RMSNorm(config.n_embd // config.n_head)",
                8,
            ),
            (ATTN_DROP, "        q, k = self.q_norm(q), self.k_norm(k)\n" + ATTN_DROP),
        ],
    ),
    _recipe(
        "scaled-residual-init",
        "init",
        (
            "initialise the residual output projections with std 0.02 / sqrt(2 * n_layer)",
            "scaling the residual branches keeps the residual stream's variance flat with depth (GPT-2)",
            "-0.002 to -0.01 val_bpb",
        ),
        0.35,
        [
            _after(
                INIT_APPLY,
                'for name, param in self.named_parameters():\n    if name.endswith("proj.weight"):\n'
                "        nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))",
                8,
            )
        ],
    ),
    _recipe(
        "zero-init-proj",
        "init",
        (
            "initialise the residual output projections to zero",
            "each block starts as the identity, so early training is a shallow model that deepens smoothly",
            "-0.005 to -0.02 val_bpb",
        ),
        0.3,
        [
            _after(
                INIT_APPLY,
                'for name, param in self.named_parameters():\n    if name.endswith("proj.weight"):\n'
                "        nn.init.zeros_(param)",
                8,
            )
        ],
    ),
    _clip(1.0, 0.3),
    _clip(0.5, 0.2),
)
"""Every recipe, most promising first (by prior)."""

BY_NAME = {r.name: r for r in RECIPES}
