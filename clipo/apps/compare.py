"""The paper's table from runs, and ``clipo compare``: base vs base + CLIPO per eval set with a paired bootstrap.

**The table** (:func:`paper_table`): one row per eval set (a track's sets in the official order, see
:mod:`clipo.apps.tracks`), then ``in-domain avg`` and ``out-of-domain avg``: the unweighted mean of the sets'
scores (every set counts once whatever its size, as the paper averages its columns). A score is pass@1 (greedy,
one sample) or avg@k (the mean over problems of the share of k samples that are correct).

**The comparison** (:func:`compare_runs`): the first run is the baseline. For every set the runs have in common,
each other run's difference ``d = mean(b) − mean(a)`` over the N problems (``a_i``, ``b_i`` the per-problem scores
of ``eval_problems.jsonl``) comes with a paired bootstrap 95% interval: draw B resamples of N problem positions
with replacement (the same positions for every run, numpy ``default_rng(seed)``), compute ``d`` on each, and take
the 2.5th and 97.5th percentiles (numpy's linear interpolation). The domain averages get an interval the same way:
on each resample, the unweighted mean of the sets' resampled differences (sets resampled independently).
Runs must have scored the same problems of a set (same rows, same order); otherwise it is a user error.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipo.apps.tracks import IN_DOMAIN, OUT_OF_DOMAIN, Track, metric_label, track_of_sets
from clipo.training.run_folder import EVAL_PROBLEMS, EVAL_RESULTS, FINAL, RunFolder, eval_output_files, read_jsonl

__all__ = ["CompareError", "SetProblems", "RunEval", "load_run", "resampled_mean_diffs", "percentile_interval",
           "paper_table", "table_markdown", "compare_runs", "compare_markdown", "add_parser", "compare_command"]

RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
AVERAGE_DEFINITION = "unweighted mean of the sets' scores"
_DOMAIN_ROWS = ((IN_DOMAIN, "in-domain avg"), (OUT_OF_DOMAIN, "out-of-domain avg"))
_ALL_ROW = "average"
_RECORD_KEYS = ("set", "problem", "index", "score", "n")


class CompareError(Exception):
    """A user error of ``clipo compare`` (missing run, no evaluation, sets or problems that do not match)."""


@dataclass(frozen=True)
class SetProblems:
    """One eval set of one evaluation: per-problem ``scores`` (share correct of ``samples`` each), in order."""

    name: str
    indices: tuple[int, ...]   # the source-file row of each problem
    scores: np.ndarray         # [N] float
    samples: int               # k samples per problem

    @property
    def score(self) -> float:
        """The set's score (pass@1 / avg@k): the mean of the per-problem scores."""
        return float(self.scores.mean()) if len(self.scores) else math.nan


@dataclass(frozen=True)
class RunEval:
    """The per-problem evaluation of one run at one step (``step`` None: a ``clipo eval`` output)."""

    label: str
    path: Path
    step: int | None
    sets: dict[str, SetProblems]


# ---------------------------------------------------------------------------------------------- reading runs


def problems_file(run: str | Path) -> Path:
    """The ``eval_problems.jsonl`` a RUN argument names: the file itself, the one beside a ``clipo eval`` results
    JSON, a run folder's (the trainer's evaluations), else its ``final/`` one (``clipo eval RUN_DIR``)."""
    path = Path(run)
    if not path.exists():
        raise CompareError(f"{run}: no such run folder or file; pass a run folder (trainer.output_dir), a "
                           f"`clipo eval` results .json, or an {EVAL_PROBLEMS} file")
    if path.is_file():
        if path.suffix == ".json":
            path = eval_output_files(path)[1]
        if not path.is_file() or path.suffix != ".jsonl":
            raise CompareError(f"{run}: no per-problem scores at {path}; run `clipo eval` again (it writes them "
                               "beside its results) or pass the run folder")
        return path
    folder = RunFolder(path)
    for candidate in (folder.eval_problems, eval_output_files(folder.final_eval_results)[1]):
        if candidate.is_file():
            return candidate
    raise CompareError(f"{run}: no per-problem evaluation ({EVAL_PROBLEMS}) in it or in its final/ folder; "
                       f"train with data.eval set, or run `clipo eval --model {run}`")


def load_run(run: str | Path, *, step: int | None = None, label: str | None = None) -> RunEval:
    """The per-problem scores of ``run`` at ``step`` (default: its last evaluated step).

    When a (step, set, problem) appears more than once (a resumed run evaluated that step again) the last line wins.
    """
    path = problems_file(run)
    latest: dict[tuple[Any, str, int], dict[str, Any]] = {}
    for number, record in enumerate(read_jsonl(path, skipped=[]), start=1):
        missing = [key for key in _RECORD_KEYS if key not in record]
        if missing:
            raise CompareError(f"{path}: record {number} lacks {', '.join(missing)}; not an {EVAL_PROBLEMS} file")
        try:
            record = {**record, "problem": int(record["problem"]), "index": int(record["index"]),
                      "n": int(record["n"]), "score": float(record["score"])}
        except (TypeError, ValueError):
            raise CompareError(f"{path}: record {number} has a non-number problem, index, n or score; "
                               f"not an {EVAL_PROBLEMS} file") from None
        latest[(record.get("step"), str(record["set"]), record["problem"])] = record
    steps = {key[0] for key in latest}
    if not steps:
        raise CompareError(f"{path}: no evaluations in it; the run has not evaluated yet")
    numbered = sorted(s for s in steps if isinstance(s, int))
    if step is None:
        chosen = numbered[-1] if numbered else None
    elif step in steps:
        chosen = step
    else:
        raise CompareError(f"{run}: no evaluation at step {step}; evaluated steps: "
                           f"{', '.join(map(str, numbered)) or 'none (a clipo eval output)'}")
    by_set: dict[str, list[dict[str, Any]]] = {}
    for (record_step, name, _), record in latest.items():
        if record_step == chosen:
            by_set.setdefault(name, []).append(record)
    sets = {}
    for name, records in by_set.items():
        records.sort(key=lambda r: r["problem"])
        samples = {r["n"] for r in records}
        sets[name] = SetProblems(name, tuple(r["index"] for r in records),
                                 np.array([r["score"] for r in records], dtype=np.float64),
                                 samples.pop() if len(samples) == 1 else 0)
    return RunEval(label or Path(run).name or str(run), Path(run), chosen, sets)


# ---------------------------------------------------------------------------------------------- bootstrap


def resampled_mean_diffs(base: np.ndarray, other: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``[B]``: for each row ``r`` of ``indices`` ([B, N] problem positions), ``mean_j(other[r_j] − base[r_j])``."""
    return (np.asarray(other, dtype=np.float64) - np.asarray(base, dtype=np.float64))[indices].mean(axis=1)


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of ``values``: percentiles ``(1 − c)/2`` and ``(1 + c)/2`` (linear)."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100 - tail])
    return float(low), float(high)


def _bootstrap_set(base: np.ndarray, others: Sequence[np.ndarray], rng: np.random.Generator,
                   resamples: int) -> list[np.ndarray]:
    """Per other run, its ``[resamples]`` resampled differences to ``base``, on the same resampled positions.

    Drawn in chunks of rows so that a 5,000-problem set does not hold a [2000, 5000] index matrix at once.
    """
    n = len(base)
    out: list[list[np.ndarray]] = [[] for _ in others]
    rows = max(1, 1_000_000 // max(1, n))
    for start in range(0, resamples, rows):
        indices = rng.integers(0, n, size=(min(rows, resamples - start), n))
        for slot, other in zip(out, others):
            slot.append(resampled_mean_diffs(base, other, indices))
    return [np.concatenate(parts) for parts in out]


# ---------------------------------------------------------------------------------------------- tables


def _average_groups(set_names: Sequence[str], track: Track | None) -> list[tuple[str, str, list[str]]]:
    """``(row name, domain, member sets)`` of the average rows: a track's ID and OOD averages (those with members),
    or one average over all sets when the sets are not one track's."""
    if track is None:
        return [(_ALL_ROW, "", list(set_names))] if len(set_names) > 1 else []
    groups = [(row, domain, [s for s in set_names if track.domain(s) == domain]) for domain, row in _DOMAIN_ROWS]
    return [group for group in groups if group[2]]


def _ordered(set_names: Sequence[str], track: Track | None) -> list[str]:
    """Sets in the track's table order (in-domain first; others after, as given)."""
    if track is None:
        return list(set_names)
    order = {name: i for i, name in enumerate(track.table_order())}
    return sorted(set_names, key=lambda s: order.get(s, len(order)))


def _metric(samples: Mapping[str, int]) -> str:
    values = set(samples.values())
    return metric_label(values.pop()) if len(values) == 1 and 0 not in values else "score"


def paper_table(scores: Mapping[str, float], *, samples: Mapping[str, int], problems: Mapping[str, int],
                track: Track | None = None) -> dict[str, Any]:
    """The paper's table for one model, as JSON-able data.

    Args:
        scores: set name -> score in [0, 1] (pass@1 or avg@k).
        samples: set name -> samples per problem (k); problems: set name -> number of problems.
        track: the sets' track (default: the one they all belong to, if any), for order and domains.
    Returns:
        ``{"track", "metric", "average", "note", "rows": [{"set", "domain", "score", "problems"}, ...,
        {"set": "in-domain avg", "domain": "in", "score", "sets": [...]}, ...]}``.
    """
    track = track or track_of_sets(scores)
    names = _ordered(list(scores), track)
    rows: list[dict[str, Any]] = [{"set": s, "domain": (track.domain(s) if track else None) or "", "score": scores[s],
                                   "problems": problems.get(s), "samples": samples.get(s)} for s in names]
    for row_name, domain, members in _average_groups(names, track):
        rows.append({"set": row_name, "domain": domain, "score": float(np.mean([scores[s] for s in members])),
                     "sets": members})
    metric = _metric({s: samples.get(s, 0) for s in names})
    note = None
    if track is not None and metric != track.metric:
        note = f"track {track.name} reports {track.metric} ({track.source}); these scores are {metric}"
    return {"track": track.name if track else None, "metric": metric, "average": AVERAGE_DEFINITION,
            "note": note, "rows": rows}


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def _count_sets(members: Sequence[str]) -> str:
    return f"{len(members)} set" + ("" if len(members) == 1 else "s")


def table_markdown(table: Mapping[str, Any]) -> str:
    """The table of :func:`paper_table` as Markdown (scores in percent, one decimal)."""
    title = f"track {table['track']}" if table["track"] else "eval sets"
    run = table.get("run")
    if run:
        title += f", {run['label']}" + (f" step {run['step']}" if run["step"] is not None else "")
    lines = [f"**{title}** — {table['metric']} (%); averages: {table['average']}", "",
             f"| set | domain | {table['metric']} | problems |", "|---|---|---:|---:|"]
    for row in table["rows"]:
        size = _count_sets(row["sets"]) if "sets" in row else str(row["problems"])
        name = f"**{row['set']}**" if "sets" in row else row["set"]
        lines.append(f"| {name} | {row['domain']} | {_pct(row['score'])} | {size} |")
    if table.get("note"):
        lines += ["", f"note: {table['note']}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- compare


def _common_sets(runs: Sequence[RunEval]) -> list[str]:
    """The sets every run evaluated, in the baseline's order; CompareError when none, or when a set's problems or
    samples per problem differ between runs."""
    base = runs[0]
    common = [s for s in base.sets if all(s in run.sets for run in runs[1:])]
    if not common:
        listed = "; ".join(f"{run.label}: {', '.join(run.sets) or 'none'}" for run in runs)
        raise CompareError(f"the runs have no eval set in common ({listed}); evaluate them on the same data.eval")
    for name in common:
        for run in runs[1:]:
            a, b = base.sets[name], run.sets[name]
            if a.indices != b.indices:
                raise CompareError(
                    f"set {name}: {run.label} scored {len(b.indices)} problems, {base.label} {len(a.indices)}, and "
                    "not the same rows; evaluate both on the same file with the same data.max_eval_examples")
            if a.samples != b.samples:
                raise CompareError(
                    f"set {name}: {run.label} drew {b.samples or 'varying'} samples per problem, {base.label} "
                    f"{a.samples or 'varying'}; evaluate both with the same rollout.eval_n")
    return common


def compare_runs(runs: Sequence[RunEval], *, resamples: int = RESAMPLES, seed: int = SEED,
                 confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Baseline (``runs[0]``) vs every other run, per common set and per domain average (see the module doc).

    Returns JSON-able data: ``{"baseline", "runs", "track", "metric", "bootstrap", "rows": [{"set", "domain",
    "problems", "baseline": score, "runs": [{"label", "score", "diff", "ci": [low, high]}]}, ...]}``; average rows
    carry ``"sets"`` instead of ``"problems"``.
    """
    if len(runs) < 2:
        raise CompareError("clipo compare needs two runs or more: the baseline first, then the runs to compare")
    names = _common_sets(runs)
    track = track_of_sets(names)
    names = _ordered(names, track)
    rng = np.random.default_rng(seed)
    base, others = runs[0], runs[1:]
    rows, boots = [], {}
    for name in names:
        a = base.sets[name]
        boots[name] = _bootstrap_set(a.scores, [run.sets[name].scores for run in others], rng, resamples)
        rows.append({"set": name, "domain": (track.domain(name) if track else None) or "", "problems": len(a.scores),
                     "baseline": a.score, "runs": [
                         {"label": run.label, "score": run.sets[name].score,
                          "diff": run.sets[name].score - a.score,
                          "ci": list(percentile_interval(boots[name][i], confidence))}
                         for i, run in enumerate(others)]})
    for row_name, domain, members in _average_groups(names, track):
        base_avg = float(np.mean([base.sets[s].score for s in members]))
        entries = []
        for i, run in enumerate(others):
            avg = float(np.mean([run.sets[s].score for s in members]))
            resampled = np.mean([boots[s][i] for s in members], axis=0)
            entries.append({"label": run.label, "score": avg, "diff": avg - base_avg,
                            "ci": list(percentile_interval(resampled, confidence))})
        rows.append({"set": row_name, "domain": domain, "sets": members, "baseline": base_avg, "runs": entries})
    describe = [{"label": run.label, "path": str(run.path), "step": run.step} for run in runs]
    return {"baseline": describe[0], "runs": describe[1:], "track": track.name if track else None,
            "metric": _metric({s: base.sets[s].samples for s in names}), "average": AVERAGE_DEFINITION,
            "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence,
                          "unit": "problem (paired: the same resampled problems for every run)"},
            "rows": rows}


def compare_markdown(result: Mapping[str, Any]) -> str:
    """The comparison of :func:`compare_runs` as Markdown (percent; differences in points with their interval)."""
    base = result["baseline"]["label"]
    level = round(100 * result["bootstrap"]["confidence"])
    header = ["set", "domain", "problems", f"{base} (baseline)"]
    for run in result["runs"]:
        header += [run["label"], f"{run['label']} − {base} [{level}% CI]"]
    lines = [f"**{result['metric']} (%)**, {'track ' + result['track'] if result['track'] else 'eval sets'}; "
             f"baseline {base}; paired bootstrap over problems ({result['bootstrap']['resamples']} resamples, "
             f"seed {result['bootstrap']['seed']}); averages: {result['average']}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    for row in result["rows"]:
        average = "sets" in row
        cells = [f"**{row['set']}**" if average else row["set"], row["domain"],
                 _count_sets(row["sets"]) if average else str(row["problems"]), _pct(row["baseline"])]
        for entry in row["runs"]:
            low, high = entry["ci"]
            cells += [_pct(entry["score"]), f"{_pct(entry['diff'], True)} [{_pct(low, True)}, {_pct(high, True)}]"]
        lines.append("| " + " | ".join(cells) + " |")
    steps = ", ".join(f"{r['label']} step {r['step'] if r['step'] is not None else '-'}"
                      for r in [result["baseline"], *result["runs"]])
    lines += ["", f"evaluations: {steps}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command


def add_parser(sub: Any) -> None:
    """``clipo compare RUN_A RUN_B [RUN_C ...] [--step N] [--json PATH] [--resamples B] [--seed S]``."""
    parser = sub.add_parser("compare", help="base vs other runs per eval set: difference and a paired bootstrap 95%% interval")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folders (trainer.output_dir), `clipo eval` results .json or eval_problems.jsonl "
                             "files; the first is the baseline. One run: its table")
    parser.add_argument("--step", type=int, help="compare the evaluations at this step (default: each run's last)")
    parser.add_argument("--json", metavar="PATH", help="also write the comparison as JSON here ('-': stdout only)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples (default {RESAMPLES})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"bootstrap seed (default {SEED})")


def _label(path: str) -> str:
    """A run's short name: its folder's name; for a file, its stem, or its folder's for the default file names."""
    given = Path(path)
    if not given.is_file():
        return given.name or path
    if given.name in (EVAL_RESULTS, EVAL_PROBLEMS):
        folder = given.parent
        return f"{folder.parent.name}/{folder.name}" if folder.name == FINAL else folder.name or path
    return given.name.removesuffix(f".{EVAL_PROBLEMS}").removesuffix(given.suffix)


def _labels(paths: Sequence[str]) -> list[str]:
    """Each run's short name (:func:`_label`); the path as given where two names collide."""
    names = [_label(p) for p in paths]
    return [name if names.count(name) == 1 else path for name, path in zip(names, paths)]


def compare_command(args: argparse.Namespace) -> int:
    """Run ``clipo compare``; a user error is one line on stderr and exit status 2."""
    try:
        if args.resamples < 1:
            raise CompareError(f"--resamples must be at least 1, got {args.resamples}")
        runs = [load_run(path, step=args.step, label=label) for path, label in zip(args.runs, _labels(args.runs))]
        if len(runs) == 1:
            run = runs[0]
            result = paper_table({s.name: s.score for s in run.sets.values()},
                                 samples={s.name: s.samples for s in run.sets.values()},
                                 problems={s.name: len(s.scores) for s in run.sets.values()})
            result["run"] = {"label": run.label, "path": str(run.path), "step": run.step}
            markdown = table_markdown(result)
        else:
            result = compare_runs(runs, resamples=args.resamples, seed=args.seed)
            markdown = compare_markdown(result)
    except CompareError as error:
        print(f"clipo compare: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    if args.json == "-":
        print(text)
        return 0
    print(markdown)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0
