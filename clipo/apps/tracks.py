"""The paper's evaluation tracks: which sets each one scores, how, and which of them are in-domain.

One registry, :data:`TRACKS`, read from the official scripts (Qwen-Applications/CLIPO ``scripts/train_gsm8k.sh``
and ``scripts/train_math.sh``, ``data.val_files`` and ``actor_rollout_ref.rollout.val_kwargs``):

    track  sets, in the script's order (in-domain ones marked *)                 metric   sampling
    gsm8k  gsm8k* gsm_p1* gsm_p2* gsm_symbolic* theoremqa mmlu2k truthfulqa    pass@1   greedy (do_sample=False, n=1)
           commonsense_qa
    math   math* aime aime2025 amc math_perturb_simple* math_perturb_hard*     avg@16   n=16, T=0.6, top_p=0.95

Domains. A set is **in-domain** when its problems come from the training set's own source: its
test split, or that split rewritten (GSM-Plus style perturbations ``gsm_p1``/``gsm_p2`` and the GSM-Symbolic
templates of GSM8K test problems; MATH-Perturb's simple/hard rewrites of MATH problems). Every other source is
**out-of-domain**: science/knowledge/commonsense multiple choice for the GSM8K track, competition problems (AIME
2024/2025, AMC) for the MATH track. This rule is clipo's, applied the same way to both tracks; the official
scripts only list the files.

Paths are relative to the data root (``data.root`` or ``$CLIPO_DATA_DIR``: the official repository's ``data/``
folder; clipo's copy renames ``theoremqa*2.parquet`` and ``truthfulqa*2.parquet`` to ``theoremqa.parquet`` and
``truthfulqa.parquet``). A set's name is its file stem, which is what ``clipo eval`` and the trainer report it as.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from clipo.training.config import ConfigError

__all__ = ["EvalSet", "Track", "TRACKS", "IN_DOMAIN", "OUT_OF_DOMAIN", "get_track", "track_eval_sources",
           "track_sampling_overrides", "track_of_sets", "metric_label"]

IN_DOMAIN = "in"
OUT_OF_DOMAIN = "out"


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set of a track: its reported name, its file under the data root, its domain."""

    name: str
    path: str
    domain: str  # IN_DOMAIN or OUT_OF_DOMAIN


@dataclass(frozen=True)
class Track:
    """A track: its sets in the official order, the metric its table reports and the sampling that gives it.

    The table lists the in-domain sets first, then the out-of-domain ones, each in the official order
    (:meth:`table_order`)."""

    name: str
    sets: tuple[EvalSet, ...]
    metric: str              # "pass@1" (greedy) or "avg@k"
    eval_n: int              # samples per problem
    eval_temperature: float  # 0: greedy
    eval_top_p: float
    source: str              # the official script the sets and sampling come from

    @property
    def set_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sets)

    def table_order(self) -> tuple[str, ...]:
        """The set names as the table lists them: in-domain first, then out-of-domain, each in the official order."""
        return tuple(s.name for s in self.sets if s.domain == IN_DOMAIN) + tuple(
            s.name for s in self.sets if s.domain != IN_DOMAIN)

    def domain(self, set_name: str) -> str | None:
        """``"in"`` / ``"out"`` for a set of this track, None for any other name."""
        return next((s.domain for s in self.sets if s.name == set_name), None)


def _sets(*names: str) -> tuple[EvalSet, ...]:
    """``name*`` is in-domain, ``name`` out-of-domain; the file is ``test/<name>.parquet``."""
    return tuple(EvalSet(name.rstrip("*"), f"test/{name.rstrip('*')}.parquet",
                         IN_DOMAIN if name.endswith("*") else OUT_OF_DOMAIN) for name in names)


TRACKS: dict[str, Track] = {
    "gsm8k": Track(
        name="gsm8k",
        sets=_sets("gsm8k*", "gsm_p1*", "gsm_p2*", "gsm_symbolic*", "theoremqa", "mmlu2k", "truthfulqa",
                   "commonsense_qa"),
        # val_kwargs.do_sample=False and n=1: verl then decodes greedily (its temperature 0.6 / top_p 0.95 unused).
        metric="pass@1", eval_n=1, eval_temperature=0.0, eval_top_p=1.0,
        source="scripts/train_gsm8k.sh"),
    "math": Track(
        name="math",
        sets=_sets("math*", "aime", "aime2025", "amc", "math_perturb_simple*", "math_perturb_hard*"),
        metric="avg@16", eval_n=16, eval_temperature=0.6, eval_top_p=0.95,
        source="scripts/train_math.sh"),
}


def get_track(name: str) -> Track:
    """The track called ``name``; ConfigError (one line, the known names) otherwise."""
    try:
        return TRACKS[name]
    except KeyError:
        raise ConfigError(f"unknown evaluation track {name!r}; known tracks: {', '.join(TRACKS)}") from None


def track_eval_sources(name: str) -> list[str]:
    """The track's eval files, relative to the data root, in the official order (what ``data.eval`` lists)."""
    return [s.path for s in get_track(name).sets]


def track_sampling_overrides(name: str) -> list[str]:
    """Dotted config overrides for the track's eval sampling (``rollout.eval_n``, ``eval_temperature``, ``eval_top_p``)."""
    t = get_track(name)
    return [f"rollout.eval_n={t.eval_n}", f"rollout.eval_temperature={t.eval_temperature}",
            f"rollout.eval_top_p={t.eval_top_p}"]


def track_of_sets(set_names: Iterable[str]) -> Track | None:
    """The track every one of ``set_names`` belongs to (None when they are empty or not all of one track).

    Names may be file stems or paths (``test/gsm8k.parquet``); only the stem counts.
    """
    stems = {Path(name).stem for name in set_names}
    if not stems:
        return None
    return next((t for t in TRACKS.values() if stems <= set(t.set_names)), None)


def metric_label(samples_per_problem: int) -> str:
    """What a score over ``k`` samples per problem is called: ``pass@1`` for k = 1 (greedy), else ``avg@k``."""
    return "pass@1" if samples_per_problem == 1 else f"avg@{samples_per_problem}"
