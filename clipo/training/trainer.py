"""The RL training loop: one step is a numbered story, every formula a math-layer call (``docs/algorithms.md``).

    1. draw B prompts and sample n rollouts each                         (rollout engine)
    2. verify them                                                       (clipo.rewards)
    3. DAPO dynamic sampling: keep informative groups, refill            (informative_groups)
    4. DAPO overlong penalty                                             (overlong_penalty)
    5. one no-grad teacher-forced forward: old log-probs + embeddings    (clipo.models.forward.policy_forward)
    6. reference log-probs, when KL is on
    7. CLIPO head step and contrastive reward                            (HeadTrainer)
    8. advantages on verifiable + overlong + contrastive reward          (ALGORITHMS[name].advantage)
    9. policy update: epochs × mini-batches × micro-batches              (micro_batch_loss, ALGORITHMS[name])
   10. learning-rate schedule, metrics, samples

The algorithm (advantage, policy loss, its denominator) is one entry of :mod:`clipo.core.algorithms`. With
several processes (``torchrun`` / ``accelerate launch``) each draws its own share of the prompts and keeps each
prompt's groups whole (:mod:`clipo.training.distributed`), and the policy trains on torch DDP or FSDP
(:mod:`clipo.training.parallel`).

Why one file of ~560 lines: it is the step's story (collect → prepare → update) and the loop that runs it
(``fit``: resume, logging, evaluation, checkpoints, preemption), which share the trainer's state and read top to
bottom. Everything that does not need that state lives elsewhere: the math in ``clipo.core``, the batch record
and its metrics in :mod:`clipo.training.step`, checkpoints in :mod:`clipo.training.checkpoint`, the engines in
:mod:`clipo.training.parallel`, the run folder's format in :mod:`clipo.training.run_folder`.
"""
from __future__ import annotations

import logging
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate import Accelerator
from torch import Tensor
from torch.distributed.tensor import DTensor
from tqdm.auto import tqdm

from clipo.core.advantages import informative_groups, overlong_penalty
from clipo.core.algorithms import get_algorithm
from clipo.core.loss import micro_batch_loss, mini_batch_denominators
from clipo.models import make_reference_model, policy_forward
from clipo.rollout import RolloutBatch, make_engine
from clipo.training.checkpoint import (
    clean_stale_tmps,
    latest_checkpoint,
    load_run_checkpoint,
    rng_state,
    save_final,
    save_run_checkpoint,
    set_rng_state,
)
from clipo.training.config import Config, ConfigError, save_config
from clipo.training.distributed import (
    all_agree,
    all_gather_rows,
    all_reduce_min,
    all_reduce_sum,
    broadcast_object,
    global_group_ids,
    shard,
)
from clipo.training.evaluation import evaluate_all
from clipo.training.head import build_head_trainer
from clipo.training.parallel import full_weights, gradient_sync, is_sharded, resolve_mode, wrap_policy
from clipo.training.pipeline import (
    check_reward_errors,
    per_process_prompts,
    prepare_train_data,
    render_fn,
    sampling_params,
    score_responses,
)
from clipo.training.precision import autocast_context, prepare_master_weights, resolve_precision
from clipo.training.run_folder import RunFolder, SampleRecord, append_jsonl
from clipo.training.run_safety import RunClaim, claim_run_folder
from clipo.training.signals import Preempted, PreemptionGuard
from clipo.training.step import (
    StepBatch,
    algorithm_knobs,
    batch_metrics,
    derive_seed,
    embedding_snapshot,
    lr_factor,
    sample_records,
    snapshot_schedule,
    step_diagnostics,
)
from clipo.training.threads import set_threads
from clipo.training.tracking import MetricsLogger

_log = logging.getLogger("clipo.training")


class NonFiniteLossError(RuntimeError):
    """Raised after ``trainer.max_nonfinite_steps`` consecutive updates whose loss or gradient was NaN/inf."""


class RLTrainer:
    """Trains a causal LM with any registered algorithm (GRPO, Dr. GRPO, DAPO, GSPO, GMPO, RLOO), CLIPO on or off.

    It receives the policy, its tokenizer, the training :class:`clipo.data.PromptDataset` and the eval sets
    ``{name: PromptDataset}`` as objects (``clipo.apps.specs.build_trainer`` resolves them from a config).
    ``rollout_metrics(batch)`` adds task-specific metrics per step (the CPU demo's process checker uses it), and
    ``StepBatch.extras`` carries per-rollout values it wants saved with the embedding snapshots.
    """

    def __init__(self, config: Config, *, model: Any, tokenizer: Any, train_data: Any,
                 eval_data: dict[str, Any] | None = None,
                 rollout_metrics: Callable[[StepBatch], dict[str, Any]] | None = None):
        self.config = config
        t = config.trainer
        self.output_dir = Path(t.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        cpu = t.device == "cpu" or (t.device == "auto" and not torch.cuda.is_available())
        self.accelerator = Accelerator(cpu=cpu)
        self.device = self.accelerator.device if t.device in ("auto", "cpu") else torch.device(t.device)
        # Data parallel: each process trains on its own B prompts; see clipo.training.distributed.
        self.rank, self.world_size = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        # A global batch (verl's train_batch_size) becomes this process's share; the rest of the code reads B per process.
        t.prompts_per_step = per_process_prompts(config, self.world_size)
        torch.manual_seed(t.seed)
        set_threads(t.num_threads, announce=self.is_main and self.device.type == "cpu")
        requested = t.precision
        t.precision = resolve_precision(t.precision, self.device, model=model)  # 'auto' -> what pays here
        if requested == "auto" and self.is_main:
            _log.info("clipo: trainer.precision=auto -> %s on %s (trainer.precision=fp32|bf16-mixed to override)",
                      t.precision, self.device.type)

        self.model = model.to(self.device)
        prepare_master_weights(self.model, t.precision)  # fp32 master weights under bf16-mixed; warns for 16-bit ones
        self.tokenizer = tokenizer
        # data.max_prompt_tokens drops over-long prompts before training; data/* numbers are logged with step 1.
        self.train_data, self.data_stats = prepare_train_data(config, tokenizer, train_data, eval_data or {},
                                                              world_size=self.world_size, announce=self.is_main)
        self.eval_data = eval_data or {}
        self.data_iter = self.train_data.iterator(seed=t.seed, shuffle=config.data.shuffle)
        self.engine = make_engine(config, self.model, self.tokenizer)
        self.render = render_fn(config, self.tokenizer)
        self.reference = None
        if config.algorithm.kl_coef > 0:
            self.reference = make_reference_model(self.model).to(self.device)
        # The training forward/backward go through train_model: a DDP wrapper, or the policy itself sharded in place
        # by FSDP (so the optimizer is built after, on the shards); see clipo.training.parallel.
        self.parallel = resolve_mode(t.parallel, self.world_size)
        self.train_model = wrap_policy(self.model, self.parallel, self.device, offload=t.fsdp_offload)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.adam_betas))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup=t.lr_warmup_steps, total=t.max_steps, schedule=t.lr_schedule))
        self.head_trainer = build_head_trainer(config.clipo, self.model.config, self.device) if config.clipo.enabled else None
        self.algorithm, self.knobs = get_algorithm(config.algorithm.name), algorithm_knobs(config)
        # (logp, old_logp, adv, mask, global_count) -> PolicyLoss; an attribute so tests and benchmarks can wrap it.
        self.loss_fn = self.algorithm.bind(self.knobs)
        self.step = 0
        self.nonfinite_streak = 0
        self._last_batch: StepBatch | None = None  # the current step's batch; None when the step had none
        self.logger: MetricsLogger | None = None
        self.rollout_metrics = rollout_metrics

    # ------------------------------------------------------------------------------------------ setup

    def sampling(self, *, n: int, temperature: float, seed: int | None) -> Any:
        return sampling_params(self.config, n=n, temperature=temperature, seed=seed)

    def score(self, responses: Sequence[str], examples: Sequence[Any]) -> tuple[list[float], dict[str, float]]:
        return score_responses(self.config, responses, examples)

    # ------------------------------------------------------------------------------------------ the step

    def collect(self) -> tuple[Any, list, Tensor, dict[str, float]]:
        """Steps 1-3: sample, verify and (DAPO) keep informative groups until B prompts are kept."""
        c, t = self.config, self.config.trainer
        kept_batches, kept_examples, kept_scores = [], [], []
        kept_prompts, rounds = 0, 0
        stats = {f"verify/{k}": 0.0 for k in ("timeouts", "errors", "bad_values", "unscored", "calls")}
        generated_groups = zero_variance_groups = 0
        reward_problem = ""  # the first bad value or error a reward produced this step, for the stop message
        self.model.eval()
        while True:
            # Every process draws the same global batch and keeps its own slice: groups never span processes.
            examples = shard(self.data_iter.next_batch(t.prompts_per_step * self.world_size), self.rank, self.world_size)
            seed = derive_seed(t.seed + 1_000_003 * self.rank, self.step, rounds)  # each process samples its own noise
            # FSDP: the rollout runs on gathered weights, without collectives; bf16-mixed: under bf16 autocast.
            with full_weights(self.model), self._autocast():
                batch = self.engine.generate([self.render(e) for e in examples], self.sampling(
                    n=c.rollout.n, temperature=c.rollout.temperature, seed=seed))
            rounds += 1
            per_rollout = [examples[i] for i in batch.prompt_index.tolist()]
            raw, verify_stats = self.score(batch.response_texts, per_rollout)
            for key in ("timeouts", "errors", "bad_values", "unscored", "calls"):
                stats[f"verify/{key}"] += float(verify_stats.get(f"verifier/{key}", 0))
            reward_problem = reward_problem or str(verify_stats.get("verifier/example", ""))
            scores = torch.tensor(raw, dtype=torch.float32)
            keep = informative_groups((scores > 0).float(), batch.group_ids)
            generated_groups += len(examples)
            zero_variance_groups += len(examples) - int(keep.sum()) // c.rollout.n
            if c.algorithm.dynamic_sampling:
                rows = keep.nonzero().squeeze(-1)
                batch, per_rollout, scores = batch.select(rows), [per_rollout[i] for i in rows.tolist()], scores[rows]
            if batch.num_rollouts:
                kept_batches.append(batch)
                kept_examples.extend(per_rollout)
                kept_scores.append(scores)
                kept_prompts += batch.num_rollouts // c.rollout.n
            enough = kept_prompts >= t.prompts_per_step
            out_of_rounds = c.algorithm.max_gen_batches > 0 and rounds >= c.algorithm.max_gen_batches
            if not c.algorithm.dynamic_sampling or enough or out_of_rounds:
                break
        # Past reward.max_error_rate of this step's rollouts, a broken reward stops the run (one line). Checked once
        # per step on counts summed over processes (processes may run different numbers of DAPO rounds), so every
        # process stops together and none is left waiting in a collective.
        keys = ("verify/calls", "verify/errors", "verify/bad_values", "verify/unscored")
        counts = all_reduce_sum(torch.tensor([stats[k] for k in keys], device=self.device)).tolist()
        check_reward_errors(c, dict(zip(keys, counts)), reward_problem)
        # DAPO keeps exactly B groups; with several processes, as many as the process that kept the fewest, so that
        # every process trains on an equal share.
        groups_kept = min(kept_prompts, t.prompts_per_step)
        if self.world_size > 1:
            groups_kept = int(all_reduce_min(torch.tensor(float(groups_kept), device=self.device)))
        stats.update({"rollout/gen_rounds": float(rounds), "rollout/zero_variance_groups": zero_variance_groups / generated_groups,
                      "rollout/prompts_kept": float(groups_kept), "data/epoch": float(self.data_iter.epoch)})
        if not kept_batches or groups_kept == 0:
            return None, [], torch.zeros(0), stats
        rollouts = RolloutBatch.concat(kept_batches) if len(kept_batches) > 1 else kept_batches[0]
        scores = torch.cat(kept_scores)
        limit = groups_kept * c.rollout.n
        if rollouts.num_rollouts > limit:  # DAPO keeps exactly B groups
            rollouts, kept_examples, scores = rollouts.select(torch.arange(limit)), kept_examples[:limit], scores[:limit]
        return rollouts, kept_examples, scores, stats

    def _forward(self, model: Any, rollouts: Any, *, with_grad: bool = False, rows: Tensor | None = None,
                 compute_entropy: bool = False) -> Any:
        r = rollouts if rows is None else rollouts.select(rows)
        temperature = self.config.rollout.temperature or 1.0
        with self._autocast():  # bf16-mixed: bf16 compute; log-probs, entropies and pooled states come out float32
            return policy_forward(
                model, r.prompt_ids.to(self.device), r.prompt_mask.to(self.device), r.response_ids.to(self.device),
                r.response_mask.to(self.device), temperature=temperature, pooling=self.config.clipo.pooling,
                compute_entropy=compute_entropy, entropy_grad=self.config.algorithm.entropy_coef > 0,
                micro_batch_size=None if with_grad else self.config.trainer.micro_batch_size, with_grad=with_grad,
                # Under FSDP a training forward runs each row in full: FSDP2 reshards a layer after its first use in
                # backward, so a prompt cache built by a second forward of the same layers could not be differentiated.
                group_size=None if with_grad and is_sharded(self.model) else self._shared_group_size(r))

    def _autocast(self) -> Any:
        """The context of every policy / reference forward and rollout: bf16 autocast under
        trainer.precision=bf16-mixed, else a no-op (clipo.training.precision). Backward and the loss run outside it."""
        return autocast_context(self.config.trainer.precision, self.device, self.model)

    def _shared_group_size(self, rollouts: Any) -> int | None:
        """rollout.n when prompt sharing is on and the rows are whole contiguous groups of n (else None)."""
        n = self.config.rollout.n
        ids = rollouts.group_ids
        if not self.config.trainer.share_prompt_forward or n < 2 or ids.numel() % n:
            return None
        runs = ids.reshape(-1, n)
        whole = bool((runs == runs[:, :1]).all()) and torch.unique_consecutive(ids).numel() == runs.shape[0]
        return n if whole else None

    def _micro_batch_rows(self) -> int:
        """Rows per training micro-batch: trainer.micro_batch_size, rounded down to whole groups when prompts are
        shared (and at least one group fits)."""
        t, n = self.config.trainer, self.config.rollout.n
        if t.share_prompt_forward and n > 1 and t.micro_batch_size >= n:
            return t.micro_batch_size // n * n
        return t.micro_batch_size

    def _fuse_forwards(self, rollouts: Any) -> bool:
        """Whether step 5's forward can double as the training forward of step 9.

        True when the update is exactly on-policy (one epoch, one mini-batch: verl then sets old = logp.detach(),
        so r ≡ 1), the whole batch fits one micro-batch, and the policy will be updated this step (not in the
        head warm-up). That saves one full forward pass per step.
        """
        t = self.config.trainer
        head_warmup = self.head_trainer is not None and self.head_trainer.steps_done + 1 <= self.head_trainer.warmup_steps
        return (t.fuse_on_policy_forward and t.ppo_epochs == 1 and t.mini_batches == 1
                and rollouts.num_rollouts <= t.micro_batch_size and not head_warmup)

    def prepare(self, rollouts: Any, examples: list, scores: Tensor) -> tuple[StepBatch, dict[str, Tensor]]:
        """Steps 4-8: overlong penalty, forward pass, reference, CLIPO, advantages."""
        c = self.config
        metrics: dict[str, Tensor] = {}
        correct = scores > 0
        shaped = torch.where(correct, scores, torch.full_like(scores, c.reward.incorrect_score))
        lengths = rollouts.response_lengths.float()
        # 4. DAPO's soft overlong punishment, independent of correctness.
        overlong = torch.zeros_like(scores)
        if c.algorithm.overlong_penalty:
            overlong = overlong_penalty(lengths, max_len=c.rollout.max_new_tokens, cache_len=c.algorithm.overlong_cache,
                                        factor=c.algorithm.overlong_factor)
        # 5. One teacher-forced forward gives the old log-probs AND the pooled embeddings (no second pass). When the
        #    update is exactly on-policy and fits one micro-batch, it is the training forward itself: it keeps its
        #    graph for step 9 and its detached log-probs are the old ones.
        start = time.perf_counter()
        fused = self._fuse_forwards(rollouts)
        self.model.train(fused)
        forward = self._forward(self.train_model if fused else self.model, rollouts, compute_entropy=True, with_grad=fused)
        metrics["time/forward_s"] = torch.tensor(time.perf_counter() - start)
        # 6. Reference log-probs for the KL loss.
        ref_logp = None
        if self.reference is not None:
            ref_logp = self._forward(self.reference, rollouts).logp
        # 7. CLIPO: one head step; the reward comes from the pre-update head's losses.
        contrastive = torch.zeros_like(scores)
        result = None
        if self.head_trainer is not None or c.clipo.diagnostics:
            # Every process takes the same head step on the gathered global batch (identity on one process).
            pooled, own = all_gather_rows(forward.pooled)
            all_correct = all_gather_rows(correct.long().to(self.device))[0].bool()  # gloo gathers no bools
            all_groups, _ = all_gather_rows(global_group_ids(rollouts.group_ids).to(self.device))
        if self.head_trainer is not None:
            start = time.perf_counter()
            generator = torch.Generator(device="cpu").manual_seed(derive_seed(c.trainer.seed, self.step, 1_000_003))
            result = self.head_trainer.step(pooled, all_correct, all_groups, generator=generator)
            contrastive = result.rewards[own].cpu()
            metrics.update(result.metrics)
            metrics["time/head_s"] = torch.tensor(time.perf_counter() - start)
        if c.clipo.diagnostics:  # cos/L2 of correct/incorrect pairs, per-label loss (clipo.training.step)
            all_lengths, _ = all_gather_rows(rollouts.response_lengths.to(self.device))
            # The head outputs are the pre-update ones the loss saw, as the official run logs them.
            metrics.update(step_diagnostics(pooled, all_correct, all_groups, all_lengths,
                                            result.z if result is not None else None, result))
        # 8. The algorithm's advantages on the total reward (group-relative, or leave-one-out for RLOO).
        rewards = shaped + overlong + contrastive
        advantages = self.algorithm.advantage(rewards, rollouts.group_ids, self.knobs)
        batch = StepBatch(rollouts, examples, shaped, correct, overlong, contrastive, rewards, advantages,
                          forward.logp.detach(), ref_logp, forward.entropy.detach(), forward.pooled,
                          train_forward=forward if fused else None)
        return batch, metrics

    def update(self, batch: StepBatch) -> dict[str, Tensor]:
        """Step 9: ppo_epochs passes, each split into mini-batches of whole groups, each accumulated over micro-batches."""
        t = self.config.trainer
        self.model.train()
        rollouts = batch.rollouts
        mask = rollouts.response_mask.float()
        group_order = torch.unique_consecutive(rollouts.group_ids)
        totals: dict[str, list[Tensor]] = {}
        for epoch in range(t.ppo_epochs):
            generator = torch.Generator().manual_seed(derive_seed(t.seed, self.step, 2_000_003, epoch))
            groups = group_order[torch.randperm(len(group_order), generator=generator)] if t.mini_batches > 1 else group_order
            for mini_groups in torch.tensor_split(groups, t.mini_batches):
                rows = torch.isin(rollouts.group_ids, mini_groups).nonzero().squeeze(-1)
                stats = self._update_mini_batch(batch, rows, mask)
                for key, value in stats.items():
                    totals.setdefault(key, []).append(value)
        self.engine.update_weights(self.model)
        return {key: torch.stack(values).float().mean() for key, values in totals.items()}

    def _update_mini_batch(self, batch: StepBatch, rows: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """One optimizer step on the mini-batch ``rows``, accumulated over micro-batches (skipped on NaN/inf)."""
        a, t = self.config.algorithm, self.config.trainer
        self.optimizer.zero_grad(set_to_none=True)
        # Every micro-batch (and process) divides by the whole mini-batch's counts, so the gradients add up.
        denominators = mini_batch_denominators(mask[rows], policy_kind=self.algorithm.count_kind(a.loss_agg),
                                               loss_agg=a.loss_agg, reduce=lambda n: all_reduce_sum(n.to(self.device)))
        want_entropy = a.entropy_coef > 0
        stats: dict[str, list[Tensor]] = {}
        finite = True
        micro_batches = torch.split(rows, self._micro_batch_rows())
        for k, micro in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            # Gradients are reduced over processes in the last micro-batch's backward only. DDP decides that at
            # forward time, so the forward runs inside the context too.
            with gradient_sync(self.train_model, enabled=last):
                if batch.train_forward is not None and micro.numel() == batch.rollouts.num_rollouts:
                    out, batch.train_forward = batch.train_forward, None  # the fused on-policy forward of step 5
                else:
                    out = self._forward(self.train_model, batch.rollouts, with_grad=True, rows=micro,
                                        compute_entropy=want_entropy)
                part = micro_batch_loss(
                    self.loss_fn, out.logp, batch.old_logp[micro].to(self.device),
                    batch.advantages[micro].to(self.device), mask[micro].to(self.device), denominators,
                    loss_agg=a.loss_agg, norm_len=a.norm_len,
                    ref_logp=None if self.reference is None else batch.ref_logp[micro].to(self.device),
                    kl_coef=a.kl_coef, kl_kind=a.kl_kind, entropy=out.entropy if want_entropy else None,
                    entropy_coef=a.entropy_coef)
                loss_finite = bool(torch.isfinite(part.loss))
                finite = finite and loss_finite
                # With several processes the last backward runs even on a NaN loss: it is the reduction every
                # process waits for (the NaN then reaches all of them, and all skip the update).
                if loss_finite or (last and self.parallel != "none"):
                    self.accelerator.backward(part.loss)
            if loss_finite:
                for key, value in part.metrics.items():
                    stats.setdefault(f"actor/{key}", []).append(value)
        grad_norm = torch.tensor(float("nan"))
        finite = all_agree(finite)  # one NaN/inf anywhere skips the update everywhere: the replicas stay identical
        if finite:
            params = [p for p in self.model.parameters() if p.requires_grad]
            max_norm = t.grad_clip if t.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            grad_norm = grad_norm.full_tensor() if isinstance(grad_norm, DTensor) else grad_norm  # FSDP: a DTensor
            finite = bool(torch.isfinite(grad_norm))
        if not finite:
            # A NaN/inf loss or gradient: skip this update, count it, and stop after a run of them.
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_streak += 1
            if self.nonfinite_streak >= t.max_nonfinite_steps:
                raise NonFiniteLossError(
                    f"{self.nonfinite_streak} consecutive updates had a NaN/inf loss or gradient (step {self.step}); "
                    "lower trainer.lr, use trainer.precision=bf16-mixed or fp32 (not pure bf16), or check the rewards")
            return {"actor/skipped_nonfinite": torch.tensor(1.0)}
        self.nonfinite_streak = 0
        self.optimizer.step()
        summary = {"actor/skipped_nonfinite": torch.tensor(0.0), "actor/grad_norm": grad_norm.detach().float()}
        for key, values in stats.items():
            summary[key] = torch.stack(values).sum() if key == "actor/pg_loss" else torch.stack(values).mean()
        return summary

    def train_step(self) -> dict[str, float]:
        """Run one RL step and return its metrics; its batch is ``self._last_batch`` (None for a skipped step)."""
        self.step += 1
        self._last_batch = None  # a skipped step must not pass the previous step's batch off as its own
        step_start = time.perf_counter()
        rollouts, examples, scores, collect_stats = self.collect()
        metrics: dict[str, Any] = dict(collect_stats)
        if self.step == 1:
            metrics.update(self.data_stats)  # data/steps_per_epoch (and data/filtered_long_prompts), once
        metrics["time/rollout_s"] = time.perf_counter() - step_start
        if rollouts is None:  # DAPO found no informative group within max_gen_batches
            metrics["actor/update_skipped"] = 1.0
            self._step_scheduler()
            return metrics
        batch, prepare_metrics = self.prepare(rollouts, examples, scores)
        metrics.update(prepare_metrics)
        start = time.perf_counter()
        if self.head_trainer is not None and self.head_trainer.in_warmup:
            metrics["actor/update_skipped"] = 1.0  # head warm-up: only the head learns
        else:
            metrics.update(self.update(batch))
            metrics["actor/update_skipped"] = 0.0
        metrics["time/update_s"] = time.perf_counter() - start
        self._step_scheduler()
        metrics.update(batch_metrics(batch))
        if self.rollout_metrics is not None:
            metrics.update(self.rollout_metrics(batch))
        metrics["time/step_s"] = time.perf_counter() - step_start
        metrics["perf/tokens_per_s"] = float(batch.rollouts.response_mask.sum()) / max(metrics["time/rollout_s"], 1e-9)
        metrics["actor/lr"] = self.scheduler.get_last_lr()[0]
        self._last_batch = batch
        return metrics

    def _step_scheduler(self) -> None:
        # The LR schedule counts RL steps, also those without an optimizer step (head warm-up), which is
        # exactly what PyTorch's "scheduler.step() before optimizer.step()" warning is about.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.scheduler.step()

    def save_embeddings(self, batch: StepBatch) -> Path:
        """Write this step's ``embeddings/step_XXXXXX.pt`` (:func:`clipo.training.step.embedding_snapshot`)."""
        head = self.head_trainer.head if self.head_trainer is not None else None
        return RunFolder(self.output_dir).write_snapshot(embedding_snapshot(batch, self.step, head, self.device))

    def samples(self, batch: StepBatch, count: int) -> list[SampleRecord]:
        """The first ``count`` rollouts of ``batch`` as ``samples.jsonl`` records (the logger adds ``step``)."""
        return sample_records(batch, count)

    # ------------------------------------------------------------------------------------------ evaluation

    def _evaluate_on_main(self) -> dict[str, dict[str, float]]:
        """:meth:`evaluate` on the main process ({} elsewhere); under FSDP every process gathers the weights first."""
        with full_weights(self.model):
            return self.evaluate() if self.is_main else {}

    def evaluate(self) -> dict[str, dict[str, float]]:
        """Score the policy on ``data.eval`` (greedy pass@1, or sampled avg@k / pass@k when rollout.eval_n > 1)."""
        self.model.eval()
        seed = derive_seed(self.config.trainer.seed, self.step, 3_000_017)
        with self._autocast():
            results = evaluate_all(self.config, self.eval_data, self.engine, seed=seed)
        if self.is_main:  # per-problem scores, for `clipo compare` (paired bootstrap over problems)
            append_jsonl(RunFolder(self.output_dir).eval_problems,
                         [{"step": self.step, **p} for r in results for p in r.problems])
        return {r.name: r.as_dict() for r in results}

    # ------------------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": None if is_sharded(self.model) else self.optimizer.state_dict(),  # FSDP: in the shards
            "scheduler": self.scheduler.state_dict(),
            "head": self.head_trainer.state_dict() if self.head_trainer is not None else None,
            "data": self.data_iter.state_dict(),
            "rng": rng_state(),
            "nonfinite_streak": self.nonfinite_streak,
        }

    #: The id of the run (run.json) while fit() runs: checkpoints record it, pruning keeps other runs' ones.
    run_id: str | None = None

    def save(self) -> Path | None:
        """Checkpoint: the main process writes it (under FSDP every process writes its shards first)."""
        return save_run_checkpoint(
            self.output_dir, self.step, model=self.model, optimizer=self.optimizer, tokenizer=self.tokenizer,
            state=self.state_dict, head=self.head_trainer.head if self.head_trainer is not None else None,
            keep=self.config.trainer.keep_checkpoints, is_main=self.is_main, barrier=self.accelerator.wait_for_everyone,
            run_id=self.run_id)

    def resume(self) -> bool:
        """Load the newest checkpoint of ``output_dir``; False when there is none."""
        if self.is_main:
            clean_stale_tmps(self.output_dir)
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            return False
        state = load_run_checkpoint(checkpoint, model=self.model, optimizer=self.optimizer)
        self.step = int(state["step"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.head_trainer is not None and state["head"] is not None:
            self.head_trainer.load_state_dict(state["head"])
        self.data_iter.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        self.nonfinite_streak = int(state["nonfinite_streak"])
        return True

    # ------------------------------------------------------------------------------------------ the loop

    def _claim_run_folder(self) -> RunClaim | None:
        """Lock the run folder and record the run (main process); every process raises the same ConfigError."""
        c, t = self.config, self.config.trainer
        claim, refusal = None, None
        if self.is_main:
            try:
                claim = claim_run_folder(self.output_dir, resume=t.resume, overwrite=t.overwrite, config=c.to_dict())
            except ConfigError as error:
                refusal = str(error)
        outcome = broadcast_object(refusal if claim is None else ("", claim.run_id))
        if isinstance(outcome, str):
            raise ConfigError(outcome)
        self.run_id = outcome[1]
        return claim

    def fit(self) -> dict[str, Any]:
        """Train for ``trainer.max_steps`` steps (resuming if asked), evaluating and checkpointing on the way.

        The run folder is locked for the whole fit (see :mod:`clipo.training.run_safety`). SIGTERM or SIGINT
        finishes the current step, writes a checkpoint and raises :class:`clipo.training.signals.Preempted`."""
        claim = self._claim_run_folder()
        try:
            with PreemptionGuard() as guard:
                return self._fit(guard)
        finally:
            if claim is not None:
                claim.release()

    def _fit(self, guard: PreemptionGuard) -> dict[str, Any]:
        c, t = self.config, self.config.trainer
        resumed = self.resume() if t.resume else False
        # Only the main process writes the run folder; the others train and keep in step.
        if self.is_main:
            save_config(c, RunFolder(self.output_dir).config)
        self.logger = MetricsLogger(self.output_dir, tensorboard=t.tensorboard, wandb_project=t.wandb_project,
                                    resume_step=self.step if resumed else None, config=c.to_dict(),
                                    enabled=self.is_main)
        progress = _progress(t.max_steps, self.step, enabled=t.progress and self.is_main)
        snapshot_steps = snapshot_schedule(t.max_steps, t.embedding_snapshots)
        last: dict[str, float] = {}
        saved_step = self.step if resumed else None
        try:
            if t.eval_at_start and self.eval_data and self.step == 0 and not resumed:
                self.logger.log_eval(0, self._evaluate_on_main())  # verl's val_before_train: the base model's scores
            while self.step < t.max_steps:
                metrics = self.train_step()
                last = self.logger.log(self.step, metrics)
                if t.log_samples and self._last_batch is not None:
                    self.logger.log_samples(self.step, self.samples(self._last_batch, t.log_samples))
                if self.step in snapshot_steps and self._last_batch is not None and self.is_main:
                    self.save_embeddings(self._last_batch)
                progress.update(1)
                progress.set_postfix(acc=f"{last.get('reward/accuracy', float('nan')):.2f}",
                                     reward=f"{last.get('reward/mean', float('nan')):.2f}",
                                     clen=f"{last.get('response/length_mean', float('nan')):.0f}")
                if t.eval_every and self.eval_data and self.step % t.eval_every == 0 and self.step < t.max_steps:
                    self.logger.log_eval(self.step, self._evaluate_on_main())
                if t.save_every and self.step % t.save_every == 0 and self.step < t.max_steps:
                    self.save()
                    saved_step = self.step
                if self.step < t.max_steps and not all_agree(not guard.requested):  # every process stops together
                    checkpoint = self.save() if saved_step != self.step else latest_checkpoint(self.output_dir)
                    raise Preempted(guard.signum or signal.SIGTERM, self.step, checkpoint, self.output_dir)
            final_eval = self._evaluate_on_main() if self.eval_data else {}
            if final_eval:
                self.logger.log_eval(self.step, final_eval)
            self.save()
            save_final(RunFolder(self.output_dir), model=self.model, tokenizer=self.tokenizer,
                       head=self.head_trainer.head if self.head_trainer is not None else None,
                       save_dtype=t.save_dtype, is_main=self.is_main)
            self.accelerator.wait_for_everyone()
        finally:
            progress.close()
            self.logger.close()
        return {"step": self.step, "last_metrics": last, "eval": final_eval}


def _progress(total: int, initial: int, *, enabled: bool) -> Any:
    return tqdm(total=total, initial=initial, desc="clipo train", unit="step", disable=not enabled, dynamic_ncols=True)
