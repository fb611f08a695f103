"""Throughput of the robust verifier (responses per second), single process and with worker processes.

Run from the repository root::

    python benchmarks/verifier_throughput.py                    # 4000 responses, workers 0 and 2
    python benchmarks/verifier_throughput.py --n 8000 --workers 0 1 2 4

The responses are built from the paper's data (``$CLIPO_DATA_DIR``, else ``../shared/data/clipo``): a quarter each of correct boxed
answers, wrong boxed answers, unboxed answers, and long chains of thought (~3,000 characters of reasoning
inside ``<think>`` before the boxed answer). Rows are drawn with a fixed seed from every file, so LaTeX-heavy
sets (MATH, math75) are represented in proportion to their size.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATA = Path(os.environ.get("CLIPO_DATA_DIR") or REPO.parent / "shared" / "data" / "clipo")


def build_responses(n: int, seed: int = 0):
    """(responses, ground_truths, data_sources) for ``n`` responses of the four kinds."""
    import pandas as pd

    from clipo.rewards import extract_final_answer

    rows = []
    for path in sorted(DATA.glob("*/*.parquet")):
        df = pd.read_parquet(path, columns=["data_source", "reward_model"])
        for source, rm in zip(df.data_source, df.reward_model):
            rows.append((source, rm["ground_truth"]))
    rng = random.Random(seed)
    filler = ("We compute step by step, checking each intermediate value carefully. " * 45).strip()
    responses, gts, sources = [], [], []
    while len(responses) < n:
        source, gt = rng.choice(rows)
        answer = extract_final_answer(gt) if source.endswith("math75") else gt
        if not answer:
            continue
        kind = len(responses) % 4
        if kind == 0:
            text = f"Adding up, we get $\\boxed{{{answer}}}$."
        elif kind == 1:
            text = f"Adding up, we get $\\boxed{{{answer}1}}$."  # a wrong answer of the same shape
        elif kind == 2:
            text = f"Adding up, the answer is {answer}."
        else:
            text = f"<think>{filler} Maybe \\boxed{{0}}?</think>\n{filler[:500]}\nSo the answer is $\\boxed{{{answer}}}$."
        responses.append(text)
        gts.append(gt)
        sources.append(source)
    return responses, gts, sources


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="number of responses")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to time (0 = in process)")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-response time limit in seconds")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"the paper's data is not at {DATA}", file=sys.stderr)
        return 2
    from clipo.rewards import score_batch, shutdown_pools

    responses, gts, sources = build_responses(args.n)
    print(f"{len(responses)} responses (correct / wrong / unboxed / long CoT, 1:1:1:1) from {DATA}")
    print(f"{'workers':>7} {'seconds':>8} {'resp/s':>9} {'correct':>8} {'timeouts':>8}  note")
    for w in args.workers:
        note = "in process" if w == 0 else "incl. worker start-up"
        t0 = time.perf_counter()
        res = score_batch(responses, gts, data_sources=sources, num_workers=w, timeout_s=args.timeout)
        dt = time.perf_counter() - t0
        print(f"{w:>7} {dt:>8.2f} {len(responses) / dt:>9.0f} {res.stats.correct:>8} {res.stats.timeouts:>8}  {note}")
        if w > 0:
            # Second call on the warm pool: what a training loop sees after the first step.
            t0 = time.perf_counter()
            score_batch(responses, gts, data_sources=sources, num_workers=w, timeout_s=args.timeout)
            dt = time.perf_counter() - t0
            print(f"{w:>7} {dt:>8.2f} {len(responses) / dt:>9.0f} {'':>8} {'':>8}  warm pool (second batch)")
    shutdown_pools()
    return 0


if __name__ == "__main__":
    sys.exit(main())
