"""Fixtures of the trainer tests."""
import json
import random

import pytest


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    """32 JSONL prompts ``a+b=?`` with their sums, for tiny-trainer runs (the tiny reward ignores the answer)."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a, b in ((rng.randint(0, 9), rng.randint(0, 9)) for _ in range(32))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
