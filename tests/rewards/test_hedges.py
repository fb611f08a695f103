"""No hedge scores: a final answer that names a wrong answer besides the right one is wrong (robust mode).

For ground truth A (right) and B (wrong), responses such as ``\\boxed{A \\text{ (or maybe B)}}``,
``\\boxed{\\boxed{A} B}``, ``\\boxed{A \\approx B}``, ``\\boxed{C vs D}`` or the whole option list boxed must score 0
in robust mode, under both format policies, while the legitimate spellings (``\\boxed{18.0}``, units, ``x = 18``,
tuples, intervals, unordered lists, ``\\boxed{(C)}``, ``\\boxed{C. text of C}``) keep scoring 1. Official mode keeps
the paper's behaviour (bugs included); what it gives on the hedges is pinned here, not changed.

(a) hedges built from real ground truths (the first rows of every parquet file of the paper's data, through the
``shared_data`` fixture, which skips where the data is absent); (b) legitimate variants; (c) hypothesis property
tests: random hedges of random real ground truths never score 1, random garbage never raises and finishes within
the time limit (the number of inputs tried and the worst latency are printed; run with ``-s`` to see them).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Dict, List

import pytest
from test_real_data_rows import perturb

from clipo.rewards import extract_final_answer, score_answer
from clipo.rewards.choice import parse_gold_letter, resolve_choices
from clipo.rewards.scoring import DEFAULT_TIMEOUT_S, answer_type

ROWS_PER_FILE = 6
POLICIES = ("strict", "lenient")

# Hedges of a non-choice answer: {A} right, {B} wrong.
MATH_HEDGES = {
    "or maybe": r"\boxed{{{A} \text{{ (or maybe {B})}}}}",
    "is wrong": r"\boxed{{{A} \text{{ is wrong; the answer is {B}}}}}",
    "nested box": r"\boxed{{\boxed{{{A}}} {B}}}",
    "approx": r"\boxed{{{A} \approx {B}}}",
    "vs": r"\boxed{{{A} vs {B}}}",
    "OR": r"\boxed{{{A} OR {B}}}",
    "probably not": r"\boxed{{{A} but probably not}}",
    "question mark": r"\boxed{{{A}\text{{?}}}}",
    "either or (text)": r"\boxed{{\text{{either }} {A} \text{{ or }} {B}}}",
    "hidden in text": r"\boxed{{\text{{the answer is }} {A} \text{{, not }} {B}}}",
    "false equation": r"\boxed{{{B} = {A}}}",
    "bracketed alternative": r"\boxed{{{A} \; ({B})}}",
    "two answers": r"\boxed{{{A}, {B}}}",
    "unless": r"\boxed{{{A} \text{{ unless it is }} {B}}}",
}
# Hedges of a multiple-choice answer: {A} the right letter, {B} a wrong one, {ALL} the option list.
CHOICE_HEDGES = {
    "vs": r"\boxed{{{A} vs {B}}}",
    "OR": r"\boxed{{{A} OR {B}}}",
    "or maybe": r"\boxed{{{A} \text{{ (or maybe {B})}}}}",
    "nested box": r"\boxed{{\boxed{{{A}}} {B}}}",
    "neq": r"\boxed{{{A} \neq {B}}}",
    "bracketed alternative": r"\boxed{{{A} ({B})}}",
    "question mark": r"\boxed{{{A}? {B}?}}",
    "option letters": r"\boxed{{{LETTERS}}}",
    "option list": r"\boxed{{{ALL}}}",
}

# What the paper's real scorer gives on the hedges above for the sampled rows: how many of them it scores 1, per
# template (counted by running the official code outside this project on these exact responses; see
# tests/fixtures/README.md). Not a goal: official mode must stay the paper's.
OFFICIAL_ONES = {
    "math": {"or maybe": 77, "is wrong": 77, "nested box": 78, "approx": 0, "vs": 0, "OR": 0, "probably not": 0,
             "question mark": 0, "either or (text)": 0, "hidden in text": 0, "false equation": 10,
             "bracketed alternative": 0, "two answers": 0, "unless": 77},
    "choice": {"vs": 0, "OR": 0, "or maybe": 0, "nested box": 18, "neq": 0, "bracketed alternative": 0,
               "question mark": 0, "option letters": 0, "option list": 0},
}

def _load(shared_data: Path) -> List[dict]:
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(shared_data.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["data_source", "prompt", "reward_model"]).slice(0, ROWS_PER_FILE)
        for i, row in enumerate(table.to_pylist()):
            gt = row["reward_model"]["ground_truth"]
            source = row["data_source"]
            prompt = "\n".join(m["content"] for m in row["prompt"])
            answer = extract_final_answer(gt) if "\\boxed" in gt else gt
            if answer is None:
                continue
            rows.append({"file": f"{path.parent.name}/{path.stem}", "row": i, "data_source": source,
                         "prompt": prompt, "ground_truth": gt, "answer": answer,
                         "wrong": perturb(answer, source, prompt), "kind": answer_type(answer, source)})
    return rows


@pytest.fixture(scope="module")
def rows(shared_data) -> List[dict]:
    rows = _load(shared_data)
    assert len({r["file"] for r in rows}) == 16
    return rows


def _score(row: dict, response: str, **kw) -> float:
    return score_answer(response, row["ground_truth"], data_source=row["data_source"], prompt=row["prompt"], **kw)


def _choice_fill(row: dict, template: str) -> str:
    spec = resolve_choices(None, row["prompt"], row["data_source"])
    gold = parse_gold_letter(row["answer"])
    wrong = parse_gold_letter(row["wrong"])
    listed = " ".join(f"({x}) {spec.texts.get(x, '')}".strip() for x in spec.letters)
    return template.format(A=gold, B=wrong, LETTERS=", ".join(spec.letters), ALL=listed)


def _hedges(row: dict) -> Dict[str, str]:
    if row["kind"] == "choice":
        return {name: "So " + _choice_fill(row, t) + "." for name, t in CHOICE_HEDGES.items()}
    return {name: "So " + t.format(A=row["answer"], B=row["wrong"]) + "." for name, t in MATH_HEDGES.items()}


# ----------------------------------------------------------------------------------------------- (a) hedges


def test_real_answers_score_and_their_hedges_do_not(rows):
    failures, official = [], {"math": {}, "choice": {}}
    for row in rows:
        for policy in POLICIES:
            assert _score(row, f"So \\boxed{{{row['answer']}}}.", format_policy=policy) == 1.0, row
        group = "choice" if row["kind"] == "choice" else "math"
        for name, response in _hedges(row).items():
            for policy in POLICIES:
                if _score(row, response, format_policy=policy) != 0.0:
                    failures.append((row["file"], row["row"], policy, response))
            # Official mode: the paper's behaviour, recorded; it must answer 0 or 1 and never raise.
            off = _score(row, response, mode="official")
            assert off in (0.0, 1.0)
            official[group][name] = official[group].get(name, 0) + int(off)
    print(f"\nofficial mode scores 1 on these hedges (of {len(rows)} rows): {official}")
    assert not failures, f"{len(failures)} hedges scored 1: {failures[:10]}"
    assert official == OFFICIAL_ONES, official


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("response,gt,source", [
    (r"\boxed{18 \text{ (or maybe 19)}}", "18", "conrl/gsm8k"),
    (r"\boxed{18 \text{ is wrong; the answer is 19}}", "18", "conrl/gsm8k"),
    (r"\boxed{\boxed{18} 19}", "18", "conrl/gsm8k"),
    (r"\boxed{18 \approx 19}", "18", "conrl/gsm8k"),
    (r"\boxed{18 but probably not}", "18", "conrl/gsm8k"),
    (r"\boxed{18.0000000001}", "18", "conrl/gsm8k"),
    (r"\boxed{18 + 10^{-10}}", "18", "conrl/math"),
    (r"\boxed{0.2500000001}", r"\frac{1}{4}", "conrl/math"),
    (r"\boxed{32.5000001}", "32.5", "conrl/gsm_p2"),
    (r"\boxed{19 = 18}", "18", "conrl/gsm8k"),
    (r"\boxed{2 + 2 = 18}", "18", "conrl/math"),
    (r"\boxed{0 (1)}", "0", "conrl/math"),
    (r"\boxed{\frac23 (\frac33)}", r"\frac23", "conrl/math"),
    (r"\boxed{y = -3x = y = -2x}", "y = -2x", "conrl/math"),
    (r"\boxed{18 \text{ apples and 19 pears}}", "18", "conrl/gsm8k"),
    (r"\boxed{18 \text{ (19 pears)}}", "18", "conrl/gsm8k"),
    (r"\boxed{\text{either 18 or 19}}", "18", "conrl/gsm8k"),
    (r"\boxed{18 \to 19}", "18", "conrl/math"),
    (r"\boxed{C vs D}", "C", "conrl/mmlu2k"),
    (r"\boxed{C OR D}", "C", "conrl/mmlu2k"),
    (r"\boxed{A, B, C, D}", "C", "conrl/mmlu2k"),
    (r"\boxed{(A) 3 (B) 4 (C) 5 (D) 6}", "A", "conrl/mmlu2k"),
    (r"\boxed{C \text{ (not D)}}", "C", "conrl/mmlu2k"),
    (r"\boxed{C = D}", "C", "conrl/mmlu2k"),
    (r"\boxed{\text{(B)}\\C}", r"\text{(B)}", "conrl/math75"),
    (r"\boxed{\text{True (maybe False)}}", "True", "conrl/theoremqa"),
    ("The answer is 18, or maybe 19.", "18", "conrl/gsm8k"),
    ("The answer is 18 but probably not.", "18", "conrl/gsm8k"),
])
def test_hedges_score_zero(response, gt, source, policy):
    assert score_answer(response, gt, data_source=source, format_policy=policy) == 0.0


def test_official_mode_keeps_the_papers_behaviour():
    # The paper's scorer (clipo/rewards/official.py) is kept as it is: some hedges pass there.
    assert score_answer(r"\boxed{18 \text{ (or maybe 19)}}", "18", data_source="conrl/gsm8k", mode="official") == \
        OFFICIAL_EXAMPLES["or maybe"]
    assert score_answer(r"\boxed{18.0000000001}", "18", data_source="conrl/gsm8k", mode="official") == \
        OFFICIAL_EXAMPLES["near-equal"]
    assert score_answer(r"\boxed{C vs D}", "C", data_source="conrl/mmlu2k", mode="official") == \
        OFFICIAL_EXAMPLES["vs"]


OFFICIAL_EXAMPLES = {"or maybe": 1.0, "near-equal": 1.0, "vs": 0.0}  # the real scorer's outputs


# ------------------------------------------------------------------------------------------ (b) legitimate

LEGIT = [
    (r"\boxed{18}", "18", "conrl/gsm8k"),
    (r"\boxed{18.0}", "18", "conrl/gsm8k"),
    (r"\boxed{18.000}", "18", "conrl/gsm8k"),
    (r"\boxed{32.50}", "32.5", "conrl/gsm_p2"),
    (r"\boxed{18 \text{ apples}}", "18", "conrl/gsm8k"),
    (r"\boxed{18 apples}", "18", "conrl/gsm8k"),
    (r"\boxed{15 \text{ cm}^2}", "15", "conrl/math"),
    (r"\boxed{\$18.90}", "18.90", "conrl/gsm8k"),
    (r"\boxed{x = 18}", "18", "conrl/math"),
    (r"\boxed{\boxed{18}}", "18", "conrl/gsm8k"),
    (r"\boxed{59 + 63 = 122}", "122", "conrl/gsm8k"),
    (r"\boxed{p + q = 23}", "23", "conrl/math"),
    (r"\boxed{\binom{5}{2} = 10}", "10", "conrl/math"),
    (r"\boxed{0.56 = 56\%}", r"0.56 = 56\%", "conrl/math75"),
    (r"\boxed{\frac{1}{2}}", "0.5", "conrl/math"),
    (r"\boxed{0.5}", r"\frac{1}{2}", "conrl/math"),
    (r"\boxed{0.3333333333}", r"\frac{1}{3}", "conrl/math"),
    (r"\boxed{\frac{1}{3} \approx 0.333}", r"\frac{1}{3}", "conrl/math"),
    (r"\boxed{2\sqrt{2} \approx 2.83}", r"2\sqrt{2}", "conrl/math"),
    (r"\boxed{0.67048}", "0.6705", "conrl/theoremqa"),
    (r"\boxed{(3, 4)}", "(3, 4)", "conrl/math"),
    (r"\boxed{[-2, 7]}", "[-2, 7]", "conrl/math"),
    (r"\boxed{-2 \le x \le 7}", "[-2, 7]", "conrl/math"),
    (r"\boxed{3, 2}", "2, 3", "conrl/math"),
    (r"\boxed{0 \text{ or } 4}", "0 or 4", "conrl/math_perturb_hard"),
    (r"\boxed{(x+1)^2 = x^2 + 2x + 1}", "(x+1)^2", "conrl/math"),
    (r"\boxed{5(x+1)}", "5x+5", "conrl/math"),
    (r"\boxed{\text{does not exist}}", r"\emptyset", "conrl/math"),
    (r"\boxed{C}", "C", "conrl/mmlu2k"),
    (r"\boxed{(C)}", "C", "conrl/mmlu2k"),
    (r"\boxed{\text{C}}", "C", "conrl/mmlu2k"),
    (r"\boxed{C. five}", "C", "conrl/mmlu2k"),
    (r"\boxed{\textbf{(B)}}", r"\text{(B)}", "conrl/math75"),
    (r"\boxed{True}", "True", "conrl/theoremqa"),
    ("The answer is 18.", "18", "conrl/gsm8k"),
]


@pytest.mark.parametrize("response,gt,source", LEGIT)
def test_legitimate_answers_score_one(response, gt, source):
    policies = POLICIES if "\\boxed" in response else ("lenient",)
    for policy in policies:
        assert score_answer(response, gt, data_source=source, format_policy=policy) == 1.0, policy


def test_option_text_after_the_letter_scores_one():
    prompt = "How many?\nA. three\nB. four\nC. five\nD. six"
    for response in (r"\boxed{C. five}", r"\boxed{(C) five}", r"\boxed{C}", r"\boxed{five}"):
        assert score_answer(response, "C", data_source="conrl/mmlu2k", prompt=prompt) == 1.0, response
    for response in (r"\boxed{C. six}", r"\boxed{C (or D)}", r"\boxed{(A) three (B) four (C) five (D) six}"):
        assert score_answer(response, "C", data_source="conrl/mmlu2k", prompt=prompt) == 0.0, response


def test_legitimate_spellings_of_real_answers(rows):
    for row in rows:
        a = row["answer"]
        if row["kind"] == "choice":
            letter = parse_gold_letter(a)
            variants = [f"\\boxed{{({letter})}}", f"\\boxed{{\\text{{{letter}}}}}"]
            texts = resolve_choices(None, row["prompt"], row["data_source"]).texts
            if letter in texts:
                variants.append(f"\\boxed{{{letter}. {texts[letter]}}}")
        elif row["kind"] == "numeric":
            variants = [f"\\boxed{{x = {a}}}", f"\\boxed{{{a} \\text{{ apples}}}}", f"\\boxed{{\\boxed{{{a}}}}}"]
            if "." not in a:
                variants.append(f"\\boxed{{{a}.0}}")
        else:
            variants = [f"\\boxed{{\\boxed{{{a}}}}}"]
        for response in variants:
            for policy in POLICIES:
                assert _score(row, "So " + response + ".", format_policy=policy) == 1.0, (row["file"], response)


# ----------------------------------------------------------------------------------------- (c) properties

try:
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st
except ImportError:  # the `test` extra installs it; without it only the property tests skip
    st = None

from clipo.rewards import VerifierStats  # noqa: E402

needs_hypothesis = pytest.mark.skipif(st is None, reason="hypothesis is not installed (pip install -e .[test])")

MAX_EXAMPLES = 200
DEADLINE_MS = 2 * DEFAULT_TIMEOUT_S * 1000
POOL_ROWS_PER_FILE = 30

# How A (right) and B (wrong) are combined; none of these may score 1.
JOINERS = [
    " or ", " OR ", r" \text{ or maybe } ", r" \text{ (or maybe ", " vs ", " versus ", r" \approx ", ", ", "; ",
    r" \quad ", r" \text{ but possibly } ", r" \text{ is wrong; the answer is } ", r" \text{, not } ", " = ",
    r" \to ", r" \neq ", r" \lor ", r" \text{ unless it is } ", " (", r" \; (", r" \text{ probably, else } ",
    " and ", r"\\ ", " | ",
]
WRAPS = [
    "\\boxed{{{X}}}", "So the answer is $\\boxed{{{X}}}$.", "\\boxed{{\\text{{{X}}}}}", "\\boxed{{{X}?}}",
    "The answer is {X}.", "\\boxed{{\\boxed{{{A}}} {B}}}", "\\boxed{{{A}}} or \\boxed{{{B}}}",
]


def _pool(shared_data: Path) -> List[dict]:
    import pyarrow.parquet as pq

    rng = random.Random(0)
    pool = []
    for path in sorted(shared_data.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["data_source", "prompt", "reward_model"])
        for i in sorted(rng.sample(range(table.num_rows), min(POOL_ROWS_PER_FILE, table.num_rows))):
            row = table.slice(i, 1).to_pylist()[0]
            gt = row["reward_model"]["ground_truth"]
            answer = extract_final_answer(gt) if "\\boxed" in gt else gt
            if answer:
                prompt = "\n".join(m["content"] for m in row["prompt"])
                pool.append({"data_source": row["data_source"], "prompt": prompt, "ground_truth": gt,
                             "answer": answer, "kind": answer_type(answer, row["data_source"]),
                             "wrong": perturb(answer, row["data_source"], prompt)})
    return pool


@pytest.fixture(scope="module")
def pool(shared_data) -> List[dict]:
    return _pool(shared_data)


def _timed(row: dict, response: str, stats: VerifierStats, worst: list, **kw) -> float:
    t0 = time.perf_counter()
    score = _score(row, response, stats=stats, timeout_s=DEFAULT_TIMEOUT_S, **kw)
    worst[0] = max(worst[0], time.perf_counter() - t0)
    return score


@needs_hypothesis
def test_random_hedges_never_score_one(pool):
    stats, worst, tried = VerifierStats(), [0.0], [0]
    others = [r["answer"] for r in pool if r["kind"] != "choice"]

    @settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE_MS, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.data())
    def check(data):
        row = data.draw(st.sampled_from(pool))
        a = row["answer"]
        if row["kind"] == "choice":
            letters = resolve_choices(None, row["prompt"], row["data_source"]).letters
            b = data.draw(st.sampled_from([x for x in letters if x.casefold() != parse_gold_letter(a).casefold()]))
            a = parse_gold_letter(a)
        else:
            b = data.draw(st.one_of(st.just(row["wrong"]), st.integers(-1000, 10**6).map(str),
                                    st.sampled_from(others)))
        if row["kind"] == "boolean":
            b = "False" if a.strip() == "True" else "True"
        policy = data.draw(st.sampled_from(POLICIES))
        wrap = data.draw(st.sampled_from(WRAPS))
        joiner = data.draw(st.sampled_from(JOINERS))
        first, second = data.draw(st.sampled_from([(a, b), (b, a)]))
        closing = ")" if joiner.rstrip().endswith("(") else ""
        response = wrap.format(X=f"{first}{joiner}{second}{closing}", A=a, B=b)
        # B must really be wrong on its own (a random number can equal A).
        assume(_timed(row, f"\\boxed{{{b}}}", stats, worst, format_policy=policy) == 0.0)
        tried[0] += 1
        assert _timed(row, response, stats, worst, format_policy=policy) == 0.0, (row["ground_truth"][-60:], response)

    check()
    print(f"\nhedge property: {tried[0]} hedges tried, {stats.calls} scorer calls, worst latency {worst[0]:.3f} s, "
          f"timeouts {stats.timeouts}, errors {stats.errors}")
    assert tried[0] >= MAX_EXAMPLES // 2


GARBAGE_TOKENS = [
    "\\boxed{", "\\fbox{", "}", "{", "\\frac", "\\sqrt", "^", "_", "9", "0", "1.5", "-", "+", "=", "\\approx", "(",
    ")", "[", "]", ",", ";", ".", "\\\\", "\\text{", "or", " ", "\n", "$", "</think>", "<think>", "!", "x",
    "\\pi", "10^{10^{10}}", "9^9^9", "\\begin{pmatrix}", "&", "\\end{pmatrix}", "%", "\\$", "\\{", "\\}",
    "The answer is ", "Answer: ", "#### ", "\\overline{3}", "e-07", "\\infty", "\\cup", "\\pm", "A", "(B)",
]


@needs_hypothesis
def test_random_garbage_never_raises_and_finishes_in_time(pool):
    stats, worst, tried = VerifierStats(), [0.0], [0]
    garbage = st.one_of(st.text(max_size=300), st.lists(st.sampled_from(GARBAGE_TOKENS), max_size=60).map("".join))

    @settings(max_examples=MAX_EXAMPLES, deadline=DEADLINE_MS, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(pool), garbage, st.sampled_from(POLICIES), st.sampled_from(["robust", "official"]))
    def check(row, response, policy, mode):
        tried[0] += 1
        t0 = time.perf_counter()
        score = _score(row, response, format_policy=policy, mode=mode, stats=stats, timeout_s=DEFAULT_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
        worst[0] = max(worst[0], elapsed)
        assert score in (0.0, 1.0)
        assert elapsed <= DEFAULT_TIMEOUT_S + 1.0, (response, elapsed)

    check()
    print(f"\ngarbage property: {tried[0]} responses tried, worst latency {worst[0]:.3f} s, "
          f"timeouts {stats.timeouts}, errors {stats.errors}")
