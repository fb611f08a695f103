"""Accuracy of the answer verifiers on the hand-labelled responses in ``tests/fixtures/verifier_cases.jsonl``.

Run from the repository root::

    python benchmarks/verifier_accuracy.py                 # table of all scorers + per-source table
    python benchmarks/verifier_accuracy.py --show-errors   # also list every misjudged case

Scorers compared: clipo robust mode (lenient format policy, which is the labelling policy of the set,
and strict), clipo official mode (the CLIPO paper's scorer; it agrees with the real one on all 583 cases, see
tests/rewards/test_official_scorer.py), and plain math-verify
(``verify(parse(gold), parse(response))``). Columns: accuracy, false-positive rate (label-0 responses
scored correct, over all label-0), false-negative rate (label-1 responses scored wrong, over all label-1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from clipo.rewards import VerifierStats, extract_final_answer, score_answer  # noqa: E402

DEFAULT_CASES = REPO / "tests" / "fixtures" / "verifier_cases.jsonl"


def load_cases(path: Path) -> List[dict]:
    """Read the JSONL file of labelled cases."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


SHARED_DATA = Path(os.environ.get("CLIPO_DATA_DIR") or REPO.parent / "shared" / "data" / "clipo")


def attach_prompts(cases: List[dict], data_dir: Path = SHARED_DATA) -> int:
    """Add each case's question text (``prompt``) from its parquet row, when the paper's data is present.

    The scorer uses the prompt for option texts and to spot answers that only restate the question, as it
    would in training where the prompt is always at hand. Returns how many cases got a prompt.
    """
    if not data_dir.is_dir():
        return 0
    import pandas as pd

    frames: Dict[Tuple[str, str], "pd.DataFrame"] = {}
    n = 0
    for c in cases:
        name = c["data_source"].split("/", 1)[1]
        key = (c.get("split", "test"), name)
        path = data_dir / key[0] / f"{name}.parquet"
        if key not in frames:
            frames[key] = pd.read_parquet(path) if path.exists() else None
        df = frames[key]
        if df is not None and "row" in c and 0 <= c["row"] < len(df):
            c["prompt"] = "\n".join(m["content"] for m in df.prompt.iloc[c["row"]])
            n += 1
    return n


def _robust(policy: str, stats: VerifierStats) -> Callable[[dict], float]:
    def run(case: dict) -> float:
        return score_answer(case["response"], case["ground_truth"], data_source=case["data_source"],
                            options=case.get("options"), prompt=case.get("prompt"), format_policy=policy,
                            stats=stats)
    return run


def _official(stats: VerifierStats) -> Callable[[dict], float]:
    def run(case: dict) -> float:
        # The whole math75 reference solution, as the paper's scorer receives it (it reads the last box itself).
        return score_answer(case["response"], case["ground_truth"], data_source=case["data_source"], mode="official",
                            stats=stats)
    return run


def _math_verify() -> Callable[[dict], float]:
    from math_verify import parse, verify

    def run(case: dict) -> float:
        gt = case["ground_truth"]
        if case["data_source"].endswith("math75"):
            gt = extract_final_answer(gt) or ""
        try:
            return float(verify(parse(f"${gt}$"), parse(case["response"])))
        except Exception:  # noqa: BLE001 - count a crash as "not correct", like a training loop would
            return 0.0
    return run


def rates(pairs: List[Tuple[int, float]]) -> Dict[str, float]:
    """accuracy / false-positive rate / false-negative rate from (label, score) pairs."""
    n = len(pairs)
    neg = [s for lab, s in pairs if lab == 0]
    pos = [s for lab, s in pairs if lab == 1]
    correct = sum((s > 0) == (lab == 1) for lab, s in pairs)
    return {
        "n": n,
        "acc": correct / n if n else 0.0,
        "fpr": sum(s > 0 for s in neg) / len(neg) if neg else 0.0,
        "fnr": sum(s <= 0 for s in pos) / len(pos) if pos else 0.0,
        "fp": sum(s > 0 for s in neg),
        "fn": sum(s <= 0 for s in pos),
    }


def evaluate(cases: List[dict]) -> Dict[str, dict]:
    """Score every case with every scorer; returns {scorer: {"scores": [...], "seconds": t, "stats": ...}}."""
    out = {}
    for name, make in (
        ("clipo robust (lenient)", lambda st: _robust("lenient", st)),
        ("clipo robust (strict)", lambda st: _robust("strict", st)),
        ("clipo official", _official),
        ("math-verify", lambda st: _math_verify()),
    ):
        stats = VerifierStats()
        fn = make(stats)
        t0 = time.perf_counter()
        scores = [fn(c) for c in cases]
        out[name] = {"scores": scores, "seconds": time.perf_counter() - t0, "stats": stats}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--show-errors", action="store_true", help="list misjudged cases of the robust scorer")
    args = ap.parse_args(argv)
    if not args.cases.exists():
        print(f"no labelled cases at {args.cases}", file=sys.stderr)
        return 2
    cases = load_cases(args.cases)
    with_prompt = attach_prompts(cases)
    labels = [int(c["label"]) for c in cases]
    results = evaluate(cases)

    print(f"{len(cases)} labelled responses ({sum(labels)} correct / {len(labels) - sum(labels)} wrong) "
          f"from {args.cases.relative_to(REPO) if args.cases.is_relative_to(REPO) else args.cases}; "
          f"{with_prompt} with their question text from {SHARED_DATA}\n")
    print(f"{'scorer':<26} {'accuracy':>9} {'FP rate':>8} {'FN rate':>8} {'FP':>4} {'FN':>4} {'sec':>6}")
    for name, res in results.items():
        r = rates(list(zip(labels, res["scores"])))
        print(f"{name:<26} {r['acc']:>9.2%} {r['fpr']:>8.2%} {r['fnr']:>8.2%} {r['fp']:>4} {r['fn']:>4} "
              f"{res['seconds']:>6.2f}")

    main_name = "clipo robust (lenient)"
    robust = results[main_name]["scores"]
    print(f"\nper data source, {main_name}:")
    print(f"{'data_source':<28} {'n':>4} {'accuracy':>9} {'FP rate':>8} {'FN rate':>8}")
    by_src: Dict[str, List[Tuple[int, float]]] = defaultdict(list)
    for c, lab, s in zip(cases, labels, robust):
        by_src[c["data_source"]].append((lab, s))
    for src in sorted(by_src):
        r = rates(by_src[src])
        print(f"{src:<28} {r['n']:>4} {r['acc']:>9.2%} {r['fpr']:>8.2%} {r['fnr']:>8.2%}")
    st = results[main_name]["stats"]
    print(f"\nrobust stats: timeouts={st.timeouts} errors={st.errors} no_answer={st.no_answer}")

    if args.show_errors:
        print("\nmisjudged by the robust scorer:")
        for c, lab, s in zip(cases, labels, robust):
            if (s > 0) != (lab == 1):
                print(f"- {c['id']} label={lab} score={s} gt={c['ground_truth'][:60]!r}\n"
                      f"    why: {c['why']}\n    response tail: {c['response'][-200:]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
