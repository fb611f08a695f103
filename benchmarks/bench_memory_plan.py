"""The memory planner (`clipo plan`, clipo/training/memory.py) against measured peak memory of one training step on CPU.

Run from the repository root::

    python benchmarks/bench_memory_plan.py               # every case, each in a fresh subprocess (~2-3 min)
    python benchmarks/bench_memory_plan.py --cases S M    # some of them

Each case builds a random Qwen2-style model locally (``Qwen2Config`` + ``AutoModelForCausalLM.from_config``, SDPA,
fp32, vocabulary 32,000; nothing is downloaded), with random token ids: ``rows`` sequences of ``prompt`` tokens
(left-padded: row 0 has 8 padding columns, so the batch carries a padding mask as real RL batches do) and
``response`` tokens. One step is ``clipo.models.policy_forward(with_grad=True)`` (the trainer's training forward:
logits_to_keep, chunked float32 log-softmax), a masked mean of the log-probs as the loss, backward, AdamW step.

Measurement, in a fresh process per case: after the imports, freed heap is returned to the OS (glibc
``malloc_trim``) and the resident set size (VmRSS) is read as the baseline; the model and AdamW are built and one
warm-up step runs (so the AdamW state exists); then the peak-RSS counter is reset (``/proc/self/clear_refs``) and
a second step runs with the gradients kept (``zero_grad(set_to_none=False)``: as on the 2nd..k-th micro-batch of a
mini-batch, and as in the rollout that follows an update), and VmHWM is read. ``MALLOC_MMAP_THRESHOLD_`` is fixed
at 64 KiB so every large tensor is its own mmap, returned to the OS when freed: RSS then follows live tensors
instead of allocator caching.

Compared with the estimator for the same shape (precision fp32, parallel none, no reference, no KV cache):

* resident = weights + gradients + AdamW state (measured: RSS after the warm-up step minus the baseline);
* step = activations + logits (measured: peak during the second step minus RSS before it);
* total = both (measured: peak minus baseline).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1 << 20

#: name -> model shape, batch and precision. Vocabulary 32,000 and untied embeddings unless the case says otherwise.
CASES = {
    "S": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024, rows=4, prompt=64, response=192),
    "S-V152k": dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=1024, rows=4, prompt=64, response=192,
                    vocab=151936),
    "M": dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, rows=4, prompt=64, response=448),
    "M-ckpt": dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, rows=4, prompt=64, response=448,
                   checkpointing=True),
    "M-bf16": dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, rows=4, prompt=64, response=448,
                   precision="bf16"),
    "M-mixed": dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, rows=4, prompt=64, response=448,
                    precision="bf16-mixed"),
    "L": dict(hidden=1024, layers=12, heads=16, kv_heads=4, intermediate=2816, rows=2, prompt=64, response=448,
              tied=True),
    # Rollout: one sampled `generate` call (KV cache), no training.
    "M-gen": dict(hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1536, rows=32, prompt=64, response=256,
                  generate=True),
}
VOCAB = 32000


def status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def trim() -> None:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _warm_up_code_paths(torch, auto_model, config_class, policy_forward) -> None:
    """One step of a minute model of the same architecture, so that lazily imported modules, kernels and thread
    pools are in memory before the baseline is read (they are not the model's memory)."""
    config = config_class(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=64)
    model = auto_model.from_config(config, attn_implementation="sdpa")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids, mask = torch.randint(0, 64, (2, 8)), torch.ones(2, 8, dtype=torch.long)
    mask[0, :2] = 0
    out = policy_forward(model, ids, mask, ids, torch.ones(2, 8, dtype=torch.long), with_grad=True)
    out.logp.sum().backward()
    optimizer.step()
    del model, optimizer, out


def _measure_generate(torch, model, prompt_ids, prompt_mask, new_tokens: int, baseline: int) -> dict:
    """One sampled generate call of exactly ``new_tokens`` tokens per row (no EOS), after a short warm-up one."""
    model.eval()
    model.generation_config.eos_token_id = None
    kwargs = dict(attention_mask=prompt_mask, do_sample=True, top_k=0, top_p=1.0, pad_token_id=0)
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(prompt_ids[:2], max_new_tokens=4, **{**kwargs, "attention_mask": prompt_mask[:2]})
        trim()
        resident = status_kib("VmRSS") * 1024
        reset_peak()
        out = model.generate(prompt_ids, max_new_tokens=new_tokens, **kwargs)
        peak = status_kib("VmHWM") * 1024
    assert out.shape[1] == prompt_ids.shape[1] + new_tokens
    return {"resident": resident - baseline, "forward": 0, "step": peak - resident, "total": peak - baseline,
            "params": sum(p.numel() for p in model.parameters()), "seconds": time.perf_counter() - start}


def run_case(name: str) -> dict:
    """Worker: measure one case in this (fresh) process; returns bytes."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from clipo.models import enable_gradient_checkpointing, policy_forward

    torch.set_num_threads(1)
    _warm_up_code_paths(torch, AutoModelForCausalLM, Qwen2Config, policy_forward)
    case = CASES[name]
    vocab, precision = case.get("vocab", VOCAB), case.get("precision", "fp32")
    rows, prompt, response = case["rows"], case["prompt"], case["response"]
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(10, vocab, (rows, prompt), generator=generator)
    prompt_mask = torch.ones(rows, prompt, dtype=torch.long)
    prompt_mask[0, :8] = 0  # left padding: the batch carries a padding mask, as RL batches do
    response_ids = torch.randint(10, vocab, (rows, response), generator=generator)
    response_mask = torch.ones(rows, response, dtype=torch.long)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed"
                else contextlib.nullcontext())
    trim()
    baseline = status_kib("VmRSS") * 1024

    config = Qwen2Config(vocab_size=vocab, hidden_size=case["hidden"], num_hidden_layers=case["layers"],
                         num_attention_heads=case["heads"], num_key_value_heads=case["kv_heads"],
                         intermediate_size=case["intermediate"], tie_word_embeddings=case.get("tied", False),
                         max_position_embeddings=4096)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    if precision == "bf16":
        model.to(torch.bfloat16)
    if case.get("generate"):
        return _measure_generate(torch, model, prompt_ids, prompt_mask, response, baseline)
    if case.get("checkpointing"):
        enable_gradient_checkpointing(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    after_forward = []

    def step() -> None:
        with autocast:
            out = policy_forward(model, prompt_ids, prompt_mask, response_ids, response_mask, with_grad=True)
        loss = -(out.logp * response_mask).sum() / response_mask.sum()
        after_forward.append(status_kib("VmRSS") * 1024)
        loss.backward()
        del out, loss
        optimizer.step()

    start = time.perf_counter()
    step()  # warm-up: AdamW state, lazy initialisation
    optimizer.zero_grad(set_to_none=False)
    trim()
    resident = status_kib("VmRSS") * 1024
    reset_peak()
    step()
    peak = status_kib("VmHWM") * 1024
    return {"resident": resident - baseline, "forward": after_forward[-1] - resident, "step": peak - resident,
            "total": peak - baseline, "params": sum(p.numel() for p in model.parameters()),
            "seconds": time.perf_counter() - start}


def estimate(name: str) -> dict:
    """The planner's numbers for the case, split like the measurement."""
    from clipo.training.memory import ModelShape, estimate_memory

    case = CASES[name]
    vocab = case.get("vocab", VOCAB)
    shape = ModelShape(hidden_size=case["hidden"], num_layers=case["layers"], heads=case["heads"],
                       kv_heads=case["kv_heads"], intermediate_size=case["intermediate"], vocab_size=vocab,
                       tie_word_embeddings=case.get("tied", False))
    plan = estimate_memory(shape, precision=case.get("precision", "fp32"), parallel="none",
                           micro_batch_size=case["rows"], prompt_tokens=case["prompt"],
                           response_tokens=case["response"], gradient_checkpointing=bool(case.get("checkpointing")),
                           rollout_batch=case["rows"])
    if case.get("generate"):  # rollout phase: weights, then the KV cache and the prefill / sampling work
        step = plan.kv_cache + plan.rollout_work
        return {"resident": plan.weights, "forward": 0, "step": step, "total": plan.weights + step,
                "params": shape.num_params(), "kv_cache": plan.kv_cache}
    resident = plan.weights + plan.gradients + plan.optimizer
    # the step's peak above resident: the training forward/backward, or AdamW's temporaries
    step = max(plan.compute_weights + plan.activations + max(plan.logits, plan.recompute), plan.optimizer_work)
    saved_logits = 4 * case["rows"] * (case["response"] + 1) * vocab  # float32 log-softmax inputs kept for backward
    return {"resident": resident, "forward": plan.compute_weights + plan.activations + saved_logits, "step": step,
            "total": resident + step, "params": shape.num_params(), "activations": plan.activations,
            "logits": plan.logits}


def describe(name: str, params: int) -> str:
    case = CASES[name]
    extras = [case.get("precision", "fp32")]
    extras += ["tied"] if case.get("tied") else []
    extras += ["ckpt"] if case.get("checkpointing") else []
    extras += ["generate"] if case.get("generate") else []
    return (f"h{case['hidden']} L{case['layers']} I{case['intermediate']} V{case.get('vocab', VOCAB) // 1000}k "
            f"{params / 1e6:.0f}M {' '.join(extras)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--worker", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_case(args.worker)))
        return 0

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(64 * 1024), "OMP_NUM_THREADS": "1"}
    print("$ python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]))
    print("MiB; resident = weights + grads + AdamW; fwd = end of forward; step = peak of the step above resident")
    print(f"{'case':<8} {'model':<36} {'tokens':>6} | {'resident':>13} | {'fwd':>13} | {'step':>13} | "
          f"{'total':>13} {'est/meas':>8}")
    print(f"{'':<8} {'':<36} {'':>6} | " + " | ".join([f"{'meas':>6} {'est':>6}"] * 4))
    worst = 0.0
    for name in args.cases:
        out = subprocess.run([sys.executable, __file__, "--worker", name], capture_output=True, text=True, env=env,
                             cwd=REPO)
        if out.returncode != 0:
            print(f"{name}: worker failed\n{out.stderr[-2000:]}")
            return 1
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        estimated = estimate(name)
        if measured["params"] != estimated["params"]:
            raise SystemExit(f"{name}: the model has {measured['params']} parameters, the planner says {estimated['params']}")
        case = CASES[name]
        tokens = case["rows"] * (case["prompt"] + case["response"])
        cells = [f"{measured[k] / MIB:6.0f} {estimated[k] / MIB:6.0f}" for k in ("resident", "forward", "step", "total")]
        ratio = estimated["total"] / measured["total"]
        worst = max(worst, abs(ratio - 1))
        print(f"{name:<8} {describe(name, measured['params']):<36} {tokens:>6} | " + " | ".join(cells)
              + f" {ratio:8.3f}   ({measured['seconds']:.0f} s)", flush=True)
    print(f"largest |est/meas - 1| on the total: {worst:.1%} (goal: within 25%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
