"""Every row of every file of the paper's data: its own answer scores 1, a perturbed answer scores 0.

The responses are realistic: a draft box inside ``<think>`` (which must be ignored), then the answer boxed in
a sentence. math75 rows pass the whole reference solution as the ground truth, as the data loader stores it.
Rows that cannot behave as expected are listed in ``ALLOWLIST`` with the reason. The data folder comes from
the ``shared_data`` fixture (tests/conftest.py: ``$CLIPO_DATA_DIR``, else the tests' default beside the checkout);
the test skips where it is absent.

Runs in about a minute on one core: 72,684 responses, most decided by the plain-number fast path (a
process pool does not pay off here: on 2 cores its start-up and the per-process caches cost more than it wins).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

from clipo.rewards import answer_type, extract_final_answer, resolve_choices, score_batch
from clipo.rewards.choice import parse_gold_letter

# (file, row, which response) -> why the expectation cannot hold for that row.
ALLOWLIST: Dict[Tuple[str, int, str], str] = {
    ("train/math75", 5341, "correct"): "the reference solution's last box is empty: there is no answer to reach",
    ("train/math75", 5343, "correct"): "the reference solution's last box is empty: there is no answer to reach",
}


def perturb(gt: str, data_source: str, prompt: str) -> str:
    """A wrong answer of the same kind: the next option letter, the other boolean, the first digit + 1,
    or the negation of a digit-free expression."""
    kind = answer_type(gt, data_source)
    if kind == "choice":
        letters = resolve_choices(None, prompt, data_source).letters
        gold = parse_gold_letter(gt)
        i = [c.casefold() for c in letters].index(gold.casefold())
        other = letters[(i + 1) % len(letters)]
        return f"({other})" if gt.startswith("(") else other
    if kind == "boolean":
        return "False" if gt.strip() == "True" else "True"
    m = re.search(r"\d", gt)
    if m:
        j = m.start()
        return gt[:j] + str((int(gt[j]) + 1) % 10) + gt[j + 1:]
    return f"-({gt})"


def _response(answer: str) -> str:
    return f"<think>Let me try \\boxed{{0}} first... no.</think>\nSo the final answer is $\\boxed{{{answer}}}$."


def _load_rows(data: Path) -> List[dict]:
    import pandas as pd

    rows = []
    for path in sorted(data.glob("*/*.parquet")):
        name = f"{path.parent.name}/{path.stem}"
        df = pd.read_parquet(path, columns=["data_source", "prompt", "reward_model"])
        for i, (source, prompt, rm) in enumerate(zip(df.data_source, df.prompt, df.reward_model)):
            rows.append({"file": name, "row": i, "data_source": source,
                         "prompt": "\n".join(m["content"] for m in prompt), "ground_truth": rm["ground_truth"]})
    return rows


def test_every_row_scores_its_answer_and_rejects_a_perturbation(shared_data):
    rows = _load_rows(shared_data)
    assert len({r["file"] for r in rows}) == 16 and len(rows) == 36342, "expected the 16 files, 36,342 rows"
    tasks, keys = [], []
    for r in rows:
        answer = extract_final_answer(r["ground_truth"]) if r["file"] == "train/math75" else r["ground_truth"]
        for which, text in (("correct", answer or ""), ("perturbed", perturb(answer or "0", r["data_source"], r["prompt"]))):
            tasks.append({**r, "response": _response(text)})
            keys.append((r["file"], r["row"], which))
    res = score_batch([t["response"] for t in tasks], [t["ground_truth"] for t in tasks],
                      data_sources=[t["data_source"] for t in tasks], prompts=[t["prompt"] for t in tasks],
                      num_workers=0, timeout_s=10)
    assert res.stats.timeouts == 0 and res.stats.worker_restarts == 0
    unexpected = []
    for key, score, task in zip(keys, res.scores, tasks):
        expected = 1.0 if key[2] == "correct" else 0.0
        if (score == expected) == (key in ALLOWLIST):
            unexpected.append((key, score, task["ground_truth"][-80:], task["response"][-80:]))
    assert not unexpected, f"{len(unexpected)} rows misbehave (or an allowlisted row now passes): {unexpected[:20]}"
