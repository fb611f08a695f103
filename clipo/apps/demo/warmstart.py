"""The demo's policy: a tiny Qwen2-style model with a character-level tokenizer, warm-started by supervised
fine-tuning on generated demonstrations, and cached so that a second run skips the warm-start."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import AutoModelForCausalLM

from clipo.apps.demo.task import check_process, make_problems, worked_solution
from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer
from clipo.rollout import SamplingParams, make_engine
from clipo.training.config import Config, ConfigError

TASK_VERSION = 2  # 2: the warm-start bisects back to the first step at its target


@dataclass(frozen=True)
class WarmStartSpec:
    """Everything that determines the warm-started model (its hash names the cache folder)."""

    hidden_size: int = 96
    num_layers: int = 3
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 288
    max_sft_steps: int = 300
    min_sft_steps: int = 60
    target_accuracy: float = 0.5  # stop once greedy accuracy on a validation split reaches this
    check_every: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    sloppy_rate: float = 0.3  # share of demonstrations with a wrong tens digit (right answer, wrong reasoning)
    num_problems: int = 6000
    seed: int = 0

    def key(self) -> str:
        payload = json.dumps({"task": TASK_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """``$CLIPO_CACHE`` or ``~/.cache/clipo``."""
    return Path(os.environ.get("CLIPO_CACHE", Path.home() / ".cache" / "clipo"))


def demo_tokenizer() -> Any:
    """Characters of the task plus a few whole-word tokens, Qwen-style chat template."""
    return build_tiny_tokenizer(chars="0123456789+=;?{}\\ boxedlastigf",
                                words=("\\boxed{", "last digit of ", "user", "assistant"))


def _render(tokenizer: Any, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)


def _sft_batch(tokenizer: Any, problems: list, rng: random.Random, spec: WarmStartSpec) -> tuple[torch.Tensor, ...]:
    """A right-padded batch of prompt + demonstration + EOS with labels only on the demonstration."""
    rows = []
    for problem in problems:
        sloppy = rng.randrange(len(problem.operands) - 1) if rng.random() < spec.sloppy_rate else None
        prompt = tokenizer(_render(tokenizer, problem.prompt), add_special_tokens=False)["input_ids"]
        answer = tokenizer(worked_solution(problem, sloppy_step=sloppy), add_special_tokens=False)["input_ids"]
        rows.append((prompt, answer + [tokenizer.eos_token_id]))
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, answer) in enumerate(rows):
        sequence = prompt + answer
        ids[i, : len(sequence)] = torch.tensor(sequence)
        attention[i, : len(sequence)] = 1
        labels[i, len(prompt): len(sequence)] = torch.tensor(answer)
    return ids, attention, labels


def validation_accuracy(model: Any, tokenizer: Any, *, count: int = 100, seed: int = 14) -> float:
    """Greedy accuracy on a validation split disjoint from the demo's train/test/shifted splits' seeds."""
    problems = make_problems(count, seed=seed)
    engine = make_engine(Config(), model, tokenizer, micro_batch_size=count)
    batch = engine.generate([_render(tokenizer, p.prompt) for p in problems], SamplingParams(n=1, max_new_tokens=48, temperature=0.0))
    return sum(check_process(p, t).answer_correct for p, t in zip(problems, batch.response_texts)) / count


def first_step_at_target(low: int, high: int, accuracy_at: Callable[[int], float], target: float,
                         high_accuracy: float) -> tuple[int, float]:
    """The step where accuracy crosses ``target`` between two checks, by bisection.

    Given ``accuracy_at(low) < target <= accuracy_at(high) = high_accuracy`` (both already measured), returns
    ``(k, accuracy_at(k))``
    with ``low < k <= high``, ``accuracy_at(k) >= target`` and ``accuracy_at(k - 1) < target``: a step where the
    curve crosses the target (the first one when accuracy rises monotonically), in ⌈log2(high − low)⌉ evaluations.
    The overshoot past the target is then at most one step's change, not ``high − low`` steps' worth."""
    best = high_accuracy
    while high - low > 1:
        middle = (low + high) // 2
        accuracy = accuracy_at(middle)
        if accuracy >= target:
            high, best = middle, accuracy
        else:
            low = middle
    return high, best


def warm_start(spec: WarmStartSpec, *, log: Any = print) -> tuple[Any, Any]:
    """Build the tiny model and fine-tune it on demonstrations (AdamW, linear warm-up then constant LR).

    The demo wants a model that already follows the format and is right about ``target_accuracy`` of the time,
    so that RL has something to improve. Greedy validation accuracy is checked every ``check_every`` steps after
    ``min_sft_steps``; accuracy can jump by tens of points between two checks, so the weights of the steps since
    the last check are kept and, once a check reaches the target, :func:`first_step_at_target` bisects back to
    the step where it was crossed (deterministic: same seeds, same step). Returns (model, tokenizer)."""
    tokenizer = demo_tokenizer()
    model = build_tiny_model(tokenizer, hidden_size=spec.hidden_size, num_layers=spec.num_layers, heads=spec.heads,
                             kv_heads=spec.kv_heads, intermediate=spec.intermediate, seed=spec.seed)
    problems = make_problems(spec.num_problems, seed=spec.seed + 1)
    rng = random.Random(spec.seed + 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    model.train()
    start = time.perf_counter()
    last_check: int | None = None  # the step of the last check, which was below the target
    weights: dict[int, dict[str, torch.Tensor]] = {}  # step -> weights, for the steps since that check

    def accuracy_at(step: int) -> float:
        model.load_state_dict(weights[step])
        return validation_accuracy(model, tokenizer)

    for step in range(spec.max_sft_steps):
        ids, attention, labels = _sft_batch(tokenizer, [problems[rng.randrange(len(problems))] for _ in range(spec.batch_size)], rng, spec)
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if last_check is not None:  # a step the bisection may come back to
            weights[done] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if done >= spec.min_sft_steps and done % spec.check_every == 0:
            model.eval()
            accuracy = validation_accuracy(model, tokenizer)
            log(f"  warm-start step {done}  loss {loss.item():.3f}  validation accuracy {100 * accuracy:.0f}%  "
                f"({time.perf_counter() - start:.0f}s)")
            if accuracy >= spec.target_accuracy:
                if last_check is not None and done - last_check > 1:
                    crossed, accuracy = first_step_at_target(last_check, done, accuracy_at, spec.target_accuracy,
                                                             accuracy)
                    model.load_state_dict(weights[crossed])
                    log(f"  warm-start: the target was crossed at step {crossed} (validation accuracy "
                        f"{100 * accuracy:.0f}%); keeping that step's weights")
                break
            model.train()
            last_check, weights = done, {}
    model.eval()
    return model, tokenizer


def load_or_warm_start(spec: WarmStartSpec, *, log: Any = print) -> tuple[Any, Any, bool]:
    """The warm-started model from the cache, or trained now and cached. Returns (model, tokenizer, from_cache)."""
    folder = cache_root() / "demo" / f"warmstart-{spec.key()}"
    if (folder / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(folder)
        return model.eval(), demo_tokenizer(), True
    model, tokenizer = warm_start(spec, log=log)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "warmstart.json").write_text(json.dumps(asdict(spec), indent=2))
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():  # another process finished first; keep theirs
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, folder)
    return model, tokenizer, False


def load_builtin_model(name: str, *, log: Any = print) -> tuple[Any, Any]:
    """``builtin:tiny``: the warm-started demo model (trained now, or loaded from the cache)."""
    if name != "tiny":
        raise ConfigError(f"unknown built-in model 'builtin:{name}'; the only one is 'builtin:tiny'")
    model, tokenizer, _ = load_or_warm_start(WarmStartSpec(), log=log)
    return model, tokenizer
