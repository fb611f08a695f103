"""``clipo.diagnostics``: a short real run logs the embedding diagnostics to metrics.jsonl and TensorBoard, and the
report draws them."""
from __future__ import annotations

import json
import math
import random

import pytest

from clipo.apps.report.figures import FIGURE_BUILDERS, FIGURE_CAPTIONS, FIGURE_TITLES
from clipo.apps.report.markdown import render_markdown
from clipo.apps.report.read import load_run
from clipo.testing import build_tiny_trainer
from clipo.training.tracking import read_metrics

PROMPTS, N = 4, 4  # the tiny trainer's prompts_per_step and rollout.n, set below


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    rows = [{"prompt": f"{a}+{b}=?", "answer": str(a + b)} for a, b in ((rng.randint(0, 9), rng.randint(0, 9))
                                                                        for _ in range(16))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run(prompts_file, out, *overrides):
    trainer = build_tiny_trainer([f"data.train={prompts_file}", f"trainer.output_dir={out}", "trainer.max_steps=2",
                                  f"trainer.prompts_per_step={PROMPTS}", f"rollout.n={N}", *overrides])
    trainer.fit()
    return read_metrics(out)


@pytest.fixture(scope="module")
def clipo_run(prompts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, _run(prompts_file, out)


def test_metrics_hold_the_diagnostics(clipo_run):
    _, rows = clipo_run
    assert len(rows) == 2
    for row in rows:
        # pair counts follow from the step's accuracy alone: k correct of N·G rollouts
        total = PROMPTS * N
        k = round(row["reward/accuracy"] * total)
        assert row["clipo/pairs/cc_batch"] == k * (k - 1) / 2
        assert row["clipo/pairs/ci_batch"] == k * (total - k)
        assert row["clipo/pairs/ii_batch"] == (total - k) * (total - k - 1) / 2
        size = total // 4  # rollouts per length quartile
        assert sum(row[f"clipo/pairs/lenq{q}"] for q in range(1, 5)) == 4 * size * (size - 1) / 2
        assert row["time/diagnostics_s"] >= 0
        for prefix in ("clipo/emb", "clipo/head"):
            for cls in ("cc", "ci", "ii"):
                key = f"{prefix}/cos_{cls}_batch_mean"
                assert (key in row) == (row[f"clipo/pairs/{cls}_batch"] > 0), key
                if key in row:
                    lo, hi = row[f"{prefix}/cos_{cls}_batch_min"], row[f"{prefix}/cos_{cls}_batch_max"]
                    assert -1.0 <= lo <= row[key] <= hi <= 1.0
                    assert row[f"{prefix}/l2_{cls}_batch_min"] >= 0.0
        assert all(v is None or math.isfinite(v) for k, v in row.items() if k.startswith("clipo/"))
    assert any("clipo/loss/correct_mean" in row for row in rows)


def test_tensorboard_holds_the_diagnostics(clipo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, rows = clipo_run
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    logged = {k for row in rows for k in row if k.startswith("clipo/")}
    assert logged and logged <= tags


def _draw(run_dir, out_dir):
    """Only the diagnostics figure (drawing all of the report's figures costs ~10x more); None if not drawn."""
    builder = dict(FIGURE_BUILDERS)["embedding_diagnostics"]  # make_report draws every FIGURE_BUILDERS entry
    run = load_run(run_dir)
    return run, builder(run, out_dir / "embedding_diagnostics.png")


def test_report_draws_the_diagnostics(clipo_run, tmp_path):
    run, png = _draw(clipo_run[0], tmp_path)
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    markdown = render_markdown(run, {"embedding_diagnostics": png}, tmp_path)
    assert FIGURE_TITLES["embedding_diagnostics"] in markdown and FIGURE_CAPTIONS["embedding_diagnostics"] in markdown
    assert "](embedding_diagnostics.png)" in markdown


def test_off_logs_nothing_and_draws_nothing(prompts_file, tmp_path):
    rows = _run(prompts_file, tmp_path, "clipo.diagnostics=false")
    assert not any(k.startswith("clipo/") or k == "time/diagnostics_s" for row in rows for k in row)
    assert _draw(tmp_path, tmp_path)[1] is None


def test_base_run_logs_hidden_state_diagnostics_only(prompts_file, tmp_path):
    rows = _run(prompts_file, tmp_path, "clipo.enabled=false")
    keys = {k for row in rows for k in row}
    assert "clipo/pairs/cc_batch" in keys and any(k.startswith("clipo/emb/") for k in keys)
    assert not any(k.startswith(("clipo/head/", "clipo/loss/", "clipo/reward/")) for k in keys)
