"""Reward registry: find a reward function by name, by data source, or by an import path; combine several.

A reward function has the signature ``fn(response, ground_truth, **row) -> float | None``; ``row`` holds
the dataset row's other fields (``data_source``, ``prompt``, ``options``, ``extra_info``, ...), and a
function should accept and ignore fields it does not use (``**row``). ``None`` means "could not score":
it contributes 0 and is counted in :attr:`VerifierStats.unscored`.

Specs accepted by :func:`get_reward`:

* a registered name: ``"math"`` (robust, strict format), ``"math_lenient"``, ``"choice"``,
  ``"official"``, ``"format"`` (1 if the response has a boxed final answer);
* a data source: ``"conrl/gsm8k"`` and any other ``conrl/...`` -> the robust scorer (prefixes in
  :data:`SOURCE_PREFIXES`);
* an import path to your own function: ``"my_pkg.rewards:length_penalty"`` or ``"my_pkg.rewards.length_penalty"``;
* a callable (used as is);
* a list of ``(spec, weight)`` pairs -> their weighted sum (:class:`CombinedReward`).
"""

from __future__ import annotations

import importlib
import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .extract import extract_candidates
from .limits import GLOBAL_STATS, VerificationTimeout, VerifierStats, time_limit
from .official import official_score
from .scoring import DEFAULT_TIMEOUT_S, robust_score

__all__ = [
    "RewardFn", "register_reward", "get_reward", "reward_for_source", "CombinedReward", "call_reward",
    "available_rewards", "SOURCE_PREFIXES", "RewardLookupError",
]

RewardFn = Callable[..., Optional[float]]
RewardSpec = Union[str, RewardFn, Sequence[Tuple[Any, float]]]


class RewardLookupError(LookupError):
    """A reward spec that names no known reward, data source or importable function."""


_REGISTRY: Dict[str, RewardFn] = {}

# Data-source prefixes and the registered reward that scores them.
SOURCE_PREFIXES: Dict[str, str] = {"conrl/": "math"}

# Row fields the built-in rewards understand; other fields are ignored.
_ROW_KEYS = ("data_source", "options", "prompt")


def register_reward(name: str, fn: Optional[RewardFn] = None, *, overwrite: bool = False):
    """Register ``fn`` under ``name`` (usable as a decorator: ``@register_reward("my_reward")``)."""
    if not name or ":" in name:
        raise ValueError(f"reward name must be non-empty without ':', got {name!r}")

    def _add(f: RewardFn) -> RewardFn:
        if not callable(f):
            raise TypeError(f"reward {name!r} must be callable, got {type(f).__name__}")
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not f:
            raise ValueError(f"reward {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = f
        return f

    return _add(fn) if fn is not None else _add


def available_rewards() -> List[str]:
    """Names of the registered rewards."""
    return sorted(_REGISTRY)


def _row_kwargs(row: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: row[k] for k in _ROW_KEYS if row.get(k) is not None}
    prompt = out.get("prompt")
    if isinstance(prompt, (list, tuple)):  # chat format [{role, content}, ...]: read the user's text
        out["prompt"] = "\n".join(str(m.get("content", "")) for m in prompt if isinstance(m, dict))
    return out


# Built-in rewards. They run without their own time limit: call_reward / score_batch apply one.
def _math_reward(response: str, ground_truth: str, **row: Any) -> float:
    return robust_score(response, ground_truth, **_row_kwargs(row))


def _math_lenient_reward(response: str, ground_truth: str, **row: Any) -> float:
    return robust_score(response, ground_truth, format_policy="lenient", **_row_kwargs(row))


def _choice_reward(response: str, ground_truth: str, **row: Any) -> float:
    return robust_score(response, ground_truth, kind="choice", **_row_kwargs(row))


def _official_reward(response: str, ground_truth: str, **row: Any) -> float:
    return official_score(response, ground_truth, row.get("data_source"))


def _format_reward(response: str, ground_truth: str, **row: Any) -> float:  # noqa: ARG001
    """1.0 when the response commits to exactly one boxed final answer after its reasoning."""
    return float(len(extract_candidates(response, "strict")) == 1)


for _name, _fn in (("math", _math_reward), ("robust", _math_reward), ("math_lenient", _math_lenient_reward),
                   ("choice", _choice_reward), ("official", _official_reward), ("format", _format_reward)):
    register_reward(_name, _fn)


def _import_path(spec: str) -> RewardFn:
    """``pkg.mod:fn`` or ``pkg.mod.fn`` -> the function, with an error that says what to fix."""
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise RewardLookupError(
            f"unknown reward {spec!r}: not a registered name ({', '.join(available_rewards())}), "
            f"not a data source with a known prefix ({', '.join(SOURCE_PREFIXES)}), and not an import path "
            "like 'my_pkg.my_module:my_reward'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RewardLookupError(
            f"reward {spec!r}: cannot import module {module_name!r} ({exc}); check the spelling and that the "
            "module is importable (installed, or its folder on PYTHONPATH)"
        ) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardLookupError(
                f"reward {spec!r}: module {module_name!r} has no attribute {attr!r}; define "
                f"'def {attr}(response, ground_truth, **row) -> float | None' there or fix the name"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardLookupError(f"reward {spec!r}: {attr!r} in {module_name!r} is not callable")
    return obj


def reward_for_source(data_source: str) -> RewardFn:
    """The reward for a dataset's ``data_source`` (longest matching prefix in :data:`SOURCE_PREFIXES`)."""
    for prefix in sorted(SOURCE_PREFIXES, key=len, reverse=True):
        if data_source.startswith(prefix):
            return _REGISTRY[SOURCE_PREFIXES[prefix]]
    raise RewardLookupError(
        f"no reward for data source {data_source!r}: known prefixes are {sorted(SOURCE_PREFIXES)}; add one with "
        f"clipo.rewards.registry.SOURCE_PREFIXES[{data_source.split('/')[0] + '/'!r}] = 'math'"
    )


class CombinedReward:
    """Weighted sum of rewards, e.g. ``[("math", 1.0), ("my.mod:fmt", 0.1)]``.

    A component returning None counts as 0 in the sum (and as unscored in the stats); if every component
    returns None the combination returns None.
    """

    def __init__(self, parts: Sequence[Tuple[Any, float]]):
        if not parts:
            raise ValueError("a combined reward needs at least one (spec, weight) pair")
        self.parts: List[Tuple[str, RewardFn, float]] = []
        for item in parts:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f"combined reward entries must be (spec, weight) pairs, got {item!r}")
            spec, weight = item
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"weight of reward {spec!r} must be a finite number, got {weight!r}")
            self.parts.append((str(spec), get_reward(spec), float(weight)))
        self.last_unscored = 0

    def __call__(self, response: str, ground_truth: str, **row: Any) -> Optional[float]:
        total, scored = 0.0, 0
        self.last_unscored = 0
        for _, fn, weight in self.parts:
            value = fn(response, ground_truth, **row)
            if value is None:
                self.last_unscored += 1
                continue
            total += weight * float(value)
            scored += 1
        return total if scored else None

    def __repr__(self) -> str:
        return f"CombinedReward({[(s, w) for s, _, w in self.parts]!r})"


def get_reward(spec: RewardSpec) -> RewardFn:
    """Resolve a reward spec (see the module docstring) to a callable."""
    if callable(spec):
        return spec
    if isinstance(spec, (list, tuple)):
        return CombinedReward(spec)
    if not isinstance(spec, str) or not spec:
        raise RewardLookupError(f"reward spec must be a name, a data source, an import path, a callable or a "
                                f"list of (spec, weight) pairs, got {spec!r}")
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if "/" in spec and ":" not in spec:
        return reward_for_source(spec)
    return _import_path(spec)


def call_reward(spec: RewardSpec, row: Dict[str, Any], *, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                stats: Optional[VerifierStats] = None) -> float:
    """Call a reward on one row (``response`` and ``ground_truth`` keys plus row fields) safely.

    Applies the time limit, turns None into 0.0 (counted as unscored), timeouts and exceptions into 0.0
    (counted as timeouts / errors), and any value that is not a finite number (NaN, inf, a string, a list) into
    0.0 (counted as ``bad_values``; ``stats.example`` remembers the first one). Never raises for a misbehaving
    reward function, except for an unknown ``spec``.
    """
    fn = get_reward(spec)
    st = GLOBAL_STATS if stats is None else stats
    fields = {k: v for k, v in row.items() if k not in ("response", "ground_truth")}
    st.calls += 1
    t0 = time.perf_counter()
    value: Any = 0.0
    try:
        with time_limit(timeout_s):
            value = fn(row["response"], row["ground_truth"], **fields)
    except VerificationTimeout:
        st.timeouts += 1
        value = 0.0
    except Exception as exc:  # noqa: BLE001 - a user's reward bug must not stop training; it is counted
        st.errors += 1
        st.note(f"raised {type(exc).__name__}: {exc}")
        value = 0.0
    st.seconds += time.perf_counter() - t0
    if isinstance(fn, CombinedReward):
        st.unscored += fn.last_unscored
    if value is None:
        if not isinstance(fn, CombinedReward):
            st.unscored += 1
        st.note("returned None")
        return 0.0
    number = _as_finite(value)
    if number is None:
        st.bad_values += 1
        st.note(f"returned {_describe(value)}")
        return 0.0
    if number > 0:
        st.correct += 1
    return number


def _as_finite(value: Any) -> Optional[float]:
    """``value`` as a finite float, or None for NaN, inf and anything that is not a number (a string, a list)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, RuntimeError):  # a multi-element array or tensor
        return None
    return number if math.isfinite(number) else None


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text if isinstance(value, (int, float)) else f"{type(value).__name__} {text}"
