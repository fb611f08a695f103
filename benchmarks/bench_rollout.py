"""Rollout throughput: ``HFGenerateEngine.generate`` vs a bare ``model.generate`` call on the same batch.

Run from the repository root::

    python benchmarks/bench_rollout.py                  # 15 measured pairs after 2 warm-up pairs
    python benchmarks/bench_rollout.py --reps 25 --prompts 4 --n 8 --max-new 32

Same tiny model (EOS/pad never sampled, so every row is exactly ``--max-new`` tokens), same chat-rendered
prompts repeated n times, same sampling (T=1, top_p=1, top_k=0, do_sample, KV cache), same seed, one
``generate`` call for all B*n rows. The bare contender is the minimum any HF-generate rollout must do:
``tokenizer(prompts, left padding)`` + ``repeat_interleave`` + ``model.generate`` under ``inference_mode``
+ ``batch_decode`` of the new tokens. The engine additionally builds its GenerationConfig, swaps the model's
generation config, forks/seeds the RNG, finds each row's end, decodes per row and builds the ``RolloutBatch``.
The engine prefills each distinct prompt once and repeats its KV cache n times (``share_prompt_prefill``, the
default); ``unshared`` is the same engine with ``share_prompt_prefill=False`` (every copy prefilled), and
``shared`` is the bare call plus a hand-written shared prefill (see ``shared_prefill``). Calls alternate
(bare, engine, unshared, shared, then reversed, ...). Reported: tokens/s medians, the median paired ratio
engine/bare of tokens/s (goal: >= 0.95) and engine/unshared (the gain of the shared prefill).
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch
from _common import build, command_line, iqr, machine_line, median, n_params, prompt_rows

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=32)
    args = ap.parse_args()

    from transformers import GenerationConfig

    from clipo.rollout import HFGenerateEngine, SamplingParams

    tok, model = build(0)
    model.eval()
    prompts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                       add_generation_prompt=True)
               for r in prompt_rows(args.prompts)]
    engine = HFGenerateEngine(model, tok, micro_batch_size=None)
    unshared_engine = HFGenerateEngine(model, tok, micro_batch_size=None, share_prompt_prefill=False)
    params = SamplingParams(n=args.n, max_new_tokens=args.max_new, temperature=1.0, top_p=1.0, top_k=0, seed=123)
    gen_config = GenerationConfig(max_new_tokens=args.max_new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                  num_beams=1, eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id,
                                  use_cache=True)

    def bare() -> int:
        enc = tok(prompts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
        ids = enc["input_ids"].repeat_interleave(args.n, 0)
        mask = enc["attention_mask"].repeat_interleave(args.n, 0)
        torch.manual_seed(123)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config)
        new = out[:, ids.shape[1]:]
        tok.batch_decode(new, skip_special_tokens=True)
        return int(new.numel())

    def shared_prefill() -> int:
        """What-if for the engine: prefill each distinct prompt once (all but its last token), copy its KV cache
        to the n samples (``DynamicCache.batch_repeat_interleave``), then ``generate`` only decodes. Greedy
        outputs are token-identical to ``bare`` (checked at start-up)."""
        from transformers import DynamicCache

        enc = tok(prompts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
        ids_u, mask_u = enc["input_ids"], enc["attention_mask"]
        ids = ids_u.repeat_interleave(args.n, 0)
        mask = mask_u.repeat_interleave(args.n, 0)
        torch.manual_seed(123)
        with torch.inference_mode():
            cache = DynamicCache(config=model.config)
            positions = (mask_u.cumsum(-1) - 1).clamp(min=0)
            model(input_ids=ids_u[:, :-1], attention_mask=mask_u[:, :-1], position_ids=positions[:, :-1],
                  cache=cache, use_cache=True)
            cache.batch_repeat_interleave(args.n)
            out = model.generate(input_ids=ids, attention_mask=mask, cache=cache,
                                 generation_config=config)
        new = out[:, ids.shape[1]:]
        tok.batch_decode(new, skip_special_tokens=True)
        return int(new.numel())

    config = gen_config
    # Correctness of the what-if: greedy decoding must give the same tokens with and without shared prefill.
    greedy = GenerationConfig(max_new_tokens=args.max_new, do_sample=False, eos_token_id=[tok.eos_token_id],
                              pad_token_id=tok.pad_token_id)
    enc = tok(prompts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        ref = model.generate(input_ids=enc["input_ids"].repeat_interleave(args.n, 0),
                             attention_mask=enc["attention_mask"].repeat_interleave(args.n, 0), generation_config=greedy)
    config = greedy
    captured = {}
    real_generate = model.generate
    model.generate = lambda **kw: captured.setdefault("out", real_generate(**kw))
    shared_prefill()
    model.generate = real_generate
    same = torch.equal(captured["out"], ref)
    config = gen_config

    def clipo() -> int:
        return int(engine.generate(prompts, params).response_mask.sum())

    def clipo_unshared() -> int:
        return int(unshared_engine.generate(prompts, params).response_mask.sum())

    # The engine's own shared prefill: greedy tokens identical to the unshared engine, and (same seed) sampled ones.
    greedy_params = SamplingParams(n=args.n, max_new_tokens=args.max_new, temperature=0.0)
    engine_greedy_same = torch.equal(engine.generate(prompts, greedy_params).response_ids,
                                     unshared_engine.generate(prompts, greedy_params).response_ids)
    engine_sampled_same = torch.equal(engine.generate(prompts, params).response_ids,
                                      unshared_engine.generate(prompts, params).response_ids)

    tps = {"bare": [], "engine": [], "unshared": [], "shared": []}
    for i in range(args.warmup + args.reps):
        order = [("bare", bare), ("engine", clipo), ("unshared", clipo_unshared), ("shared", shared_prefill)]
        order = order if i % 2 == 0 else order[::-1]
        for name, fn in order:
            t0 = time.perf_counter()
            tokens = fn()
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                tps[name].append(tokens / dt)
    ratios = [e / b for b, e in zip(tps["bare"], tps["engine"])]
    n_rows = args.prompts * args.n
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}")
    print(f"model: qwen2 {n_params(model)/1e6:.2f}M params; {n_rows} rows x {args.max_new} new tokens per call; "
          f"{args.reps} pairs after {args.warmup} warm-up")
    for name in ("bare", "engine", "unshared", "shared"):
        xs = tps[name]
        print(f"{name:8s}: median {median(xs):8.0f} tokens/s  IQR {iqr(xs)[0]:.0f}-{iqr(xs)[1]:.0f}")
    print(f"engine/bare tokens/s: median of paired ratios {median(ratios):.3f}  (IQR {iqr(ratios)[0]:.3f}-"
          f"{iqr(ratios)[1]:.3f}); goal >= 0.95 -> {'MET' if median(ratios) >= 0.95 else 'NOT MET'}")
    gain = [e / u for u, e in zip(tps["unshared"], tps["engine"])]
    print(f"engine (shared prefill) / engine (share_prompt_prefill=False) tokens/s: median of paired ratios "
          f"{median(gain):.3f} (IQR {iqr(gain)[0]:.3f}-{iqr(gain)[1]:.3f}); tokens identical: greedy "
          f"{engine_greedy_same}, sampled (seed {params.seed}) {engine_sampled_same}")
    shared = [s / b for b, s in zip(tps["bare"], tps["shared"])]
    print(f"hand-written shared prefill / bare tokens/s: median of paired ratios {median(shared):.3f} "
          f"(IQR {iqr(shared)[0]:.3f}-{iqr(shared)[1]:.3f}); greedy tokens identical to bare: {same}")


if __name__ == "__main__":
    main()
