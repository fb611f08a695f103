"""The training forward+backward with each group's prompt computed once instead of n times.

(Written as a what-if; this is now ``policy_forward(..., group_size=n)``, which the trainer uses by default,
``trainer.share_prompt_forward``. ``shared`` below times that implementation; ``stock`` is ``group_size=None``.)

Run from the repository root::

    python benchmarks/whatif_shared_prompt_forward.py            # 10 measured pairs after 1 warm-up

clipo's ``policy_forward`` runs every rollout as prompt + response, so a group of n rollouts recomputes the
same prompt n times, in the no-grad forward and in the training forward and its backward. The alternative
timed here runs the B distinct prompts (all but their last token) once, with grad, into a ``DynamicCache``,
repeats the cache n times (``batch_repeat_interleave``, differentiable: the prompt's gradient is summed over
its n rollouts), then runs only [last prompt token, response] for the N rows on top of that cache. Same
log-probs and the same gradient (checked: max abs difference printed), less compute. Stock vs shared
alternate in time; reported: medians and the median paired ratio shared/stock of fwd+bwd time.
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch
from _common import build, command_line, iqr, machine_line, median, prompt_rows

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--resp-len", type=int, default=32)
    args = ap.parse_args()

    from clipo.models.forward import policy_forward

    tok, model = build(0)
    model.train()
    texts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                     add_generation_prompt=True) for r in prompt_rows(args.prompts)]
    enc = tok(texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    pu, mu = enc["input_ids"], enc["attention_mask"]
    n = args.n
    prompt_ids, prompt_mask = pu.repeat_interleave(n, 0), mu.repeat_interleave(n, 0)
    g = torch.Generator().manual_seed(0)
    resp = torch.randint(4, len(tok), (prompt_ids.shape[0], args.resp_len), generator=g)
    resp_mask = torch.ones_like(resp)
    weights = torch.randn(resp.shape, generator=g)

    def stock():
        out = policy_forward(model, prompt_ids, prompt_mask, resp, resp_mask, with_grad=True)
        return out.logp

    def shared():
        out = policy_forward(model, prompt_ids, prompt_mask, resp, resp_mask, with_grad=True, group_size=n)
        return out.logp

    def fwd_bwd(fn):
        logp = fn()
        (logp * weights).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        return logp.detach(), grads

    a_logp, a_grads = fwd_bwd(stock)
    b_logp, b_grads = fwd_bwd(shared)
    dlogp = (a_logp - b_logp).abs().max().item()
    dgrad = max((x - y).abs().max().item() for x, y in zip(a_grads, b_grads))
    times = {"stock": [], "shared": []}
    for i in range(args.reps):
        order = [("stock", stock), ("shared", shared)] if i % 2 == 0 else [("shared", shared), ("stock", stock)]
        for name, fn in order:
            t0 = time.perf_counter()
            fwd_bwd(fn)
            times[name].append(time.perf_counter() - t0)
    ratios = [b / a for a, b in zip(times["stock"], times["shared"])]
    p_len = pu.shape[1]
    print(f"command: {command_line()}")
    print(f"machine: {machine_line()}")
    print(f"{args.prompts} prompts x n={n}, prompt {p_len} tokens, response {args.resp_len} tokens; "
          f"tokens per fwd: stock {prompt_ids.shape[0] * (p_len + args.resp_len)}, "
          f"shared {args.prompts * (p_len - 1) + prompt_ids.shape[0] * (args.resp_len + 1)}")
    print(f"equivalence: max |dlogp| {dlogp:.2e}, max |dgrad| {dgrad:.2e}")
    print(f"stock  fwd+bwd: median {1000 * median(times['stock']):.0f} ms")
    print(f"shared fwd+bwd: median {1000 * median(times['shared']):.0f} ms")
    print(f"shared/stock: median of paired ratios {median(ratios):.3f} (IQR {iqr(ratios)[0]:.3f}-{iqr(ratios)[1]:.3f})")


if __name__ == "__main__":
    main()
