"""The baseline training script: TinyGPT and `run_training`. This is the one file the agent edits.

Contract (the trusted harness relies on it; keep it when editing):
- `build_model(config) -> torch.nn.Module`: a fresh model whose `forward(idx)` takes `(B, T)` int64
  token ids and returns `(B, T, config.vocab_size)` next-token logits. Position `t` may only use
  tokens `0..t`: the scorer probes this, and a model that looks ahead is rejected as a leak.
- `run_training(config, data_dir) -> (model, TrainSummary)`: trains a model built by
  `build_model(config)` on the batches the harness hands it (`prepare.BatchFeed(data_dir)`: exactly
  the run's token budget, `config.max_steps` batches of `config.batch_size` rows) within
  `config.time_budget_s` seconds, then returns it. It never evaluates: the harness exports the
  returned model's eval-mode forward pass with `torch.export` at one `(1, seq_len)` window, and a
  trusted scorer evaluates that graph on data this code never sees. So `forward` must be a pure
  tensor program: no Python `if` on tensor values, no `.item()`, no buffer written in `forward`, no
  random op in eval mode, ATen ops only (else the run is `unexportable`, with the reason).

`python train.py [--base-config JSON] [--max-steps N] ...` trains this baseline once by hand (no sandbox, no
agent) and prints val_bpb: for people only, not how experiments are scored (see `autoresearch/by_hand.py`).
"""

from __future__ import annotations

import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from autoresearch_types import ExperimentConfig, TrainSummary
from prepare import PROGRESS_EVERY, BatchFeed, log_progress


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through `scaled_dot_product_attention`."""

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    """Position-wise feed-forward: expand 4x, GELU, project back."""

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """Token and learned position embeddings, a stack of blocks, a final norm and an LM head."""

    def __init__(self, config: ExperimentConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.seq_len, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build_model(config: ExperimentConfig) -> nn.Module:
    """A freshly initialised TinyGPT for `config` (seeded, so two calls give the same weights)."""
    torch.manual_seed(config.seed)
    return TinyGPT(config)


def pick_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads() -> None:
    """Use exactly the CPU threads granted through `OMP_NUM_THREADS`, if set."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def learning_rate(config: ExperimentConfig, step: int) -> float:
    """Constant learning rate (a schedule is a good first edit)."""
    return config.learning_rate


def run_training(config: ExperimentConfig, data_dir: str) -> tuple[nn.Module, TrainSummary]:
    """Train TinyGPT on the handed batches (the run's token budget) within the time cap; return the model."""
    set_threads()
    device = pick_device()
    feed = BatchFeed(data_dir)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    )
    start = time.perf_counter()
    step, loss_value = 0, math.nan
    model.train()
    for inputs, targets in feed:
        if time.perf_counter() - start >= config.time_budget_s:
            break
        x, y = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        loss_value = loss.item()
        if step % PROGRESS_EVERY == 0:
            log_progress(step, loss_value)
    elapsed = time.perf_counter() - start
    tokens = step * config.batch_size * config.seq_len
    return model, TrainSummary(step, elapsed, loss_value, tokens, device)


if __name__ == "__main__":  # for people only: experiments are trained in a sandbox and scored outside it
    import sys

    from autoresearch.by_hand import main

    sys.exit(main(sys.argv[1:], run_training))
