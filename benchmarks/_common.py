"""Shared setup for the performance benchmarks: a tiny local model, prompts, a reward, a clipo trainer, stats.

Nothing is downloaded: the tokenizer and the model come from ``clipo.models.tiny``. EOS (and pad) get a -1e4 logit
bias so every rollout runs to exactly ``max_new_tokens`` tokens; then clipo and TRL do identical work.
"""
from __future__ import annotations

import json
import os
import platform
import random
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

#: Intra-op threads. Default 1: on a shared 2-core machine with 2 threads, every tiny op's OpenMP barrier waits for
#: a descheduled sibling thread, and a generate call measured 0.2 s with 1 thread vs 1.4-13 s with 2 (see README).
#: Set CLIPO_BENCH_THREADS=2 (or 0 = torch's default) to measure the other regime.
THREADS = int(os.environ.get("CLIPO_BENCH_THREADS", "1"))
if THREADS > 0:
    torch.set_num_threads(THREADS)

from clipo.models.tiny import add_logit_bias, build_tiny_model, build_tiny_tokenizer  # noqa: E402
from clipo.rewards import register_reward  # noqa: E402

#: The benchmark model: Qwen2-style, untied embeddings, fp32, SDPA attention.
MODEL_KW = dict(hidden_size=256, num_layers=4, heads=4, kv_heads=2, intermediate=512)
NEVER = -1e4  # logit bias that keeps EOS / pad from ever being sampled (finite: entropy stays finite)


def parity_reward(response, ground_truth=None, **_):
    """Deterministic in the text and ~50% positive on random text, so groups mix right and wrong rollouts."""
    return 1.0 if sum(map(ord, response)) % 2 == 0 else 0.0


register_reward("bench_parity", parity_reward, overwrite=True)


def build(seed: int = 0, *, force_length: bool = True, **model_kw):
    """(tokenizer, model) with the benchmark size; EOS and pad never sampled when ``force_length``."""
    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok, seed=seed, **{**MODEL_KW, **model_kw})
    if force_length:
        add_logit_bias(model, {tok.eos_token_id: NEVER, tok.pad_token_id: NEVER})
    return tok, model


def prompt_rows(count: int = 64, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"prompt": f"What is {a} + {b}? Answer with a number.", "answer": str(a + b)}
            for a, b in ((rng.randint(10, 99), rng.randint(10, 99)) for _ in range(count))]


def prompts_file(rows: list[dict] | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix="clipo_bench_")) / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows or prompt_rows())))
    return path


def gsm8k_prompts_file(folder: Path, count: int = 256) -> Path:
    """The first ``count`` rows of the paper's GSM8K training parquet (``$CLIPO_DATA_DIR``, else ``../shared/data/clipo``
    beside the checkout) as a clipo JSONL prompt file in ``folder`` (prompt, answer, data_source)."""
    import pandas as pd

    root = Path(os.environ.get("CLIPO_DATA_DIR", REPO.parent / "shared" / "data" / "clipo"))
    frame = pd.read_parquet(root / "train" / "gsm8k.parquet").head(count)
    rows = [{"prompt": p[0]["content"], "answer": rm["ground_truth"], "data_source": "conrl/gsm8k"}
            for p, rm in zip(frame["prompt"], frame["reward_model"])]
    path = folder / "gsm8k.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def clipo_overrides(data: Path, *, prompts: int, n: int, max_new: int, clipo_on: bool, algorithm: str = "grpo",
                    extra: tuple = ()) -> list[str]:
    out = Path(tempfile.mkdtemp(prefix="clipo_bench_run_"))
    return [f"data.train={data}", "data.eval=[]", f"trainer.output_dir={out}", "reward.verifier=bench_parity",
            f"algorithm.name={algorithm}", "algorithm.kl_coef=0.0", f"rollout.n={n}", f"rollout.max_new_tokens={max_new}",
            f"rollout.micro_batch_size={prompts * n}", f"trainer.prompts_per_step={prompts}",
            f"trainer.micro_batch_size={prompts * n}", "trainer.mini_batches=1", "trainer.ppo_epochs=1",
            "trainer.lr=1e-5", "trainer.weight_decay=0.0", "trainer.max_steps=1000", "trainer.save_every=0",
            "trainer.tensorboard=false", "trainer.progress=false", "trainer.log_samples=0",
            "trainer.embedding_snapshots=0", "trainer.device=cpu", f"clipo.enabled={str(clipo_on).lower()}",
            f"trainer.num_threads={THREADS if THREADS > 0 else -1}",  # the benchmark's count, not clipo's own choice
            "clipo.head_size=64", *extra]


def clipo_trainer(data: Path, *, prompts: int = 4, n: int = 8, max_new: int = 32, clipo_on: bool = False,
                  seed: int = 0, extra: tuple = (), model_kw: dict | None = None):
    from clipo.data import load_prompts
    from clipo.training.config import load_config
    from clipo.training.trainer import RLTrainer

    config = load_config(overrides=clipo_overrides(data, prompts=prompts, n=n, max_new=max_new, clipo_on=clipo_on,
                                                   extra=extra))
    tok, model = build(seed, **(model_kw or {}))
    return RLTrainer(config, model=model, tokenizer=tok, train_data=load_prompts(str(data)))


def median(xs):
    return statistics.median(xs)


def iqr(xs):
    if len(xs) < 4:
        return (min(xs), max(xs))
    q = statistics.quantiles(xs, n=4)
    return (q[0], q[2])


def machine_line() -> str:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    return (f"cpu={cpu!r} cores={os.cpu_count()} torch={torch.__version__} threads={torch.get_num_threads()} "
            f"transformers={transformers.__version__} python={platform.python_version()}")


def command_line() -> str:
    env = f"CLIPO_BENCH_THREADS={os.environ['CLIPO_BENCH_THREADS']} " if "CLIPO_BENCH_THREADS" in os.environ else ""
    return env + "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
