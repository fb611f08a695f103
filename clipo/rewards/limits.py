"""Time limits and counters for verification.

A reward function runs inside the training loop, so it must never hang (sympy can spend minutes on
``9^9^9^9``) nor raise. Two layers protect it:

* :func:`time_limit` - a SIGALRM interval timer. It interrupts pure-Python work (sympy, regexes) and is
  cheap, but POSIX only delivers signals to the main thread, so elsewhere it is a no-op and callers must
  rely on the process pool of :mod:`clipo.rewards.batch` (which kills and restarts a stuck worker).
* :class:`VerifierStats` - counters for scored / correct / timed-out / errored / unscored calls, so a
  run can log how often the verifier gave up instead of silently reading those as "wrong".
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Dict, Iterator, Optional

__all__ = ["VerificationTimeout", "time_limit", "can_interrupt", "VerifierStats", "GLOBAL_STATS"]


class VerificationTimeout(Exception):
    """Raised inside a verification that ran past its time limit."""


def can_interrupt() -> bool:
    """Whether :func:`time_limit` can actually interrupt work in the calling thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _raise_timeout(signum, frame):  # noqa: ARG001 - signal handler signature
    raise VerificationTimeout("verification exceeded its time limit")


@contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[bool]:
    """Raise :class:`VerificationTimeout` in the block if it runs longer than ``seconds``.

    Yields whether the limit is enforced (False off the main thread or for ``seconds`` None/<=0).
    An enclosing interval timer (another library's alarm) is restored with its remaining time.
    Note: a signal is only handled between Python bytecodes, so one long C call (a huge integer power)
    is not interrupted; :func:`clipo.rewards.normalize.looks_explosive` keeps such inputs away from sympy.
    """
    if not seconds or seconds <= 0 or not can_interrupt():
        yield False
        return
    old_handler = signal.signal(signal.SIGALRM, _raise_timeout)
    started = time.monotonic()
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:
            # Give the outer timer back what is left of it after the time this block really took (at least
            # a tick so it still fires); subtracting the whole limit would eat an outer alarm's budget.
            elapsed = time.monotonic() - started
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - elapsed, 1e-3), old_interval)


@dataclass
class VerifierStats:
    """Counters of a scorer; add two with ``+`` or :meth:`merge`, log with :meth:`as_dict`.

    ``calls`` every score request; ``correct`` scores > 0; ``no_answer`` responses without a final
    answer in the required format; ``timeouts`` verifications cut by the time limit (scored 0);
    ``errors`` verifications that raised (scored 0); ``unscored`` custom rewards that returned None;
    ``worker_restarts`` pool workers killed after a hard timeout; ``seconds`` time spent scoring.
    """

    calls: int = 0
    correct: int = 0
    no_answer: int = 0
    timeouts: int = 0
    errors: int = 0
    unscored: int = 0
    worker_restarts: int = 0
    seconds: float = 0.0

    def merge(self, other: "VerifierStats") -> "VerifierStats":
        """Add ``other``'s counters into this object (in place) and return it."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def __add__(self, other: "VerifierStats") -> "VerifierStats":
        return VerifierStats().merge(self).merge(other)

    def reset(self) -> None:
        """Zero every counter."""
        for f in fields(self):
            setattr(self, f.name, type(getattr(self, f.name))())

    def as_dict(self, prefix: str = "verifier/") -> Dict[str, float]:
        """Flat metrics dict for a logger, plus the timeout rate (timeouts per call)."""
        d = {f"{prefix}{k}": v for k, v in asdict(self).items()}
        d[f"{prefix}timeout_rate"] = self.timeouts / self.calls if self.calls else 0.0
        return d


# Counters of calls that were not given their own `stats=` object (one per process).
GLOBAL_STATS = VerifierStats()
