"""A decoder-only transformer over music tokens (nanoGPT-style), with a KV cache for sampling.

One token per position, from the vocabulary of the model's representation
(``gbsynth.trainer.representation``, named in the config and so in every
checkpoint). The output head shares the token embedding's weights. Positions are
encoded with rotary embeddings (RoPE), which only see relative distances, so
sampling can slide a fixed-size window over an endless song with a ring-buffer KV
cache. The loss is the mean negative log-likelihood per token in nats.

**Time heads.** Music repeats in time, not in tokens: a bar holds a different number of
tokens each time it comes back (a vibrato here, a drum fill there). The last
``time_heads`` heads of each layer rotate queries and keys by **music time** (frames of
1/59.73 s since the window began, from the time each token moves the clock on:
``Representation.token_cycles``) instead of by token index, so one head can attend to
"exactly one beat or one bar ago" wherever that falls in the token stream.

Sizes (``PRESETS``; ``channel_events`` music runs at about 90-240 tokens a second):
``cpu`` (the default: 4 layers x 128 with 2 time heads, 2,048 tokens of context, i.e.
8-25 s of music, 1.2 M parameters) trains on CPU cores and samples a 30 s song in
2-3 s on one core; ``gpu`` (8 x 384 with 3 time heads, 4,096 tokens, 15 M parameters)
is the configuration for a GPU; ``small`` and ``tiny`` are for quick runs and tests.
A preset's context is the longest window it trains on: the sampler attends that far back,
and attention over distances never trained on made songs worse (docs/model.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gbsynth.common.events import FRAME_CYCLES
from gbsynth.trainer import representation


@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters: enough to rebuild the network before loading its weights."""

    representation: str = representation.DEFAULT
    """Name of the token representation (``gbsynth.trainer.representation``)."""
    vocab_size: int = 0
    """Tokens in the vocabulary; 0: the representation's."""
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 2048
    """Context length in tokens (training windows; the sampling window)."""
    dropout: float = 0.1
    rope_base: float = 10_000.0
    time_heads: int = 0
    """Heads positioned by music time in frames instead of token index (module docstring)."""

    def __post_init__(self) -> None:
        if self.vocab_size == 0:
            vocab = representation.get(self.representation).vocab_size
            object.__setattr__(self, "vocab_size", vocab)
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError("n_embd must split into n_head heads of even size")
        if min(self.n_layer, self.n_head, self.block_size, self.vocab_size) < 1:
            raise ValueError("n_layer, n_head, block_size and vocab_size must be positive")
        if not 0 <= self.time_heads <= self.n_head:
            raise ValueError(f"time_heads must be between 0 and n_head ({self.n_head})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model settings {sorted(unknown)}")
        return cls(**data)


PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, dropout=0.0),
    "small": GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=512),
    "cpu": GPTConfig(block_size=2048, time_heads=2),
    "gpu": GPTConfig(n_layer=8, n_head=6, n_embd=384, block_size=4096, dropout=0.1, time_heads=3),
}


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """Rotation angles ``(len(positions), head_dim // 2)``, computed in float64.

    float64 keeps the angles exact for positions in the millions (a long sampled song).
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    return positions.to(torch.float64)[:, None] * inv_freq[None, :]


def token_frames(config: GPTConfig) -> np.ndarray:
    """Frames (float64) each token of the config's representation moves the clock on."""
    cycles = representation.get(config.representation).token_cycles
    return np.asarray(cycles, dtype=np.float64) / FRAME_CYCLES


def head_rotation(
    index_angles: torch.Tensor, time_angles: torch.Tensor | None, config: GPTConfig
) -> torch.Tensor:
    """Angles per head: ``index_angles`` ``(..., T, h)`` for the first heads and
    ``time_angles`` (same shape) for the last ``config.time_heads``: ``(..., H, T, h)``."""
    if not config.time_heads or time_angles is None:
        return index_angles
    index_angles, time_angles = torch.broadcast_tensors(index_angles, time_angles)
    n_index = config.n_head - config.time_heads
    return torch.stack([index_angles] * n_index + [time_angles] * config.time_heads, dim=-3)


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
        # Dropout after the projection, not on the attention weights: dropping attention
        # weights sends CPU attention to the kernel that stores every T x T matrix (7.4 GB
        # for two 4,096-token windows of the cpu preset, against 0.9 GB without).
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.resid_drop(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


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


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        if config.time_heads:
            # Derived from the representation, not learned: not part of the weights.
            frames = torch.from_numpy(token_frames(config))
            self.register_buffer("token_frames", frames, persistent=False)
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

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final hidden states ``(B, T, n_embd)`` for tokens ``(B, T)`` (causal)."""
        _, t = tokens.shape
        if t > self.config.block_size:
            raise ValueError(f"{t} tokens is longer than the context ({self.config.block_size})")
        head_dim = self.config.n_embd // self.config.n_head
        angles = rope_angles(torch.arange(t, device=tokens.device), head_dim, self.config.rope_base)
        if self.config.time_heads:
            # Each token's time is the clock after it (a SHIFT's own step included).
            times = torch.cumsum(self.token_frames.to(torch.float64)[tokens], dim=1)  # (B, T)
            inv_freq = rope_angles(torch.ones(1), head_dim, self.config.rope_base)[0]
            time_angles = times[..., None] * inv_freq  # (B, T, h)
            angles = head_rotation(angles[None], time_angles, self.config)  # (B, H, T, h)
        cos = angles.cos().to(self.wte.weight.dtype)
        sin = angles.sin().to(self.wte.weight.dtype)
        x = self.drop(self.wte(tokens))
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.ln_f(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Next-token logits from hidden states (the head is the token embedding, tied)."""
        return F.linear(h, self.wte.weight)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean NLL per token (nats) of ``targets`` (the next tokens), both ``(B, T)`` int64."""
        logits = self.logits(self.hidden(tokens))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    @torch.no_grad()
    def token_nll(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """NLL (nats) of each target token, ``(B, T)``: for evaluation."""
        logits = self.logits(self.hidden(tokens))
        return -torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]

    # -- incremental decoding ------------------------------------------------------------

    def new_cache(self, window: int | None = None) -> KVCache:
        return KVCache(self, window or self.config.block_size)

    def step(self, token: int, cache: KVCache) -> torch.Tensor:
        """Feed one token; return the next-token logits ``(vocab_size,)`` after it.

        The cache keeps the last ``cache.window`` tokens (keys already rotated by
        their absolute positions), so the cost per token is constant.
        """
        x = self.wte.weight[int(token)][None, :]  # (1, d)
        pos = cache.position
        slot = pos % cache.window
        n = min(pos + 1, cache.window)
        if self.config.time_heads:
            cache.time += float(self.token_frames[int(token)])
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
        return self.logits(self.ln_f(x)[0])


class KVCache:
    """Ring buffers of keys and values for ``window`` events, per layer and head."""

    def __init__(self, model: GPT, window: int) -> None:
        c = model.config
        self.window = window
        self.head_dim = c.n_embd // c.n_head
        self.scale = 1.0 / math.sqrt(self.head_dim)
        dtype = model.wte.weight.dtype
        shape = (c.n_layer, c.n_head, window, self.head_dim)
        self.k = torch.zeros(shape, dtype=dtype)
        self.v = torch.zeros(shape, dtype=dtype)
        self.position = 0
        self.time = 0.0
        """Music time (frames) after the last token fed: the time heads' position."""
        self._config = c
        self._dtype = dtype

    def rotation(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``(1, h)``, or ``(n_head, h)`` with time heads, for ``position``."""
        base = self._config.rope_base
        angles = rope_angles(torch.tensor([position]), self.head_dim, base)
        if self._config.time_heads:
            time = torch.tensor([self.time], dtype=torch.float64)
            angles = head_rotation(angles, rope_angles(time, self.head_dim, base), self._config)
            angles = angles[:, 0]
        return angles.cos().to(self._dtype), angles.sin().to(self._dtype)
