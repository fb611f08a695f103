"""Training throughput as a share of the machine's measured matmul peak, fp32 and bf16.

Run from the repository root::

    python benchmarks/bench_flops.py                     # benchmark model (hidden 256, 4 layers) + hidden 512, 2 layers
    python benchmarks/bench_flops.py --reps 9 --sizes 256x4,1024x4

For each dtype:

* matmul peak: median FLOP/s (2*M*N*K per call) of ``torch.matmul`` at the shapes the training step uses
  (tokens x hidden x hidden, tokens x hidden x intermediate, tokens x hidden x vocab) and at 2048^3; the best
  of these is the "peak" for that dtype.
* training: one clipo training micro-batch exactly as ``RLTrainer._update_mini_batch`` runs it
  (``policy_forward(with_grad=True)`` on 32 rows of 50-token prompts + 32 response tokens, PPO-clip loss,
  backward), FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and SDPA, forward +
  backward) and, for comparison, analytically as 6 * params * tokens. Achieved FLOP/s = counted FLOPs / median
  wall time; share = achieved / peak.

The tiny models used by the other benchmarks are far too small to use the matmul units; the share grows with
model width, which is why a larger size is also measured.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch
from _common import build, command_line, machine_line, median, n_params

warnings.filterwarnings("ignore")


def time_call(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def matmul_flops(m: int, k: int, n: int, dtype, reps: int) -> float:
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    return 2 * m * n * k / time_call(lambda: torch.matmul(a, b), reps)


def training_case(hidden: int, layers: int, dtype, rows: int, prompt_len: int, resp_len: int, reps: int):
    from torch.utils.flop_counter import FlopCounterMode

    from clipo.core.policy_losses import ppo_clip_loss
    from clipo.models.forward import policy_forward

    tok, model = build(0, hidden_size=hidden, num_layers=layers, heads=max(4, hidden // 64),
                       kv_heads=max(2, hidden // 128), intermediate=2 * hidden, dtype=dtype)
    model.train()
    g = torch.Generator().manual_seed(0)
    vocab = len(tok)
    prompt_ids = torch.randint(4, vocab, (rows, prompt_len), generator=g)
    prompt_mask = torch.ones_like(prompt_ids)
    response_ids = torch.randint(4, vocab, (rows, resp_len), generator=g)
    response_mask = torch.ones_like(response_ids)
    old = torch.zeros(rows, resp_len)
    adv = torch.randn(rows, generator=g)

    def step():
        out = policy_forward(model, prompt_ids, prompt_mask, response_ids, response_mask, with_grad=True)
        loss = ppo_clip_loss(out.logp, old, adv, response_mask.float(), eps_low=0.2, eps_high=0.2).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = time_call(step, reps)
    tokens = rows * (prompt_len + resp_len)
    return n_params(model), flops, 6 * n_params(model) * tokens, seconds, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="256x4,512x2", help="hidden x layers, comma-separated")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=50)
    ap.add_argument("--resp-len", type=int, default=32)
    args = ap.parse_args()
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}")
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    tokens = args.rows * (args.prompt_len + args.resp_len)
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).replace("torch.", "")
        shapes = sorted({(tokens, h, h) for h, _ in sizes} | {(tokens, h, 2 * h) for h, _ in sizes}
                        | {(tokens, sizes[0][0], 103)} | {(2048, 2048, 2048)})
        print(f"\n[{name}] torch.matmul FLOP/s (median of {args.reps}):")
        peak = 0.0
        for m, k, n in shapes:
            f = matmul_flops(m, k, n, dtype, args.reps)
            peak = max(peak, f)
            print(f"  {m:5d} x {k:5d} x {n:5d}: {f / 1e9:8.1f} GFLOP/s")
        print(f"  peak (best shape): {peak / 1e9:.1f} GFLOP/s")
        for hidden, layers in sizes:
            params, flops, analytic, seconds, tok = training_case(hidden, layers, dtype, args.rows, args.prompt_len,
                                                                  args.resp_len, args.reps)
            achieved = flops / seconds
            print(f"  train fwd+bwd hidden={hidden} layers={layers} ({params / 1e6:.2f}M params, {tok} tokens): "
                  f"{seconds * 1000:.0f} ms, counted {flops / 1e9:.2f} GFLOP (6PT = {analytic / 1e9:.2f}), "
                  f"{achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak:.1f}% of {name} matmul peak")


if __name__ == "__main__":
    main()
