"""Training throughput of the default (``cpu``) preset: tokens per second and peak memory.

    python bench/training_speed.py [--threads 2] [--steps 3]

For the windows the recipe trains on (pre-training 1,024 tokens x 4, fine-tuning 2,048 x 4,
context extension 4,096 x 2), it times full optimizer steps (forward, backward, AdamW) of
the model as it is, and, as the peer in the same run, of the previous version, whose
dropout acted on the attention weights (which sends CPU attention to the kernel that keeps
every T x T matrix). Each measurement runs in its own process, so the peak resident
memory is its own. Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time

SHAPES = ((4, 1024, "pre-training"), (4, 2048, "fine-tuning"), (2, 4096, "context extension"))


def measure(batch: int, window: int, previous: bool, steps: int, threads: int) -> dict:
    """(In a child process) seconds per step and peak RSS for one shape and version."""
    import torch
    import torch.nn.functional as F

    from gbsynth.trainer import model as gpt

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if previous:

        def attention_with_weight_dropout(self, x, cos, sin):
            b, t, c = x.shape
            q, k, v = self.c_attn(x).split(c, dim=2)
            q, k, v = (z.view(b, t, self.n_head, self.head_dim).transpose(1, 2) for z in (q, k, v))
            q, k = gpt.apply_rope(q, cos, sin), gpt.apply_rope(k, cos, sin)
            p = self.resid_drop.p if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

        gpt.SelfAttention.forward = attention_with_weight_dropout
    # The cpu preset's network; its context stretched to the window where needed (the
    # context-extension stage of a longer-context preset).
    config = dataclasses.replace(gpt.PRESETS["cpu"], block_size=max(window, 2048))
    model = gpt.GPT(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, config.vocab_size, (batch, window + 1))

    def step() -> None:
        loss = model(tokens[:, :-1], tokens[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - started) / steps
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_step": seconds, "tokens_per_second": batch * window / seconds,
            "peak_mb": peak_mb}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batch, window, previous = args.child
        print(json.dumps(measure(batch, window, bool(previous), args.steps, args.threads)))
        return 0
    print(f"cpu preset, {args.threads} threads, {args.steps} timed steps after one warm-up")
    print(f"{'stage':18} {'batch x window':>15} {'ours tok/s':>11} {'peak MB':>8} "
          f"{'previous tok/s':>15} {'peak MB':>8} {'ratio':>6}")  # fmt: skip
    for batch, window, stage in SHAPES:
        runs = []
        for previous in (0, 1):
            command = [sys.executable, __file__, "--threads", str(args.threads),
                       "--steps", str(args.steps), "--child", str(batch), str(window),
                       str(previous)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        ours, before = runs
        ratio = ours["tokens_per_second"] / before["tokens_per_second"]
        print(f"{stage:18} {f'{batch} x {window}':>15} {ours['tokens_per_second']:>11,.0f} "
              f"{ours['peak_mb']:>8,.0f} {before['tokens_per_second']:>15,.0f} "
              f"{before['peak_mb']:>8,.0f} {ratio:>5.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
