"""The hand-labelled verifier cases (tests/fixtures/verifier_cases.jsonl) are well formed and match the data."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "verifier_cases.jsonl"
SOURCES = ["gsm8k", "math75", "gsm_p1", "gsm_p2", "gsm_symbolic", "math", "math_perturb_simple",
           "math_perturb_hard", "aime", "aime2025", "amc", "theoremqa", "truthfulqa", "mmlu2k", "commonsense_qa"]
REQUIRED = {"id": str, "data_source": str, "ground_truth": str, "response": str, "label": int, "why": str}


@pytest.fixture(scope="module")
def cases():
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_schema(cases):
    assert len(cases) >= 320
    ids = [c["id"] for c in cases]
    assert len(set(ids)) == len(ids)
    for c in cases:
        for key, typ in REQUIRED.items():
            assert isinstance(c[key], typ), (c["id"], key)
        assert c["label"] in (0, 1) and c["why"].strip()
        assert c["id"].rsplit("-", 1)[0] == c["data_source"].removeprefix("conrl/"), c["id"]
        if "options" in c:
            assert c["options"] and all(isinstance(o, str) and len(o) == 1 for o in c["options"]), c["id"]


def test_every_source_is_covered_with_both_labels(cases):
    per = Counter(c["data_source"] for c in cases)
    assert set(per) == {f"conrl/{s}" for s in SOURCES}
    assert min(per.values()) >= 15
    for s in SOURCES:
        labels = {c["label"] for c in cases if c["data_source"] == f"conrl/{s}"}
        assert labels == {0, 1}, s
    share = sum(c["label"] for c in cases) / len(cases)
    assert 0.4 <= share <= 0.65


def test_multiple_choice_rows_carry_their_options(cases):
    for c in cases:
        if c["data_source"] in ("conrl/mmlu2k", "conrl/commonsense_qa", "conrl/truthfulqa"):
            assert c["ground_truth"] in c["options"], c["id"]


def test_ground_truths_are_the_stored_ones(cases, shared_data):
    pq = pytest.importorskip("pyarrow.parquet")
    tables = {}
    for c in cases:
        key = (c["split"], c["data_source"].removeprefix("conrl/"))
        if key not in tables:
            tables[key] = pq.read_table(shared_data / key[0] / f"{key[1]}.parquet",
                                        columns=["reward_model", "data_source"]).to_pylist()
        row = tables[key][c["row"]]
        assert row["reward_model"]["ground_truth"] == c["ground_truth"], c["id"]
        assert row["data_source"] == c["data_source"], c["id"]
