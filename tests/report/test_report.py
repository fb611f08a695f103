"""``clipo.apps.report``: figures and Markdown from a run folder, robust to NaNs, missing keys and missing files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipo.apps.report import (
    FIGURE_TITLES,
    ReportPaths,
    load_run,
    main,
    make_report,
    moving_average,
    pca_2d,
    report_command,
    smoothing_window,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_FIGURES = {"reward_accuracy", "contrastive", "embedding_separation", "embeddings_pca", "training_health"}


def _check_png(path: Path, min_bytes: int = 10_000) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, (path, len(data))


def _figure_links(markdown: str, paths: ReportPaths) -> None:
    for name, path in paths.figures.items():
        assert f"]({path.name})" in markdown, name          # relative link from report.md
        assert FIGURE_TITLES[name] in markdown


def test_full_run_with_clipo(clipo_run_report):
    run, paths, _ = clipo_run_report

    assert paths.out_dir == run / "report"
    assert paths.markdown == run / "report" / "report.md"
    assert set(paths.figures) == ALL_FIGURES
    for path in paths.figures.values():
        assert path.parent == paths.out_dir
        _check_png(path)
    markdown = paths.markdown.read_text()
    _figure_links(markdown, paths)
    # config essentials
    assert "Qwen/Qwen2.5-Math-1.5B" in markdown and "**grpo**" in markdown
    assert "**on**" in markdown and "τ 0.05" in markdown and "λ 0.2" in markdown
    assert "8 rollouts / prompt" in markdown and "300 logged" in markdown
    # first-vs-last table, eval table, summary.json
    assert "## Training metrics: first vs last" in markdown
    assert "`contrastive/loss`" in markdown and "`task/right_answer_wrong_reasoning`" in markdown
    assert "`gsm8k_test`" in markdown and "`math500`" in markdown and "pass@4" in markdown
    assert "accuracy @ step 300" in markdown and "accuracy @ step 0" in markdown
    assert "| `accuracy` | 0.312 | 0.655 |" in markdown and "| `shifted.accuracy` | 0.25 | 0.5 |" in markdown
    assert "| `right_answer_wrong_reasoning` | 0.31 | 0.14 |" in markdown
    assert "| `wall_seconds` | 6,123 (1 h 42 min) |" in markdown


def test_clipo_off_has_no_contrastive_figure(synthetic_run):
    run = synthetic_run(steps=200, clipo=False, kl=False, summary=False)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert not any("contrastive" in line for line in lines)

    paths = make_report(run)

    assert "contrastive" not in paths.figures
    assert set(paths.figures) == ALL_FIGURES - {"contrastive"}
    assert not (paths.out_dir / "contrastive.png").exists()
    for path in paths.figures.values():
        _check_png(path)
    markdown = paths.markdown.read_text()
    _figure_links(markdown, paths)
    assert "| **CLIPO** | off |" in markdown
    assert "contrastive.png" not in markdown
    assert "summary.json" not in markdown
    # separation falls back to the snapshots' pooled states
    assert "computed from the saved snapshots" in markdown


def test_command_custom_out_dir_and_stale_figures_removed(synthetic_run, tmp_path, capsys):
    run = synthetic_run(steps=60, snapshots=1)
    out = tmp_path / "elsewhere" / "rep"
    assert main([str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report.md" in printed and "contrastive.png" in printed
    assert (out / "report.md").is_file() and (out / "contrastive.png").is_file()
    assert not (run / "report").exists()

    # Same folder, later report of the run without CLIPO keys: the old contrastive.png must not linger.
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.jsonl", "w") as handle:
        for row in lines:
            handle.write(json.dumps({k: v for k, v in row.items() if "contrastive" not in k}) + "\n")
    paths = make_report(run, out_dir=out)
    assert paths.out_dir == out
    assert "contrastive" not in paths.figures
    assert not (out / "contrastive.png").exists()


def test_sparse_and_broken_inputs(tmp_path):
    """Only metrics.jsonl, with an all-null key, a key in one line only, a bad step and a half-written last line."""
    run = tmp_path / "run"
    run.mkdir()
    rows = []
    for step in range(1, 41):
        row = {"step": step, "reward/accuracy": None if step % 3 == 0 else 0.5, "actor/entropy": None,
               "response/length_mean": 100 + step}
        if step == 7:
            row["actor/kl"] = 0.01
        rows.append(json.dumps(row))
    rows.append(json.dumps({"step": None, "reward/accuracy": 1.0}))
    rows.append('{"step": 41, "reward/accura')
    (run / "metrics.jsonl").write_text("\n".join(rows))
    # sampled eval (avg@k, no "accuracy"), a null accuracy, a line without results
    with open(run / "eval.jsonl", "w") as handle:
        for step in (20, 40):
            handle.write(json.dumps({"step": step, "results": {"aime": {"avg@8": step / 100, "pass@8": 0.5},
                                                               "broken": {"accuracy": None}}}) + "\n")
        handle.write(json.dumps({"step": 41}) + "\n")

    paths = make_report(run)

    assert set(paths.figures) == {"reward_accuracy", "training_health"}
    for path in paths.figures.values():
        _check_png(path, min_bytes=5_000)
    markdown = paths.markdown.read_text()
    _figure_links(markdown, paths)
    assert "1 unreadable line(s) skipped" in markdown
    assert "| `aime` | 0.2 | 0.4 | 0.4 | 0.5 |" in markdown  # first, final, then avg@8 and pass@8 of the final eval
    assert "| `broken` | – | – |" in markdown
    assert "`actor/entropy`" not in markdown  # all null: not in the table
    data = load_run(run)
    assert list(data.steps) == list(range(1, 41))
    assert np.isnan(data.metrics["actor/kl"]).sum() == 39


def test_only_snapshots_and_odd_snapshots(tmp_path):
    run = tmp_path / "run"
    (run / "embeddings").mkdir(parents=True)
    n = 10
    # a snapshot with NaN rows and a 1-d embedding, one with a single rollout, one that is not a valid file
    emb = torch.randn(n, 1)
    emb[0] = float("nan")
    torch.save({"step": 3, "pooled": emb.half(), "correct": torch.arange(n) % 2 == 0,
                "group_ids": torch.arange(n) // 5, "contrastive_reward": torch.zeros(n), "extras": {}}, run / "embeddings" / "step_000003.pt")
    torch.save({"step": 6, "pooled": torch.randn(1, 8).half(), "correct": torch.tensor([True]),
                "group_ids": torch.tensor([0]), "contrastive_reward": torch.zeros(1), "extras": {}}, run / "embeddings" / "step_000006.pt")
    (run / "embeddings" / "step_000009.pt").write_bytes(b"not a checkpoint")
    torch.save({"step": 12, "pooled": torch.randn(4, 8).half(), "correct": torch.tensor([True, False]),
                "group_ids": torch.zeros(4)}, run / "embeddings" / "step_000012.pt")

    paths = make_report(run)

    assert "embeddings_pca" in paths.figures
    _check_png(paths.figures["embeddings_pca"], min_bytes=5_000)
    markdown = paths.markdown.read_text()
    assert "step_000009.pt" in markdown  # noted as skipped
    assert "`embeddings/step_000012.pt` skipped: ValueError: 4 embeddings but 2 correctness flags" in markdown
    assert [s.step for s in load_run(run).snapshots] == [3, 6]
    assert "no training curves" in markdown


def test_not_a_run_folder(tmp_path, capsys):
    with pytest.raises(FileNotFoundError):
        make_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        make_report(tmp_path / "empty")
    assert report_command(tmp_path / "empty") == 2
    assert "not a run folder" in capsys.readouterr().err


def test_runtime_for_a_few_hundred_steps(clipo_run_report):
    _, paths, seconds = clipo_run_report
    assert len(paths.figures) == 5
    assert seconds < 30, seconds  # ~3 s on an idle 2-core CPU; the bound leaves room for loaded CI machines


def test_moving_average_ignores_nan():
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 5.0])
    out = moving_average(values, 3)
    assert out[0] == pytest.approx(1.0) and out[1] == pytest.approx(2.0) and out[2] == pytest.approx(3.0)
    assert np.isnan(out[4])
    assert np.array_equal(moving_average(values, 1), values, equal_nan=True)
    assert smoothing_window(10) == 1 and smoothing_window(300) % 2 == 1 and smoothing_window(100_000) == 51


def test_pca_is_deterministic_and_sign_fixed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5, 2, 1, 1, 1, 1])
    coords, ratio = pca_2d(x)
    again, _ = pca_2d(x.copy())
    assert np.array_equal(coords, again)
    flipped, _ = pca_2d(-x)  # the sign convention makes the projection independent of the input's sign...
    assert np.allclose(np.abs(flipped), np.abs(coords))
    assert ratio[0] > ratio[1] > 0 and ratio.sum() <= 1
    assert np.allclose(coords, _sklearn_pca(x), atol=1e-8)
    assert pca_2d(np.zeros((1, 4)))[0].shape == (1, 2)
    assert pca_2d(np.ones((5, 1)))[0].shape == (5, 2)


def _sklearn_pca(x: np.ndarray) -> np.ndarray:
    sklearn_decomposition = pytest.importorskip("sklearn.decomposition")
    coords = sklearn_decomposition.PCA(n_components=2, svd_solver="full").fit_transform(x)
    ours, _ = pca_2d(x)
    signs = np.sign((coords * ours).sum(axis=0))  # sklearn picks its own signs
    return coords * signs
