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

import functools
import signal
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterator, Optional, Tuple

__all__ = ["VerificationTimeout", "time_limit", "can_interrupt", "VerifierStats", "GLOBAL_STATS", "ByteBudgetCache"]


class VerificationTimeout(BaseException):
    """Raised inside a verification that ran past its time limit (or that the verifier refused as too big).

    A ``BaseException`` like ``KeyboardInterrupt``: libraries that wrap their work in ``except Exception``
    (math-verify around sympy) cannot swallow it and carry on without a limit. Catch it by name.
    """


def can_interrupt() -> bool:
    """Whether :func:`time_limit` can actually interrupt work in the calling thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


# After the limit fires, the alarm repeats every this many seconds (at most) until the block exits, so a timeout
# swallowed by a bare ``except:`` in a library is raised again instead of letting the work run unbounded.
REARM_S = 0.25


class _Limit:
    """State of one active :func:`time_limit` block (the signal handler raises only while it is active)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True

    def __call__(self, signum, frame):  # noqa: ARG002 - signal handler signature
        if self.active:
            raise VerificationTimeout("verification exceeded its time limit")


@contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[bool]:
    """Raise :class:`VerificationTimeout` in the block if it runs longer than ``seconds``.

    Yields whether the limit is enforced (False off the main thread or for ``seconds`` None/<=0).
    An enclosing interval timer (another library's alarm) is restored with its remaining time.
    After the limit fires the alarm repeats every :data:`REARM_S` until the block exits, so a library that
    swallows the timeout (a bare ``except:``) is interrupted again. Note: a signal is only handled between Python
    bytecodes, so one long C call (a huge integer power) is not interrupted;
    :func:`clipo.rewards.normalize.looks_explosive` and :func:`sympy_would_explode` keep such inputs away from sympy.
    """
    if not seconds or seconds <= 0 or not can_interrupt():
        yield False
        return
    limit = _Limit()
    old_handler = signal.signal(signal.SIGALRM, limit)
    started = time.monotonic()
    # Fires at `seconds`, then again every REARM_S until the block exits (a swallowed timeout is raised again).
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds, min(REARM_S, seconds))
    try:
        yield True
    finally:
        limit.active = False
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
    ``errors`` verifications that raised (scored 0); ``bad_values`` custom rewards that returned something
    other than a finite number or None (NaN, inf, a string, a list; scored 0); ``unscored`` custom rewards
    that returned None; ``worker_restarts`` pool workers killed after a hard timeout; ``seconds`` time spent
    scoring. ``example`` (not a counter) describes the first error or bad value seen, e.g. ``returned nan``.
    """

    calls: int = 0
    correct: int = 0
    no_answer: int = 0
    timeouts: int = 0
    errors: int = 0
    unscored: int = 0
    worker_restarts: int = 0
    seconds: float = 0.0
    bad_values: int = 0
    example: str = ""

    def merge(self, other: "VerifierStats") -> "VerifierStats":
        """Add ``other``'s counters into this object (in place) and return it (``example``: the first one kept)."""
        for f in fields(self):
            if f.name == "example":
                self.example = self.example or other.example
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def note(self, what: str) -> None:
        """Remember ``what`` went wrong (an error or a bad value) unless something is already remembered."""
        if not self.example:
            self.example = what[:200]

    def __add__(self, other: "VerifierStats") -> "VerifierStats":
        return VerifierStats().merge(self).merge(other)

    def reset(self) -> None:
        """Zero every counter."""
        for f in fields(self):
            setattr(self, f.name, type(getattr(self, f.name))())

    def as_dict(self, prefix: str = "verifier/") -> Dict[str, float]:
        """Flat metrics dict for a logger (numbers only: ``example`` is left out), plus the timeout rate."""
        d = {f"{prefix}{k}": v for k, v in asdict(self).items() if k != "example"}
        d[f"{prefix}timeout_rate"] = self.timeouts / self.calls if self.calls else 0.0
        return d


# Counters of calls that were not given their own `stats=` object (one per process).
GLOBAL_STATS = VerifierStats()


class ByteBudgetCache:
    """A least-recently-used cache whose entries are charged by size: memory stays bounded whatever the inputs.

    ``cost(key)`` estimates an entry's bytes (default: the key's length); entries costing more than ``max_item_bytes``
    are not kept, and the oldest ones are dropped while the total exceeds ``max_bytes``. ``nbytes`` is the total.
    Use :meth:`cached` as a decorator of a one-argument function.
    """

    def __init__(self, max_bytes: int, max_item_bytes: int, cost=None):
        self.max_bytes, self.max_item_bytes = max_bytes, max_item_bytes
        self._cost = cost or (lambda key: len(key) + 64)
        self._data: "OrderedDict[Any, Tuple[Any, int]]" = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return default
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: Any, value: Any) -> None:
        size = self._cost(key)
        if size > self.max_item_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._data[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes and self._data:
                _, (_, dropped) = self._data.popitem(last=False)
                self.nbytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.nbytes = 0

    def cached(self, fn):
        """Decorate ``fn(key)``: results are looked up here first and stored after a call (exceptions are not)."""
        missing = object()

        @functools.wraps(fn)
        def wrapper(key):
            value = self.get(key, missing)
            if value is missing:
                value = fn(key)
                self.put(key, value)
            return value

        wrapper.cache = self  # type: ignore[attr-defined]
        wrapper.cache_clear = self.clear  # type: ignore[attr-defined]
        return wrapper


# A symbolic engine evaluates integer powers and factorials in single C calls that no signal interrupts (``10**(10**12)``
# runs for hours): expressions that could build a number with more digits than this are refused instead.
MAX_DIGITS = 100_000
_LOG10_2 = 0.30103


def sympy_would_explode(exprs: Any, max_digits: float = MAX_DIGITS) -> bool:
    """Whether evaluating these (unevaluated) sympy expressions could build a number with over ``max_digits``
    digits or a power with an exponent over 10^5 (``9^{9^{9^{9}}}``, ``10^{10 \\cdot 10 \\cdots 10}``,
    ``(10^{10})!``). Works on the tree with float bounds only; never evaluates. Non-sympy items are ignored."""
    try:
        import sympy
    except ImportError:  # pragma: no cover - sympy comes with math-verify
        return False

    def bound(e) -> float:  # upper bound of log10|value| (0 for symbols and constants like pi)
        if isinstance(e, sympy.Rational):
            return max(int(e.p).bit_length(), int(e.q).bit_length()) * _LOG10_2
        if isinstance(e, sympy.Float):
            return max(0.0, float(e._mpf_[2] + e._mpf_[3]) * _LOG10_2) if e._mpf_[1] else 0.0
        if isinstance(e, sympy.Pow):
            base, exp = bound(e.base), bound(e.exp)
            if exp > 5:  # an exponent above 10^5
                return float("inf")
            return max(base, 0.0) * 10 ** exp + 1
        args = getattr(e, "args", ())
        if not args:
            return 0.0
        parts = [bound(a) for a in args if isinstance(a, sympy.Basic)]
        if not parts:
            return 0.0
        if isinstance(e, sympy.Mul):
            return sum(max(p, 0.0) for p in parts)
        if isinstance(e, (sympy.factorial, sympy.factorial2, sympy.gamma, sympy.binomial, sympy.subfactorial,
                          sympy.RisingFactorial, sympy.FallingFactorial)):
            arg = max(parts)
            return float("inf") if arg > 4 else 10 ** arg * (arg + 1)  # n! has about n log10 n digits
        return max(parts) + 1  # sums, functions, containers: about their largest part

    try:
        return any(bound(e) > max_digits for e in exprs if isinstance(e, sympy.Basic))
    except (RecursionError, OverflowError):
        return True
