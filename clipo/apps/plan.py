"""``clipo plan``: memory per GPU of a recipe on paper, for every precision and parallel mode, and what to change
when it does not fit.

    clipo plan --config clipo_math_qwen2.5-7b --gpus 8 --gpu-memory 80
    clipo plan --config gsm8k_qwen2.5-0.5b --gpus 1 --precision bf16-mixed trainer.micro_batch_size=8

The model's shape comes from :data:`clipo.training.memory.KNOWN_SHAPES` (the Qwen2.5 hub names of the recipes,
no download), the built-in demo model, or the ``config.json`` / GGUF header of a local checkpoint (read with
``transformers.AutoConfig``, never from the network). The estimate itself is
:func:`clipo.training.memory.estimate_memory`; its formulas are in docs/memory.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any

from clipo.apps.demo.warmstart import WarmStartSpec, demo_tokenizer
from clipo.training.config import Config, ConfigError, TrainerConfig, load_config, parse_override
from clipo.training.memory import (
    GIB,
    KNOWN_SHAPES,
    OVERHEAD_BYTES,
    PARALLEL_MODES,
    PRECISIONS,
    MemoryPlan,
    ModelShape,
    estimate_memory,
    known_shape,
    shape_from_config,
    suggest_changes,
)
from clipo.training.pipeline import per_process_prompts

#: Prompt length assumed when the config sets no data.max_prompt_tokens (override with --prompt-tokens).
DEFAULT_PROMPT_TOKENS = 512

#: trainer.* keys the planner reads when the config has them (getattr) and takes as overrides when it does not.
_PLANNER_KEYS = {"trainer.precision": "precision", "trainer.parallel": "parallel", "trainer.fsdp_offload": "offload"}


class PlanError(ValueError):
    """The plan cannot be made (e.g. the model's shape is unknown); the message is one line."""


def add_parser(sub: Any) -> None:
    """Register ``clipo plan`` on the CLI's subparsers."""
    plan = sub.add_parser("plan", help="memory per GPU of a recipe on paper (every precision and parallel mode)")
    plan.add_argument("--config", help="YAML config file or shipped recipe name (default: the built-in demo's defaults)")
    plan.add_argument("--gpus", type=int, default=1, help="GPUs (processes) the run uses (default 1)")
    plan.add_argument("--gpu-memory", type=float, default=80.0, help="memory of one GPU in GiB (default 80)")
    plan.add_argument("--precision", choices=PRECISIONS,
                      help="plan only this precision (default: every one; the config's is the verdict's)")
    plan.add_argument("--parallel", choices=PARALLEL_MODES,
                      help="plan only this parallel mode (default: every one; the config's is the verdict's)")
    plan.add_argument("--offload", action="store_true", help="FSDP CPU offload in the verdict (trainer.fsdp_offload)")
    plan.add_argument("--prompt-tokens", type=int,
                      help=f"padded prompt length (default: data.max_prompt_tokens, else {DEFAULT_PROMPT_TOKENS})")
    plan.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa", help="attention kernel (default sdpa)")
    plan.add_argument("overrides", nargs="*", help="dotted overrides, e.g. trainer.micro_batch_size=2 rollout.n=8")


def plan_command(args: argparse.Namespace, out: Any = None) -> int:
    """Print the plan; 0 when printed (fits or not), 2 with a one-line message when it cannot be made."""
    out = out or sys.stdout
    try:
        text = render_plan(args)
    except PlanError as error:
        print(f"clipo plan: {error}", file=sys.stderr)
        return 2
    print(text, file=out)
    return 0


# ------------------------------------------------------------------------------------------ inputs


def resolve_shape(config: Config) -> ModelShape:
    """The architecture numbers of ``config.model`` without downloading anything."""
    m = config.model
    name = m.name_or_path
    if name == "builtin:tiny":
        spec = WarmStartSpec()
        return ModelShape(hidden_size=spec.hidden_size, num_layers=spec.num_layers, heads=spec.heads,
                          kv_heads=spec.kv_heads, intermediate_size=spec.intermediate,
                          vocab_size=len(demo_tokenizer()), tie_word_embeddings=False, name=name)
    shape = known_shape(name) if m.gguf_file is None else None
    if shape is not None:
        return shape
    try:
        from transformers import AutoConfig

        kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": m.trust_remote_code}
        if m.gguf_file is not None:
            kwargs["gguf_file"] = m.gguf_file
        hf_config = AutoConfig.from_pretrained(name, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure to read a config is the same answer for the user
        known = ", ".join(n.split("/")[-1] for n in KNOWN_SHAPES)
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise PlanError(f"cannot read the shape of model {name!r}: not a known checkpoint ({known}) and no local "
                        f"config ({reason})") from None
    try:
        return shape_from_config(hf_config, name=name)
    except ValueError as error:
        raise PlanError(str(error)) from None


def _split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Overrides for load_config, and the planner keys the config does not have yet (trainer.precision, ...)."""
    fields = {f.name for f in dataclasses.fields(TrainerConfig)}
    kept, planner = [], {}
    for text in overrides:
        key, value = parse_override(text)
        if key in _PLANNER_KEYS and key.split(".")[1] not in fields:
            planner[_PLANNER_KEYS[key]] = value
        else:
            kept.append(text)
    return kept, planner


@dataclasses.dataclass
class _Run:
    """What the planner takes from the config: the shape, the estimator's settings and the selected combination."""

    shape: ModelShape
    settings: dict[str, Any]
    precision: str
    parallel: str
    offload: bool
    notes: list[str]


def resolve_run(args: argparse.Namespace) -> _Run:
    overrides, planner = _split_overrides(list(args.overrides))
    config = load_config(args.config, overrides)
    if args.gpus < 1:
        raise PlanError(f"--gpus {args.gpus}: must be >= 1")
    shape = resolve_shape(config)
    m, r, t, d = config.model, config.rollout, config.trainer, config.data
    notes = []

    precision = args.precision or planner.get("precision") or getattr(t, "precision", None) or "fp32"
    if precision not in PRECISIONS:
        raise PlanError(f"trainer.precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":  # the trainer picks bf16-mixed on a bf16-capable GPU (every GPU the recipes target)
        notes.append("trainer.precision=auto: planned as bf16-mixed (what it resolves to on a bf16-capable GPU)")
        precision = "bf16-mixed"
    if precision == "fp32" and m.dtype != "float32":
        notes.append(f"trainer.precision=fp32 with model.dtype={m.dtype} trains in pure 16-bit: planned as bf16")
        precision = "bf16"
    parallel = args.parallel or planner.get("parallel") or getattr(t, "parallel", None) or "auto"
    if parallel == "auto":
        parallel = "ddp" if args.gpus > 1 else "none"
    if parallel not in PARALLEL_MODES:
        raise PlanError(f"trainer.parallel={parallel!r}: expected one of auto, {', '.join(PARALLEL_MODES)}")
    if parallel == "none" and args.gpus > 1:
        notes.append(f"trainer.parallel=none on {args.gpus} processes is refused by the trainer; use ddp or fsdp")
    offload = bool(args.offload or planner.get("offload") or getattr(t, "fsdp_offload", False))

    try:
        per_process = per_process_prompts(config, args.gpus)  # a global batch is split over the GPUs, as in training
    except ConfigError as error:
        raise PlanError(str(error)) from None
    rollouts = per_process * r.n  # per process
    micro = min(t.micro_batch_size, rollouts)
    if t.share_prompt_forward and r.n > 1 and micro >= r.n:
        micro = micro // r.n * r.n  # the trainer rounds training micro-batches down to whole groups
    per_update = max(1, rollouts // t.mini_batches)
    prompt_tokens = args.prompt_tokens or getattr(d, "max_prompt_tokens", 0) or DEFAULT_PROMPT_TOKENS
    if not (args.prompt_tokens or getattr(d, "max_prompt_tokens", 0)):
        notes.append(f"prompts assumed {DEFAULT_PROMPT_TOKENS} tokens long (set --prompt-tokens or data.max_prompt_tokens)")
    c = config.clipo
    head = 0
    if c.enabled:
        head = shape.hidden_size * c.head_size + (shape.hidden_size ** 2 if c.head_kind == "mlp" else 0)
    settings = dict(
        gpus=args.gpus, micro_batch_size=micro, prompt_tokens=prompt_tokens, response_tokens=r.max_new_tokens,
        rollout_batch=min(r.micro_batch_size, rollouts), group_size=r.n,
        gradient_checkpointing=m.gradient_checkpointing, lora_r=m.lora_r, lora_targets=tuple(m.lora_target_modules),
        reference=(config.algorithm.kl_coef or 0) > 0, accumulation_steps=math.ceil(per_update / micro),
        attention=args.attention, temperature=r.temperature or 1.0, head_params=head)
    return _Run(shape, settings, precision, parallel, offload, notes)


# ------------------------------------------------------------------------------------------ output


def _gib(n: float) -> str:
    return f"{n / GIB:.1f}"


def _row_plans(run: _Run, args: argparse.Namespace) -> list[tuple[str, MemoryPlan]]:
    precisions = [args.precision] if args.precision else list(PRECISIONS)
    modes: list[tuple[str, bool]] = []
    for mode in ([args.parallel] if args.parallel else list(PARALLEL_MODES)):
        modes.append((mode, False))
        if mode == "fsdp":
            modes.append((mode, True))
    rows = []
    for precision in precisions:
        for mode, offload in modes:
            label = f"{precision:<10} {mode + ('+offload' if offload else ''):<12}"
            rows.append((label, estimate_memory(run.shape, **{**run.settings, "precision": precision,
                                                             "parallel": mode, "offload": offload})))
    return rows


def render_plan(args: argparse.Namespace) -> str:
    run = resolve_run(args)
    gpu_bytes = args.gpu_memory * GIB
    s = run.settings
    lines = [
        f"clipo plan: {run.shape.name} ({run.shape.describe()})",
        f"  on {args.gpus} GPU(s) of {args.gpu_memory:g} GiB; per GPU: training micro-batch {s['micro_batch_size']} × "
        f"({s['prompt_tokens']} prompt + {s['response_tokens']} response) tokens, gradient checkpointing "
        f"{'on' if s['gradient_checkpointing'] else 'off'}, {s['accumulation_steps']} micro-batch(es) per update; "
        f"rollout {s['rollout_batch']} sequences at once; reference model {'on' if s['reference'] else 'off'}"
        + (f"; LoRA r={s['lora_r']}" if s["lora_r"] else ""),
    ]
    lines += [f"  note: {n}" for n in run.notes]
    header = (f"{'GiB per GPU':<23} {'weights':>7} {'bf16cp':>6} {'grads':>6} {'AdamW':>6} {'ref':>5} {'act':>6} "
              f"{'logits':>6} {'KV':>6} {'shard':>6} | {'train':>6} {'rollout':>7} {'peak':>6}  fits")
    lines += ["", header, "-" * len(header)]
    selected_label = f"{run.precision:<10} {run.parallel + ('+offload' if run.offload and run.parallel == 'fsdp' else ''):<12}"
    for label, plan in _row_plans(run, args):
        mark = "*" if label == selected_label else " "
        shard = plan.gathered + plan.accumulated_gradients + plan.comm_buffers
        lines.append(
            f"{label}{mark} {_gib(plan.weights):>7} {_gib(plan.compute_weights):>6} {_gib(plan.gradients):>6} "
            f"{_gib(plan.optimizer):>6} {_gib(plan.reference):>5} {_gib(plan.activations):>6} {_gib(plan.logits):>6} "
            f"{_gib(plan.kv_cache):>6} {_gib(shard):>6} | {_gib(plan.train_peak):>6} {_gib(plan.rollout_peak):>7} "
            f"{_gib(plan.peak):>6}  {'yes' if plan.fits(gpu_bytes) else 'NO'}")
    lines.append(f"* the selected combination. bf16cp: autocast's bf16 weight copies; shard: FSDP gathered units + "
                 f"unsharded accumulated gradients, or DDP buckets; 'fits' keeps {_gib(OVERHEAD_BYTES)} GiB for CUDA "
                 f"context and workspaces. Formulas: docs/memory.md")
    lines += [""] + _verdict(run, gpu_bytes)
    return "\n".join(lines)


def _verdict(run: _Run, gpu_bytes: float) -> list[str]:
    settings = {**run.settings, "precision": run.precision, "parallel": run.parallel,
                "offload": run.offload and run.parallel == "fsdp"}
    plan = estimate_memory(run.shape, **settings)
    fits = plan.fits(gpu_bytes)
    used = plan.peak + OVERHEAD_BYTES
    mode = f"{run.parallel}{' + CPU offload' if settings['offload'] else ''}"
    lines = [f"Selected: {run.precision}, {mode} on {settings['gpus']} GPU(s): peak {_gib(plan.peak)} GiB ({plan.peak_phase}) + {_gib(OVERHEAD_BYTES)} GiB overhead = "
             f"{_gib(used)} of {gpu_bytes / GIB:g} GiB -> {'FITS' if fits else 'DOES NOT FIT'} ({used / gpu_bytes:.0%})"]
    weights_label = "weights (fp32 master)" if run.precision == "bf16-mixed" else "weights"
    lines.append(f"  resident : {weights_label} {_gib(plan.weights)}, bf16 copies {_gib(plan.compute_weights)}, "
                 f"gradients {_gib(plan.gradients)}, AdamW {_gib(plan.optimizer)}, reference {_gib(plan.reference)}, "
                 f"CLIPO head {_gib(plan.head)}" + (f"; on the host: {_gib(plan.offloaded)}" if plan.offloaded else ""))
    recompute = estimate_memory(run.shape, **{**settings, "gradient_checkpointing": True}).recompute
    lines.append(f"  training : activations {_gib(plan.activations)} (without checkpointing "
                 f"{_gib(plan.activations_full)}; with it {_gib(plan.activations_checkpointed)} + one layer "
                 f"recomputed {_gib(recompute)}), logits {_gib(plan.logits)}, FSDP gathered {_gib(plan.gathered)}, unsharded gradients "
                 f"{_gib(plan.accumulated_gradients)}, DDP buckets {_gib(plan.comm_buffers)} -> {_gib(plan.train_peak)}")
    lines.append(f"  no-grad forward: {_gib(plan.forward_work)} on top of resident -> {_gib(plan.forward_peak)}; "
                 f"optimizer step: {_gib(plan.optimizer_work)} -> {_gib(plan.step_peak)}")
    lines.append(f"  rollout  : full weights (FSDP) {_gib(plan.rollout_weights)}, KV cache {_gib(plan.kv_cache)}, "
                 f"decode/prefill {_gib(plan.rollout_work)} -> {_gib(plan.rollout_peak)}")
    if run.parallel == "fsdp":
        fixed = plan.compute_weights + plan.reference + plan.accumulated_gradients + plan.rollout_weights
        lines.append(f"  not sharded by FSDP here: bf16 copies, reference replica, accumulated gradients and the "
                     f"rollout's full weights ({_gib(fixed)} GiB): more GPUs do not shrink them")
    if not fits:
        suggestions = suggest_changes(run.shape, settings, gpu_bytes)
        if suggestions:
            lines.append("What to change (each alone, then stacked): peak with the change, and the change")
            for s in suggestions:
                phase = f"({s.plan.peak_phase})"
                lines.append(f"  {'fits' if s.fits else '    '} {_gib(s.plan.peak):>6} GiB {phase:<17}  {s.change}")
        else:
            lines.append("No single change the planner knows lowers the peak.")
    return lines
