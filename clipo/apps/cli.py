"""The ``clipo`` command line.

    clipo train [--config FILE] [section.field=value ...]     RL training (defaults: the built-in CPU demo)
    clipo eval  --model PATH [--config FILE] [key=value ...]  pass@1 / avg@k / pass@k on data.eval
    clipo report RUN_DIR [--out DIR]                          PNG plots and a Markdown summary of a run
    clipo experiment [--seeds 3] [--algorithms grpo] [k=v]    base vs base + CLIPO on the demo task, over seeds
    clipo config [--config FILE] [key=value ...]              print every key (or the resolved config)
    clipo plan [--config FILE] [--gpus N] [--gpu-memory GiB]  memory per GPU on paper, and what to change

Without --config and without model.name_or_path, `clipo train` starts from the built-in demo recipe
(clipo/recipes/demo.yaml); recipes for GPUs live in clipo/recipes/ too.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml
from transformers.utils import logging as hf_logging

from clipo.apps.demo.experiment import run_experiment
from clipo.apps.demo.run import RECIPE, run_demo
from clipo.apps.evaluate import run_evaluation
from clipo.apps.plan import add_parser as add_plan_parser
from clipo.apps.plan import plan_command
from clipo.apps.report import report_command
from clipo.apps.specs import build_trainer
from clipo.data import DataError
from clipo.training.config import ConfigError, describe, load_config, parse_override
from clipo.training.evaluation import format_table
from clipo.training.run_folder import RunFolder


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipo", description="RLVR post-training with GRPO, Dr. GRPO, DAPO, GSPO, GMPO and CLIPO.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train a policy (no arguments: the built-in CPU demo)")
    train.add_argument("--config", help="YAML config file (sections model, data, reward, algorithm, clipo, rollout, trainer)")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algorithm.name=dapo rollout.n=8")
    evaluate = sub.add_parser("eval", help="evaluate a checkpoint or Hugging Face model on data.eval")
    evaluate.add_argument("--model", help="model id, folder, or a run folder (uses its final/ model)")
    evaluate.add_argument("--config", help="YAML config file")
    evaluate.add_argument("--output", help="write the results as JSON here (default: <model>/eval_results.json)")
    evaluate.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.eval=test.parquet rollout.eval_n=8")
    report = sub.add_parser("report", help="PNG plots and a Markdown summary of a run folder")
    report.add_argument("run_dir", help="run folder (trainer.output_dir)")
    report.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    experiment = sub.add_parser("experiment", help="base algorithm vs base + CLIPO on the demo task, over several seeds")
    experiment.add_argument("--seeds", type=int, default=3, help="RL seeds per variant (default 3)")
    experiment.add_argument("--algorithms", default="grpo", help="comma-separated base algorithms (default grpo)")
    experiment.add_argument("--output", default="runs/experiment", help="folder for the runs and the table")
    experiment.add_argument("overrides", nargs="*", help="dotted overrides applied to every run, e.g. trainer.max_steps=40")
    config = sub.add_parser("config", help="list every config key with its default and help, or print a resolved config")
    config.add_argument("--config", help="YAML config file to resolve")
    config.add_argument("overrides", nargs="*")
    add_plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_libraries()
    if argv is None:
        _show_clipo_logs()
    try:
        if args.command in (None, "train"):
            return _train(getattr(args, "config", None), getattr(args, "overrides", []))
        if args.command == "eval":
            return _eval(args)
        if args.command == "config":
            return _config(args)
        if args.command == "experiment":
            run_experiment(list(args.overrides), seeds=args.seeds, algorithms=[a for a in args.algorithms.split(",") if a],
                           output_dir=args.output)
            return 0
        if args.command == "plan":
            return plan_command(args)
        if args.command == "report":
            return report_command(args.run_dir, args.out)
    except ConfigError as error:
        print(f"clipo: config error: {error}", file=sys.stderr)
        return 2
    except DataError as error:
        print(f"clipo: data error: {error}", file=sys.stderr)
        return 2
    return 2


def _quiet_libraries() -> None:
    """clipo shows its own progress; silence the per-file bars of transformers' loading and saving."""
    hf_logging.disable_progress_bar()


def _show_clipo_logs() -> None:
    """As a command, print clipo's own log lines (data summaries, prompts dropped, steps per epoch, precision
    warnings) on stderr. Not done when ``main`` is called from Python: the caller owns logging there."""
    log = logging.getLogger("clipo")
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _base_config(config_path: str | None, overrides: list[str]) -> str | None:
    """The demo recipe is the base when the user names neither a config file nor a model."""
    if config_path is not None:
        return config_path
    if any(parse_override(o)[0] == "model.name_or_path" for o in overrides):
        return None
    return str(RECIPE)


def _train(config_path: str | None, overrides: list[str]) -> int:
    config = load_config(_base_config(config_path, overrides), overrides)
    if config.model.name_or_path.startswith("builtin:") and config.data.train.startswith("builtin:"):
        return run_demo(config)
    trainer = build_trainer(config)
    result = trainer.fit()
    if trainer.is_main:  # one line per run, not per process
        print(f"clipo: trained {result['step']} steps; run folder {config.trainer.output_dir}")
        if result["eval"]:
            print(json.dumps(result["eval"], indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    config_path = args.config
    if args.model:
        model = Path(args.model)
        run = RunFolder(model)
        if run.final.is_dir():
            # A run folder: evaluate its final model with the run's own settings (verifier, chat template, ...)
            # unless a config file is given; command-line overrides still win.
            if config_path is None and run.config.is_file():
                config_path = str(run.config)
            model = run.final
        overrides.append(f"model.name_or_path={model if model.exists() else args.model}")
    config = load_config(config_path, overrides)
    if not config.data.eval:
        print("clipo eval: set data.eval=FILE[,FILE...] (parquet, JSONL or CSV)", file=sys.stderr)
        return 2
    results = run_evaluation(config)
    print(format_table(results))
    output = Path(args.output) if args.output else (Path(config.model.name_or_path) / "eval_results.json"
                                                     if Path(config.model.name_or_path).is_dir() else Path("eval_results.json"))
    output.write_text(json.dumps({r.name: r.as_dict() for r in results}, indent=2))
    print(f"clipo eval: results written to {output}")
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.config or args.overrides:
        print(yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False))
    else:
        print(describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
