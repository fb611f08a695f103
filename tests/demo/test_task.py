"""The demo task's process checker on hand-written traces, and the problem generators."""
import pytest

from clipo.apps.demo.task import Problem, check_process, make_problems, worked_solution

P = Problem((7, 5, 9, 3))  # 7+5=12; 12+9=21; 21+3=24 → last digit 4


def test_problem_prompt_and_answer():
    assert P.prompt == "last digit of 7+5+9+3?"
    assert P.answer == "4"
    assert Problem((5, 5)).answer == "0"  # a multiple of ten ends in 0, not "10"
    assert Problem((9,)).answer == "9"


@pytest.mark.parametrize("response, answer_correct, steps_correct, num_steps", [
    # A fully correct chain: every running sum right, the right digit boxed.
    ("7+5=12;12+9=21;21+3=24;\\boxed{4}", True, True, 3),
    # Right answer, wrong reasoning: the first running sum is off by ten (22 instead of 12) and the error is carried
    # on consistently, so only tens digits are wrong and the last digit still comes out right.
    ("7+5=22;22+9=31;31+3=34;\\boxed{4}", True, False, 3),
    # Wrong units digit in the last step (21+3=25): the boxed answer follows the chain and is wrong.
    ("7+5=12;12+9=21;21+3=25;\\boxed{5}", False, False, 3),
    # Correct chain but a different digit boxed: the box is wrong, so neither counts.
    ("7+5=12;12+9=21;21+3=24;\\boxed{5}", False, False, 3),
    # A missing step (the +9 is skipped, 12+3 jumps): right digit boxed by luck, the chain is short and wrong.
    ("7+5=12;12+12=24;\\boxed{4}", True, False, 2),
    # Only two of three steps written, each correct, right digit boxed: the process is incomplete.
    ("7+5=12;12+9=21;\\boxed{4}", True, False, 2),
    # Operands in the wrong order (3 before 9): every addition is arithmetically right and the total is right, but
    # the chain does not follow the problem.
    ("7+5=12;12+3=15;15+9=24;\\boxed{4}", True, False, 3),
    # A wrong operand (8 instead of 9), with a compensating slip so the boxed digit is right.
    ("7+5=12;12+8=21;21+3=24;\\boxed{4}", True, False, 3),
    # An extra step after the chain (24+0=24): the expected number of steps is exceeded.
    ("7+5=12;12+9=21;21+3=24;24+0=24;\\boxed{4}", True, False, 4),
    # A correct chain but no box: no final answer, so nothing is correct.
    ("7+5=12;12+9=21;21+3=24;", False, False, 3),
    # Two boxes: the last one counts (first wrong, last right).
    ("7+5=12;12+9=21;21+3=24;\\boxed{3}\\boxed{4}", True, True, 3),
    # Two boxes the other way round: the last one (wrong) counts.
    ("7+5=12;12+9=21;21+3=24;\\boxed{4}\\boxed{3}", False, False, 3),
    # Boxing the whole total (24) rather than its last digit is not the asked-for answer.
    ("7+5=12;12+9=21;21+3=24;\\boxed{24}", False, False, 3),
    # Garbage text: no steps and no box.
    ("lorem ipsum }}{{ +=;? \\boxed{", False, False, 0),
    # Empty response.
    ("", False, False, 0),
])
def test_check_process_hand_written(response, answer_correct, steps_correct, num_steps):
    check = check_process(P, response)
    assert (check.answer_correct, check.steps_correct, check.num_steps) == (answer_correct, steps_correct, num_steps)


def test_worked_solution_is_fully_correct():
    assert worked_solution(P) == "7+5=12;12+9=21;21+3=24;\\boxed{4}"
    check = check_process(P, worked_solution(P))
    assert check.answer_correct and check.steps_correct and check.num_steps == 3


@pytest.mark.parametrize("sloppy_step, expected", [
    # The running sum written at the sloppy step is off by ten, and later steps carry the wrong value on.
    (0, "7+5=22;22+9=31;31+3=34;\\boxed{4}"),
    (1, "7+5=12;12+9=31;31+3=34;\\boxed{4}"),
    (2, "7+5=12;12+9=21;21+3=34;\\boxed{4}"),
])
def test_sloppy_worked_solution_is_right_answer_wrong_reasoning(sloppy_step, expected):
    text = worked_solution(P, sloppy_step=sloppy_step)
    assert text == expected
    check = check_process(P, text)
    assert check.answer_correct and not check.steps_correct and check.num_steps == 3


def test_sloppy_delta_not_multiple_of_ten_breaks_the_answer():
    # Only a tens-digit slip keeps the last digit: a delta of 1 changes the boxed digit.
    text = worked_solution(P, sloppy_step=0, sloppy_delta=1)
    assert text == "7+5=13;13+9=22;22+3=25;\\boxed{5}"
    check = check_process(P, text)
    assert not check.answer_correct and not check.steps_correct


def test_every_generated_problem_checks_both_ways():
    for problem in make_problems(200, seed=3):
        assert check_process(problem, worked_solution(problem)).steps_correct
        for step in range(len(problem.operands) - 1):
            check = check_process(problem, worked_solution(problem, sloppy_step=step))
            assert check.answer_correct and not check.steps_correct


def test_make_problems_deterministic_and_respects_operand_counts():
    a = make_problems(300, seed=5, num_operands=(2, 4), max_operand=7)
    assert a == make_problems(300, seed=5, num_operands=(2, 4), max_operand=7)
    assert a != make_problems(300, seed=6, num_operands=(2, 4), max_operand=7)
    assert len(a) == 300
    assert {len(p.operands) for p in a} == {2, 3, 4}  # both ends of the range occur in 300 draws
    assert all(1 <= x <= 7 for p in a for x in p.operands)
    fixed = make_problems(50, seed=1, num_operands=(6, 6))
    assert all(len(p.operands) == 6 for p in fixed)
    assert make_problems(0, seed=1) == []
