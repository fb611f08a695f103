"""The demo's synthetic task: the last digit of a sum, worked out step by step.

A prompt asks for the last digit of ``a1+a2+...+ak``; a well-reasoned answer writes every running sum and
boxes the last digit of the total::

    last digit of 7+5+9+3?      →      7+5=12;12+9=21;21+3=24;\\boxed{4}

The final answer is verifiable by the ordinary math verifier, and so is every intermediate step, which
makes "right answer, wrong reasoning" measurable: the last digit of a sum depends only on the last digits
of the running sums, so a response whose tens digits are wrong can still box the right answer. The warm-start
demonstrations contain such sloppy chains on purpose (a tens digit off by ten, carried on consistently), so
they exist at the start of RL.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

DATA_SOURCE = "builtin/arithmetic"
_STEP = re.compile(r"(\d+)\+(\d+)=(\d+)")


@dataclass(frozen=True)
class Problem:
    operands: tuple[int, ...]

    @property
    def prompt(self) -> str:
        return "last digit of " + "+".join(map(str, self.operands)) + "?"

    @property
    def answer(self) -> str:
        return str(sum(self.operands) % 10)


def make_problems(count: int, *, seed: int, num_operands: tuple[int, int] = (3, 5), max_operand: int = 9) -> list[Problem]:
    """``count`` problems with between ``num_operands`` terms in ``1..max_operand`` (deterministic in ``seed``)."""
    rng = random.Random(seed)
    return [Problem(tuple(rng.randint(1, max_operand) for _ in range(rng.randint(*num_operands)))) for _ in range(count)]


def worked_solution(problem: Problem, *, sloppy_step: int | None = None, sloppy_delta: int = 10) -> str:
    """The step-by-step solution; with ``sloppy_step`` the running sum written at that step is off by
    ``sloppy_delta`` and later steps carry the wrong value on (so only the tens digits are wrong)."""
    steps, total, written = [], problem.operands[0], problem.operands[0]
    for index, operand in enumerate(problem.operands[1:]):
        total += operand
        result = written + operand
        if index == sloppy_step:
            result += sloppy_delta
        steps.append(f"{written}+{operand}={result}")
        written = result
    return ";".join(steps) + ";\\boxed{" + str(written % 10) + "}"


@dataclass(frozen=True)
class ProcessCheck:
    """What the process checker found in one response."""

    answer_correct: bool  # the boxed last digit equals the true one
    steps_correct: bool  # every step is a correct addition, chained on the previous result, over the operands in order
    num_steps: int


def check_process(problem: Problem, response: str) -> ProcessCheck:
    """Check the final answer and every intermediate step of ``response`` against ``problem``."""
    boxed = re.findall(r"\\boxed\{(\d+)\}", response)
    answer_correct = bool(boxed) and boxed[-1] == problem.answer
    steps = _STEP.findall(response)
    expected = len(problem.operands) - 1
    ok = len(steps) == expected
    running = problem.operands[0]
    for index, (left, right, result) in enumerate(steps[:expected]):
        operand = problem.operands[index + 1]
        if int(left) != running or int(right) != operand or int(result) != running + operand:
            ok = False
            break
        running += operand
    if boxed and ok:
        ok = int(boxed[-1]) == running % 10
    return ProcessCheck(answer_correct, ok and answer_correct, len(steps))
