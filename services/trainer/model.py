"""A decoder-only transformer over APU events (nanoGPT-style), with a KV cache for sampling.

Input: one position per event (``gbsynth.trainer.tokens``); its embedding is the
sum of the embeddings of its three tokens (dt, reg, val). Positions are encoded
with rotary embeddings (RoPE), which only see relative distances, so sampling
can slide a fixed-size window over an endless song with a ring-buffer KV cache.

Output: the next event, factorized ``p(dt) p(reg | dt) p(val | dt, reg)``:
three heads on the final hidden state, the later ones also fed the earlier
tokens of the same event (teacher-forced in training, sampled in generation).
The loss is the sum of the three cross-entropies, i.e. the negative
log-likelihood of the whole event in nats, the figure ``gbsynth evaluate`` reports.

Sizes (``PRESETS``): ``cpu`` (the default: 3 layers x 96, 256 events of
context, dropout 0.1, 0.5 M parameters) trains usefully on one CPU core and
samples 4,700-9,000 events per second on one core, several times real time
even for the densest music; ``cpu-large`` (4 x 128, 512 events, 1.0 M) fits
unseen music a little better but samples 3x slower; ``gpu`` (8 x 384, 1,024
events, 15 M parameters) is the configuration for a GPU; ``tiny`` is for tests.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gbsynth.trainer import tokens


@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters: enough to rebuild the network before loading its weights."""

    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    block_size: int = 256
    """Context length in events (training windows; the sampling window)."""
    dropout: float = 0.1
    rope_base: float = 10_000.0
    n_dt: int = tokens.N_DT
    n_reg: int = tokens.N_REG
    n_val: int = tokens.N_VAL

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError("n_embd must split into n_head heads of even size")
        if min(self.n_layer, self.n_head, self.block_size) < 1:
            raise ValueError("n_layer, n_head and block_size must be positive")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, dropout=0.0),
    "small": GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=256),
    "cpu": GPTConfig(),
    "cpu-large": GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=512),
    "gpu": GPTConfig(n_layer=8, n_head=6, n_embd=384, block_size=1024, dropout=0.1),
}


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """Rotation angles ``(len(positions), head_dim // 2)``, computed in float64.

    float64 keeps the angles exact for positions in the millions (a long sampled song).
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :h], x[..., h:]) of the last dimension by the given angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cos, sin)
        return x + self.mlp(self.ln_2(x))


class EventHeads(nn.Module):
    """``p(dt | h)``, ``p(reg | h, dt)``, ``p(val | h, dt, reg)``: one small MLP per later head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        d = config.n_embd
        self.dt = nn.Linear(d, config.n_dt)
        self.reg_in = nn.Linear(d, d)
        self.reg_dt = nn.Embedding(config.n_dt, d)
        self.reg = nn.Linear(d, config.n_reg)
        self.val_in = nn.Linear(d, d)
        self.val_dt = nn.Embedding(config.n_dt, d)
        self.val_reg = nn.Embedding(config.n_reg, d)
        self.val = nn.Linear(d, config.n_val)

    def dt_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.dt(h)

    def reg_logits(self, h: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return self.reg(F.gelu(self.reg_in(h) + self.reg_dt(dt), approximate="tanh"))

    def val_logits(self, h: torch.Tensor, dt: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
        hidden = self.val_in(h) + self.val_dt(dt) + self.val_reg(reg)
        return self.val(F.gelu(hidden, approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_embd
        self.emb_dt = nn.Embedding(config.n_dt, d)
        self.emb_reg = nn.Embedding(config.n_reg, d)
        self.emb_val = nn.Embedding(config.n_val, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.heads = EventHeads(config)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2: scale the residual projections by depth.
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, events: torch.Tensor) -> torch.Tensor:
        """``(..., 3)`` event tokens -> ``(..., n_embd)``."""
        return (
            self.emb_dt(events[..., tokens.DT])
            + self.emb_reg(events[..., tokens.REG])
            + self.emb_val(events[..., tokens.VAL])
        )

    def hidden(self, events: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(B, T, n_embd)`` for events ``(B, T, 3)`` (causal)."""
        b, t, _ = events.shape
        if t > self.config.block_size:
            raise ValueError(f"{t} events is longer than the context ({self.config.block_size})")
        angles = rope_angles(
            torch.arange(t, device=events.device),
            self.config.n_embd // self.config.n_head,
            self.config.rope_base,
        )
        cos = angles.cos().to(self.emb_dt.weight.dtype)
        sin = angles.sin().to(self.emb_dt.weight.dtype)
        x = self.drop(self.embed(events))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.ln_f(x)

    def forward(
        self, events: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean NLL per event (nats) of ``targets`` (the next events) and its three parts.

        ``events`` and ``targets`` are ``(B, T, 3)`` int64; targets are teacher-forced
        into the later heads.
        """
        h = self.hidden(events)
        dt, reg, val = targets[..., tokens.DT], targets[..., tokens.REG], targets[..., tokens.VAL]
        parts = {
            "dt": F.cross_entropy(self.heads.dt_logits(h).flatten(0, 1), dt.flatten()),
            "reg": F.cross_entropy(self.heads.reg_logits(h, dt).flatten(0, 1), reg.flatten()),
            "val": F.cross_entropy(self.heads.val_logits(h, dt, reg).flatten(0, 1), val.flatten()),
        }
        return parts["dt"] + parts["reg"] + parts["val"], parts

    @torch.no_grad()
    def event_nll(self, events: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL (nats) of each target event, ``(B, T)``: for evaluation."""
        h = self.hidden(events)
        dt, reg, val = targets[..., tokens.DT], targets[..., tokens.REG], targets[..., tokens.VAL]

        def nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return -torch.log_softmax(logits, dim=-1).gather(-1, target[..., None])[..., 0]

        return (
            nll(self.heads.dt_logits(h), dt)
            + nll(self.heads.reg_logits(h, dt), reg)
            + nll(self.heads.val_logits(h, dt, reg), val)
        )

    # -- incremental decoding ------------------------------------------------------------

    def new_cache(self, window: int | None = None) -> KVCache:
        return KVCache(self, window or self.config.block_size)

    def step(self, event: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed one event ``(3,)``; return the final hidden state ``(n_embd,)`` after it.

        The cache keeps the last ``cache.window`` events (keys already rotated by
        their absolute positions), so the cost per event is constant.
        """
        x = self.embed(event)[None, :]  # (1, d)
        pos = cache.position
        slot = pos % cache.window
        n = min(pos + 1, cache.window)
        cos, sin = cache.rotation(pos)
        hd = cache.head_dim
        for layer, block in enumerate(self.blocks):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).view(3, attn.n_head, hd).unbind(0)
            cache.k[layer, :, slot] = apply_rope(k, cos, sin)
            cache.v[layer, :, slot] = v
            q = apply_rope(q, cos, sin)
            # Every cached entry is in the past: no mask; order does not matter with RoPE.
            scores = torch.bmm(cache.k[layer, :, :n], q[:, :, None])[..., 0] * cache.scale
            y = torch.bmm(torch.softmax(scores, dim=-1)[:, None, :], cache.v[layer, :, :n])
            x = x + attn.c_proj(y.view(1, -1))
            x = x + block.mlp(block.ln_2(x))
        cache.position += 1
        return self.ln_f(x)[0]


class KVCache:
    """Ring buffers of keys and values for ``window`` events, per layer and head."""

    def __init__(self, model: GPT, window: int) -> None:
        c = model.config
        self.window = window
        self.head_dim = c.n_embd // c.n_head
        self.scale = 1.0 / math.sqrt(self.head_dim)
        dtype = model.emb_dt.weight.dtype
        shape = (c.n_layer, c.n_head, window, self.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.position = 0
        self._rope_base = c.rope_base
        self._dtype = dtype

    def rotation(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        angles = rope_angles(torch.tensor([position]), self.head_dim, self._rope_base)
        return angles.cos().to(self._dtype), angles.sin().to(self._dtype)
