"""The ``clipo`` command line.

    clipo train [--config FILE] [section.field=value ...]     RL training (defaults: the built-in CPU demo)
    clipo eval  --model PATH [--config FILE] [key=value ...]  pass@1 / avg@k / pass@k on data.eval
    clipo eval  --model PATH --track gsm8k|math [key=value]   the paper's track: its sets, sampling and table
    clipo compare RUN_A RUN_B [...] [--json PATH]             baseline vs others per set, paired bootstrap 95% CI
    clipo report RUN_DIR [--out DIR]                          PNG plots and a Markdown summary of a run
    clipo experiment [--seeds 3] [--algorithms grpo] [k=v]    base vs base + CLIPO on the demo task, over seeds
    clipo config [--config FILE] [key=value ...]              print every key (or the resolved config)
    clipo plan [--config FILE] [--gpus N] [--gpu-memory GiB]  memory per GPU on paper, and what to change

Without --config and without model.name_or_path, `clipo train` starts from the built-in demo recipe
(clipo/recipes/demo.yaml); recipes for GPUs live in clipo/recipes/ too. Your own data without a model is refused
(set model.name_or_path; the demo model is builtin:tiny).

A user error (config, data, model path, output folder) is one line on stderr and exit status 2; anything else is
one line and exit status 1. `clipo --debug ...` (or CLIPO_DEBUG=1) shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from transformers.utils import logging as hf_logging

from clipo.apps.compare import add_parser as add_compare_parser
from clipo.apps.compare import compare_command
from clipo.apps.demo.experiment import run_experiment
from clipo.apps.demo.run import RECIPE, run_demo
from clipo.apps.evaluate import problem_records, results_markdown, run_evaluation, track_overrides
from clipo.apps.plan import add_parser as add_plan_parser
from clipo.apps.plan import plan_command
from clipo.apps.report import report_command
from clipo.apps.report.markdown import read_learning_summary
from clipo.apps.specs import BUILTIN_PREFIX, DEMO_MODEL_HINT, build_trainer, check_model_path
from clipo.data import DataError
from clipo.training.checkpoint import latest_checkpoint
from clipo.training.config import ConfigError, describe, load_config, parse_override, resolve_recipe
from clipo.training.evaluation import format_table
from clipo.training.run_folder import EVAL_RESULTS, RunFolder, eval_output_files, step_of
from clipo.training.signals import Preempted


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipo", description="RLVR post-training with GRPO, Dr. GRPO, DAPO, GSPO, GMPO, RLOO and CLIPO.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: CLIPO_DEBUG=1)")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train a policy (no arguments: the built-in CPU demo)")
    train.add_argument("--config", help="YAML config file (sections model, data, reward, algorithm, clipo, rollout, trainer)")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algorithm.name=dapo rollout.n=8")
    evaluate = sub.add_parser("eval", help="evaluate a checkpoint or Hugging Face model on data.eval")
    evaluate.add_argument("--model", help="model id, folder, or a run folder (uses its final/ model)")
    evaluate.add_argument("--config", help="YAML config file")
    evaluate.add_argument("--output", help="write the results as JSON here, the scored completions beside it "
                          "(default: RUN_DIR/final/eval_results.json for a run folder, else ./eval_results.json)")
    evaluate.add_argument("--track", help="evaluate on a paper track (gsm8k or math): its sets under data.root "
                          "(or $CLIPO_DATA_DIR) and its eval sampling; overrides still win")
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
    add_compare_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get("CLIPO_DEBUG", "").strip() not in ("", "0", "false")
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
        if args.command == "compare":
            return compare_command(args)
        if args.command == "report":
            return report_command(args.run_dir, args.out)
    except (ConfigError, DataError) as error:  # a user error: one line naming the key/file and the fix
        if debug:
            traceback.print_exc()
        kind = "config" if isinstance(error, ConfigError) else "data"
        print(f"clipo: {kind} error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # anything else: one line, the traceback only when asked for
        if debug:
            raise
        print(f"clipo: error: {type(error).__name__}: {_one_line(error)} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1
    return 2


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or "(no message)"


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


def _model_named(config_path: str | None, overrides: list[str]) -> bool:
    """Whether the user named a model (an override, or ``model.name_or_path`` in the config file)."""
    if any(parse_override(o)[0] == "model.name_or_path" for o in overrides):
        return True
    if config_path is None:
        return False
    data = yaml.safe_load(resolve_recipe(config_path).read_text()) or {}
    model = data.get("model") if isinstance(data, dict) else None
    return isinstance(model, dict) and model.get("name_or_path") is not None


def _refuse_demo_fallback(config_path: str | None, overrides: list[str], key: str, specs: list[str]) -> None:
    """User data without a named model would silently run the built-in demo model: refuse (one line)."""
    own = [spec for spec in specs if spec and not spec.startswith(BUILTIN_PREFIX)]
    if own and not _model_named(config_path, overrides):
        raise ConfigError(f"{key}={own[0]} but no model: {DEMO_MODEL_HINT}")


def _end_of_run(config, result: dict, resumed_from: int | None) -> str:
    """``clipo train``'s last line: steps, policy updates vs skips, and a warning when nothing was learned."""
    summary = read_learning_summary(RunFolder(config.trainer.output_dir).metrics)
    resumed = f" (resumed from step {resumed_from})" if resumed_from else ""
    line = (f"clipo: trained {result['step']} steps{resumed}: {summary['updated']} updated the policy, "
            f"{summary['skipped']} skipped; run folder {config.trainer.output_dir}")
    if summary["warning"]:
        line += f"\nclipo: warning: {summary['warning']}"
    return line


def _resume_step(config) -> int | None:
    """The step a ``trainer.resume`` run continues from (its newest checkpoint), None when it starts fresh."""
    if not config.trainer.resume:
        return None
    checkpoint = latest_checkpoint(config.trainer.output_dir, warn=False)
    return step_of(checkpoint) if checkpoint is not None else None


def _next_free_demo_folder(config: Any, overrides: list[str]) -> None:
    """Running the demo again writes to runs/demo-2, -3, ... instead of refusing (its folder holds the last run):
    unless the user named trainer.output_dir or asked to resume or overwrite, which then apply as for any run."""
    t = config.trainer
    if t.resume or t.overwrite or any(parse_override(o)[0] == "trainer.output_dir" for o in overrides):
        return
    base, candidate, number = Path(t.output_dir), Path(t.output_dir), 1
    while RunFolder(candidate).previous_run_files():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    if candidate != base:
        print(f"clipo: {base} holds the previous demo run; this one writes to {candidate}")
        t.output_dir = str(candidate)


def _train(config_path: str | None, overrides: list[str]) -> int:
    config = load_config(_base_config(config_path, overrides), overrides)
    _refuse_demo_fallback(config_path, overrides, "data.train", [config.data.train])
    try:
        if config.model.name_or_path.startswith("builtin:") and config.data.train.startswith("builtin:"):
            _next_free_demo_folder(config, overrides)
            return run_demo(config)
        trainer = build_trainer(config)
        resumed_from = _resume_step(config)
        result = trainer.fit()
    except Preempted as stopped:  # SIGTERM/SIGINT: a checkpoint was written; 143 / 130 as a shell reports them
        if os.environ.get("RANK", "0") == "0":  # one line per run, not per process
            print(stopped, file=sys.stderr)
        return stopped.exit_code
    if trainer.is_main:  # one line per run, not per process
        print(_end_of_run(config, result, resumed_from))
        if result["eval"]:
            print(json.dumps(result["eval"], indent=2))
    return 0


def _eval(args: argparse.Namespace) -> int:
    overrides = (track_overrides(args.track) if args.track else []) + list(args.overrides)
    config_path = args.config
    run_final = None
    if args.model:
        model = Path(args.model)
        run = RunFolder(model)
        if run.final.is_dir():
            # A run folder: evaluate its final model with the run's own settings (verifier, chat template, ...)
            # unless a config file is given; command-line overrides still win.
            if config_path is None and run.config.is_file():
                config_path = str(run.config)
            model = run_final = run.final
            overrides.append("model.gguf_file=null")  # final/ is saved as safetensors, even from a GGUF model
        overrides.append(f"model.name_or_path={model if model.exists() else args.model}")
    config = load_config(config_path, overrides)
    if not config.data.eval:
        print("clipo eval: set data.eval=FILE[,FILE...] (parquet, JSONL or CSV)", file=sys.stderr)
        return 2
    if not args.model:
        _refuse_demo_fallback(config_path, overrides, "data.eval", list(config.data.eval))
    check_model_path(config)
    # Never into the model's folder (a hub cache or an installed package): the run folder, else the working directory.
    output = Path(args.output) if args.output else (RunFolder(run_final.parent).final_eval_results
                                                     if run_final is not None else Path(EVAL_RESULTS))
    samples, problems = eval_output_files(output)
    records: list[dict] = []
    results = run_evaluation(config, records=records)
    print(format_table(results))
    table = results_markdown(results, args.track)
    if table is not None:
        print("\n" + table + "\n")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({r.name: r.as_dict() for r in results}, indent=2))
    samples.write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    problems.write_text("".join(json.dumps(r) + "\n" for r in problem_records(results)))
    print(f"clipo eval: results written to {output.resolve()}; the {len(records)} scored completions to {samples.resolve()}; "
          f"per-problem scores (for clipo compare) to {problems.resolve()}")
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.config or args.overrides:
        print(yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False))
    else:
        print(describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
