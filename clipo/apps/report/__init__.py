"""``clipo report RUN_DIR``: PNG plots and a Markdown summary of a training run.

Reads what :class:`clipo.training.trainer.RLTrainer` leaves in its run folder and writes ``RUN_DIR/report/``::

    report.md                  config essentials, first-vs-last metric table, eval table, summary.json, figure list
    reward_accuracy.png        reward, train accuracy, eval accuracy per dataset (+ task/* metrics when logged)
    contrastive.png            contrastive loss; contrastive reward of correct vs incorrect rollouts   (CLIPO on)
    embedding_separation.png   within-group cosine correct–correct vs correct–incorrect
    embeddings_pca.png         2-D PCA of the saved rollout embeddings, one panel per snapshot
    training_health.png        response length, truncation, entropy, clip fraction, grad norm, KL, timing

Everything is optional: missing files, absent keys (CLIPO off, no KL) and null/NaN values are skipped, so a
figure or a panel appears only when there is something to draw. Per-step curves are drawn raw (faint) with a
centred moving average on top. Plotting uses matplotlib's object API with the Agg canvas (no pyplot, no global
backend switch), so it is safe to call from a notebook or a training process.

    from clipo.apps.report import make_report
    paths = make_report("runs/clipo")        # -> ReportPaths(markdown=..., figures={...})

One module per job (docs/architecture.md): ``read`` (the run folder into :class:`RunData`, through
:class:`clipo.training.run_folder.RunFolder`), ``numerics`` (smoothing, PCA, separation; numpy only),
``figures`` (the PNGs) and ``markdown`` (``report.md``); this module ties them together.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from clipo.apps.report.figures import FIGURE_BUILDERS, FIGURE_TITLES
from clipo.apps.report.markdown import render_markdown
from clipo.apps.report.numerics import moving_average, pca_2d, smoothing_window, snapshot_separation
from clipo.apps.report.read import RunData, Snapshot, load_run

__all__ = ["FIGURE_TITLES", "ReportPaths", "RunData", "Snapshot", "load_run", "main", "make_report", "moving_average",
           "pca_2d", "report_command", "smoothing_window", "snapshot_separation"]


@dataclass
class ReportPaths:
    """Where :func:`make_report` wrote things. ``figures`` maps a figure name (see ``FIGURE_TITLES``) to its PNG."""

    out_dir: Path
    markdown: Path
    figures: dict[str, Path] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Path]:
        return {"out_dir": self.out_dir, "markdown": self.markdown, **self.figures}


def make_report(run_dir: str | Path, *, out_dir: str | Path | None = None) -> ReportPaths:
    """Write PNG figures and ``report.md`` for the run in ``run_dir`` into ``out_dir`` (default ``run_dir/report``).

    Figures with nothing to draw are not written (and stale copies from an earlier report are removed).
    A figure that fails to draw is recorded in the Markdown's notes instead of stopping the report.
    Raises FileNotFoundError when ``run_dir`` is missing or holds none of the files a run writes.
    """
    run = load_run(run_dir)
    if not (len(run.steps) or run.evals or run.snapshots or run.config or run.summary):
        f = run.folder
        raise FileNotFoundError(f"{run_dir} is not a run folder: no {f.metrics.name}, {f.evals.name}, "
                                f"{f.embeddings_dir.name}/, {f.config.name} or {f.summary.name}")
    out = Path(out_dir) if out_dir is not None else run.folder.report
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices and the like
        warnings.filterwarnings("ignore", message=".*tight_layout.*|.*constrained_layout.*")
        for name, builder in FIGURE_BUILDERS:
            path = out / f"{name}.png"
            try:
                written = builder(run, path)
            except Exception as error:  # noqa: BLE001 - one bad figure must not cost the whole report
                run.notes.append(f"figure `{name}` failed: {type(error).__name__}: {error}")
                written = None
            if written is not None:
                figures[name] = written
            elif path.exists():
                path.unlink()
    markdown = out / "report.md"
    markdown.write_text(render_markdown(run, figures, out), encoding="utf-8")
    return ReportPaths(out_dir=out, markdown=markdown, figures=figures)


def report_command(run_dir: str | Path, out_dir: str | Path | None = None) -> int:
    """What ``clipo report RUN_DIR [--out DIR]`` runs: prints the written paths; exit code 0, or 2 on a bad folder."""
    try:
        paths = make_report(run_dir, out_dir=out_dir)
    except FileNotFoundError as error:
        print(f"clipo report: {error}", file=sys.stderr)
        return 2
    print(f"clipo report: wrote {paths.markdown}")
    for path in paths.figures.values():
        print(f"  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m clipo.apps.report RUN_DIR [--out DIR]``: the same as ``clipo report``."""
    parser = argparse.ArgumentParser(prog="clipo report", description="PNG plots and a Markdown summary of a run folder.")
    parser.add_argument("run_dir", help="run folder (trainer.output_dir)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/report)")
    args = parser.parse_args(argv)
    return report_command(args.run_dir, args.out)

