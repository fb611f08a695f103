"""``report.md``: the run's configuration essentials, ``summary.json``, a first-vs-last table of the key
training metrics, the evaluation table, links to the figures and the notes met while reading.

Pure text from a :class:`clipo.apps.report.read.RunData` and the figures written (docs/architecture.md).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from clipo.apps.report.figures import FIGURE_CAPTIONS, FIGURE_TITLES
from clipo.apps.report.numerics import to_float, window_mean
from clipo.apps.report.read import RunData, eval_metric_name

__all__ = ["KEY_METRICS", "learning_summary", "read_learning_summary", "render_markdown"]

#: (metric key, label) of the first-vs-last table, in table order; ``task/*`` keys not listed here follow.
KEY_METRICS = [
    ("reward/mean", "reward (total)"),
    ("reward/accuracy", "train accuracy"),
    ("reward/verifier_mean", "verifier score"),
    ("task/right_answer_wrong_reasoning", "right answer, wrong reasoning"),
    ("contrastive/loss", "contrastive loss"),
    ("contrastive/reward_correct", "contrastive reward (correct)"),
    ("contrastive/reward_incorrect", "contrastive reward (incorrect)"),
    ("contrastive/cos_correct_correct", "cos correct–correct"),
    ("contrastive/cos_correct_incorrect", "cos correct–incorrect"),
    ("clipo/emb/cos_cc_group_mean", "hidden-state cos correct–correct (group)"),
    ("clipo/emb/cos_ci_group_mean", "hidden-state cos correct–incorrect (group)"),
    ("contrastive/skipped", "share of head steps skipped"),
    ("actor/entropy", "entropy"),
    ("actor/kl", "KL to reference"),
    ("actor/pg_clipfrac", "clip fraction"),
    ("actor/grad_norm", "grad norm"),
    ("response/length_mean", "response length (tokens)"),
    ("response/truncated_rate", "truncated rate"),
    ("rollout/zero_variance_groups", "zero-variance groups"),
    ("time/step_s", "step time (s)"),
    ("perf/tokens_per_s", "tokens / s"),
]


def learning_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Steps that updated the policy vs steps skipped (``actor/update_skipped``), and a warning when nothing was
    learned: every step skipped, every group uniform (``rollout/zero_variance_groups`` = 1) or every advantage 0.

    ``metrics`` maps a metric key to its per-step values (NaN or None where a step did not log it).
    """
    def values(key: str) -> list[float]:
        return [v for v in (to_float(x) for x in metrics.get(key, [])) if math.isfinite(v)]

    skipped_flags = values("actor/update_skipped")
    steps = max((len(v) for v in metrics.values()), default=0)
    skipped = int(sum(1 for v in skipped_flags if v > 0))
    updated = (len(skipped_flags) - skipped) if skipped_flags else steps
    warning = None
    zero_var, adv = values("rollout/zero_variance_groups"), values("advantage/abs_mean")
    if steps and skipped_flags and updated == 0:
        warning = "nothing was learned: every step skipped its policy update"
    elif steps and zero_var and len(zero_var) == steps and all(v >= 1.0 for v in zero_var):
        warning = ("nothing was learned: on every step every group's rewards were uniform (all right or all "
                   "wrong), so no advantage; try an easier/harder data set, more rollouts (rollout.n) or a "
                   "higher temperature")
    elif steps and adv and len(adv) == steps and all(v == 0.0 for v in adv):
        warning = "nothing was learned: every advantage was 0"
    return {"steps": steps, "updated": updated, "skipped": skipped, "warning": warning}


def read_learning_summary(metrics_path: str | Path) -> dict[str, Any]:
    """:func:`learning_summary` of a run's ``metrics.jsonl`` (unreadable lines are ignored)."""
    by_step: dict[Any, dict] = {}
    path = Path(metrics_path)
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                by_step.setdefault(row.get("step"), {}).update(row)  # a repeated step (resume): the later wins
    rows = list(by_step.values())
    keys = {k for row in rows for k in row if k != "step"}
    return learning_summary({k: [row.get(k) for row in rows] for k in keys})


def _learning_lines(run: RunData) -> list[str]:
    if not len(run.steps):
        return []
    summary = learning_summary({k: list(v) for k, v in run.metrics.items()})
    lines = ["## Policy updates", "",
             f"{summary['updated']} step(s) updated the policy, {summary['skipped']} skipped.", ""]
    if summary["warning"]:
        lines += [f"**Warning: {summary['warning']}.**", ""]
    return lines


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cfg(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _clipo_enabled(run: RunData) -> Optional[bool]:
    enabled = _cfg(run.config, "clipo.enabled")
    if enabled is not None:
        return bool(enabled)
    if any(k.startswith("contrastive/") for k in run.metrics):
        return True
    return None if not run.metrics else False


def _config_rows(run: RunData) -> list[tuple[str, str]]:
    c = run.config
    rows: list[tuple[str, str]] = []
    model = _cfg(c, "model.name_or_path")
    if model is not None:
        extra = [f"dtype {_cfg(c, 'model.dtype')}"] if _cfg(c, "model.dtype") else []
        if _cfg(c, "model.lora_r"):
            extra.append(f"LoRA r={_cfg(c, 'model.lora_r')}")
        rows.append(("model", f"`{model}`" + (f" ({', '.join(extra)})" if extra else "")))
    algo = _cfg(c, "algorithm.name")
    if algo is not None:
        knobs = [f"clip ε {_cfg(c, 'algorithm.eps_low')}/{_cfg(c, 'algorithm.eps_high')}",
                 f"loss agg {_cfg(c, 'algorithm.loss_agg')}"]
        if _cfg(c, "algorithm.kl_coef"):
            knobs.append(f"KL {_cfg(c, 'algorithm.kl_kind')} × {_cfg(c, 'algorithm.kl_coef')}")
        if _cfg(c, "algorithm.entropy_coef"):
            knobs.append(f"entropy coef {_cfg(c, 'algorithm.entropy_coef')}")
        if _cfg(c, "algorithm.dynamic_sampling"):
            knobs.append("dynamic sampling")
        if _cfg(c, "algorithm.overlong_penalty"):
            knobs.append("overlong penalty")
        rows.append(("algorithm", f"**{algo}** (" + ", ".join(str(k) for k in knobs) + ")"))
    enabled = _clipo_enabled(run)
    if enabled:
        keys = [("loss_kind", "loss"), ("level", "level"), ("head_kind", "head"), ("head_size", "head size"),
                ("temperature", "τ"), ("lam", "λ"), ("reward", "reward"), ("distance", "distance"), ("pooling", "pooling"),
                ("head_lr", "head lr"), ("warmup_steps", "warm-up"), ("fixed_head", "fixed head")]
        knobs = [f"{label} {_cfg(c, 'clipo.' + k)}" for k, label in keys if _cfg(c, "clipo." + k) is not None]
        rows.append(("CLIPO", "**on**" + (f" ({', '.join(knobs)})" if knobs else "")))
    elif enabled is False:
        rows.append(("CLIPO", "off" if _cfg(c, "clipo.enabled") is not None else "off (no config; no `contrastive/*` metrics)"))
    steps_logged = len(run.steps)
    max_steps = _cfg(c, "trainer.max_steps")
    if steps_logged or max_steps is not None:
        last = int(run.steps[-1]) if steps_logged else None
        text = f"{steps_logged} logged" + (f" (last step {last})" if last is not None else "")
        if max_steps is not None:
            text += f", max_steps {max_steps}"
        rows.append(("steps", text))
    if run.has("time/step_s"):
        rows.append(("training time", f"{_duration(float(np.nansum(run.metrics['time/step_s'])))} (sum of `time/step_s`)"))
    n, pps = _cfg(c, "rollout.n"), _cfg(c, "trainer.prompts_per_step")
    if n is not None:
        rows.append(("group size", f"{n} rollouts / prompt" + (f", {pps} prompts / step" if pps is not None else "")))
    if _cfg(c, "rollout.max_new_tokens") is not None:
        rows.append(("generation", f"max_new_tokens {_cfg(c, 'rollout.max_new_tokens')}, temperature "
                                   f"{_cfg(c, 'rollout.temperature')}, engine {_cfg(c, 'rollout.engine')}"))
    if _cfg(c, "trainer.lr") is not None:
        rows.append(("optimiser", f"lr {_cfg(c, 'trainer.lr')} ({_cfg(c, 'trainer.lr_schedule')}), "
                                  f"grad clip {_cfg(c, 'trainer.grad_clip')}, seed {_cfg(c, 'trainer.seed')}"))
    if _cfg(c, "reward.verifier") is not None:
        rows.append(("reward", f"`{_cfg(c, 'reward.verifier')}` (mode {_cfg(c, 'reward.mode')})"))
    if _cfg(c, "data.train") is not None:
        ev = _cfg(c, "data.eval") or []
        ev = ev if isinstance(ev, list) else [ev]
        rows.append(("data", f"train `{_cfg(c, 'data.train')}`" + (f"; eval {', '.join(f'`{e}`' for e in ev)}" if ev else "")
                     + _data_counts(run)))
    return rows


def _data_counts(run: RunData) -> str:
    """The trainer's ``data/*`` numbers (logged with step 1 and per step), as a suffix of the data row."""
    def first(key: str) -> float:
        return float(next(v for v in run.metrics[key] if np.isfinite(v)))

    parts = []
    if run.has("data/filtered_long_prompts"):
        limit = _cfg(run.config, "data.max_prompt_tokens")
        parts.append(f"{first('data/filtered_long_prompts'):.0f} prompts longer than data.max_prompt_tokens"
                     + (f"={limit}" if limit is not None else "") + " dropped")
    if run.has("data/steps_per_epoch"):
        parts.append(f"{first('data/steps_per_epoch'):.0f} steps per epoch")
    if run.has("data/epoch"):
        last = [v for v in run.metrics["data/epoch"] if np.isfinite(v)][-1]
        parts.append(f"epoch {last:.0f} (from 0) at the last step")
    return "; " + ", ".join(parts) if parts else ""


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten(value, name + "."))
        elif isinstance(value, list) and len(value) > 8:
            out.append((name, f"[{len(value)} values]"))
        else:
            out.append((name, value))
    return out


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")


def _summary_tables(summary: dict) -> list[str]:
    """``X_before`` / ``X_after`` pairs as one before-after table, everything else as key / value."""
    flat = dict(_flatten(summary))
    pairs, used = [], set()
    for key in flat:
        for before, after in (("_before", "_after"), ("before", "after")):
            if key.endswith(before) and key[: -len(before)] + after in flat:
                other = key[: -len(before)] + after
                name = key[: -len(before)].rstrip("_.") or key
                a, b = to_float(flat[key]), to_float(flat[other])
                delta = b - a if math.isfinite(a) and math.isfinite(b) else math.nan
                pairs.append((f"`{name}`", _fmt(flat[key]), _fmt(flat[other]), ("+" if delta > 0 else "") + _fmt(delta)))
                used.update((key, other))
                break
    lines: list[str] = []
    if pairs:
        lines += _table(["metric", "before", "after", "change"], pairs) + [""]
    rest = []
    for key, value in flat.items():
        if key in used:
            continue
        text = _fmt(value)
        number = to_float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        if math.isfinite(number) and ("seconds" in key or key.endswith("_s")) and number >= 60:
            text += f" ({_duration(number)})"
        rest.append((f"`{key}`", text))
    if rest:
        lines += _table(["key", "value"], rest) + [""]
    return lines[:-1] if lines and lines[-1] == "" else lines


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(run: RunData, figures: dict[str, Path], out_dir: Path, elapsed_note: str = "") -> str:
    """The text of ``report.md``: configuration, summary, first-vs-last metrics, evaluations, figures, notes."""
    lines = [f"# Run report: `{run.run_dir.resolve().name}`", "",
             f"Run folder `{run.run_dir}`; generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by `clipo report`.", ""]
    cfg_rows = _config_rows(run)
    if cfg_rows:
        lines += ["## Configuration", ""] + _table(["", ""], [(f"**{k}**", v) for k, v in cfg_rows]) + [""]

    if run.summary:
        lines += [f"## Summary (`{run.folder.summary.name}`)", ""] + _summary_tables(run.summary) + [""]

    lines += _learning_lines(run)
    if len(run.steps):
        n = len(run.steps)
        k = max(1, min(10, n // 5))
        first, last = slice(0, k), slice(n - k, n)
        span = lambda sl: (f"step {run.steps[sl][0]}" if k == 1 else f"steps {run.steps[sl][0]}–{run.steps[sl][-1]}")
        known = {key for key, _ in KEY_METRICS}
        extra = [(key, key) for key in run.metrics if key.startswith("task/") and key not in known]
        rows = []
        for key, label in KEY_METRICS + extra:
            if not run.has(key):
                continue
            a, b = window_mean(run.metrics[key], first), window_mean(run.metrics[key], last)
            delta = b - a if math.isfinite(a) and math.isfinite(b) else math.nan
            rows.append((f"{label} (`{key}`)", _fmt(a), _fmt(b), ("+" if delta > 0 else "") + _fmt(delta)))
        if rows:
            lines += ["## Training metrics: first vs last", "",
                      f"Mean over the first and last {k} logged step(s) ({span(first)} vs {span(last)}); "
                      "NaN/missing values are ignored.", ""]
            lines += _table(["metric", "first", "last", "change"], rows) + [""]

    if run.evals:
        final_step, final = run.evals[-1]
        first_step, first_results = run.evals[0]
        extra_keys: list[str] = []
        for result in final.values():
            for key, value in result.items():
                if key != "accuracy" and isinstance(value, (int, float)) and not isinstance(value, bool) and key not in extra_keys:
                    extra_keys.append(key)
        header = ["dataset"] + ([f"accuracy @ step {first_step}"] if len(run.evals) > 1 else []) + \
                 [f"accuracy @ step {final_step}"] + extra_keys
        rows = []
        for name, result in final.items():
            metric = eval_metric_name(result)
            row = [f"`{name}`"]
            if len(run.evals) > 1:
                row.append(_fmt(to_float(first_results.get(name, {}).get(metric)) if metric else None))
            row.append(_fmt(to_float(result.get(metric)) if metric else None))
            row += [_fmt(result.get(key)) for key in extra_keys]
            rows.append(row)
        lines += ["## Evaluation", "", f"{len(run.evals)} evaluation(s); final at step {final_step}.", ""]
        lines += _table(header, rows) + [""]

    lines += ["## Figures", ""]
    if figures:
        for name, path in figures.items():
            rel = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else str(path)
            lines += [f"- [{FIGURE_TITLES[name]}]({rel})"]
        lines += [""]
        for name, path in figures.items():
            rel = path.relative_to(out_dir).as_posix() if path.is_relative_to(out_dir) else str(path)
            lines += [f"### {FIGURE_TITLES[name]}", "", f"![{FIGURE_TITLES[name]}]({rel})", ""]
            if name in FIGURE_CAPTIONS:
                lines += [FIGURE_CAPTIONS[name], ""]
    else:
        lines += ["No figures: the run folder has no metrics, evaluations or embedding snapshots yet.", ""]
    notes = list(run.notes)
    if _clipo_enabled(run) is False:
        notes.append("CLIPO is off: no contrastive figure" +
                     ("; embedding separation is computed from the saved snapshots" if "embedding_separation" in figures else ""))
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)

