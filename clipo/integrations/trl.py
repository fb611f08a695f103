"""CLIPO inside TRL: :class:`CLIPOGRPOTrainer`, a ``trl.GRPOTrainer`` that adds CLIPO's contrastive reward.

::

    from trl import GRPOConfig
    from clipo.integrations.trl import CLIPOConfig, CLIPOGRPOTrainer, math_reward

    trainer = CLIPOGRPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=[math_reward],
                               args=GRPOConfig(...), train_dataset=dataset,
                               clipo_config=CLIPOConfig(head_size=512, lam=0.2))
    trainer.train()

Per generation batch (docs/trl.md), on every process:

1. ``correct_i = Σ_k w_k r_k,i > 0`` over the user's reward functions (NaN counts 0), as the paper's
   ``reward > 0``;
2. ``h_i`` = mean of the policy's last-layer hidden states (the decoder output, after the final norm) over
   the completion tokens of prompt + completion (:func:`clipo.models.pool_hidden`), from the trainer's own
   model, never from vLLM, read with a hook on the decoder from, in this order of preference
   (``embedding_forward="auto"``):

   * **single pass**: TRL's own training forward, when each process's generation batch is one micro-batch
     used once (``steps_per_generation == 1``, ``num_iterations == 1``) and TRL runs no old-log-prob forward.
     TRL first computes advantages with a zero ``clipo`` column (checked against :func:`grpo_advantages`, a
     replica of TRL's formula; a mismatch is an error that names the TRL version); a ``clipo_row`` key follows
     TRL's row shuffle; inside ``_compute_loss``, after the policy forward and before TRL reads
     ``inputs["advantages"]``, steps 3-4 run and the advantages are recomputed and written back, so the update
     uses the same advantages as the other regimes, and TRL's logged reward figures are corrected;
   * TRL's no-grad old-log-prob forward, when it runs (vLLM importance-sampling correction, or
     ``gradient_accumulation_steps`` not a multiple of ``steps_per_generation × num_iterations``);
   * otherwise one extra no-grad forward (the lm_head on one column; also always with
     ``embedding_forward="extra"`` when TRL runs no old-log-prob forward);
3. ``h``, ``correct`` and the group ids (``global row // num_generations``, TRL's layout) are gathered from
   all processes; every process takes the same :meth:`clipo.training.head.HeadTrainer.step` (one AdamW step
   on the pre-update loss, infonce positives drawn from a generator seeded by ``(args.seed, head step)``);
4. the rewards ``max(constant − λ·L_i·1[correct_i], floor)`` fill an extra reward column named ``clipo``
   (weight 1), so they are added to the weighted verifiable reward before the group normalisation.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import trl
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad

from clipo.core.contrastive import CONTRASTIVE_KINDS, CONTRASTIVE_LEVELS, DISTANCES, HEAD_KINDS
from clipo.integrations.rewards import make_math_reward, math_reward
from clipo.models import POOLING_MODES, pool_hidden
from clipo.models.compat import accepts_logits_to_keep
from clipo.training.config import ClipoConfig
from clipo.training.head import HeadStepResult, HeadTrainer, build_head_trainer

__all__ = ["EMBEDDING_FORWARDS", "HEAD_STATE_FILE", "HEAD_WEIGHTS_DIR", "CLIPOConfig", "CLIPOGRPOTrainer",
           "GroupAdvantages", "grpo_advantages", "make_math_reward", "math_reward", "nanstd",
           "positive_generator_seed"]

#: File inside a TRL checkpoint folder holding the head's weights, AdamW state and step count.
HEAD_STATE_FILE = "clipo_head.pt"
#: Folder inside ``save_model``'s output holding the head (``ContrastiveHead.from_pretrained`` reads it).
HEAD_WEIGHTS_DIR = "clipo_head"
#: Name of the reward column that carries the contrastive reward (TRL logs it as ``rewards/clipo/mean``).
REWARD_NAME = "clipo"
#: Values of ``CLIPOGRPOTrainer(embedding_forward=...)``: "auto" reads the states from TRL's training forward
#: when each generation batch is one micro-batch, else from TRL's old-log-prob forward, else runs one extra
#: forward; "extra" never uses the training forward.
EMBEDDING_FORWARDS = ("auto", "extra")
#: Key added to TRL's generation batch: each row's index before TRL shuffles the batch (single-pass mode).
ROW_KEY = "clipo_row"


@dataclass
class CLIPOConfig(ClipoConfig):
    """CLIPO's knobs for :class:`CLIPOGRPOTrainer`: clipo's own ``clipo:`` config section, same names,
    meanings and defaults (``clipo config`` lists them): ``head_kind``, ``head_size``, ``loss_kind``,
    ``level``, ``temperature``, ``lam``, ``constant``, ``floor``, ``head_lr``, ``head_weight_decay``,
    ``warmup_steps`` (generation batches during which only the head learns and the policy's optimizer skips
    its step), ``pooling``, ``masked_label``, ``skip_trivial``, ``distance``, ``reward``, ``fixed_head``,
    ``head_load_path``. ``enabled=False`` makes the trainer a plain ``GRPOTrainer``."""

    def __post_init__(self) -> None:
        for name, value, choices in (("head_kind", self.head_kind, HEAD_KINDS),
                                     ("loss_kind", self.loss_kind, CONTRASTIVE_KINDS),
                                     ("level", self.level, CONTRASTIVE_LEVELS),
                                     ("distance", self.distance, DISTANCES),
                                     ("reward", self.reward, ("clipo", "similarity_gap")),
                                     ("pooling", self.pooling, POOLING_MODES),
                                     ("masked_label", self.masked_label, (-1, 0, 1))):
            if value not in choices:
                raise ValueError(f"CLIPOConfig.{name}={value!r}: choose one of {', '.join(map(str, choices))}")
        for name in ("head_size", "temperature", "head_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CLIPOConfig.{name}={getattr(self, name)!r}: must be > 0")
        for name in ("warmup_steps", "head_weight_decay", "lam"):
            if getattr(self, name) < 0:
                raise ValueError(f"CLIPOConfig.{name}={getattr(self, name)!r}: must be >= 0")


def positive_generator_seed(seed: int, head_step: int) -> int:
    """Seed of the generator that draws infonce positives at ``head_step`` (1-based): ``seed·1000003 + step``.

    A pure function of the run seed and the step, so every process draws the same positives and a resumed
    run draws what the uninterrupted one would have."""
    return seed * 1_000_003 + head_step


def nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Standard deviation ignoring NaN, with Bessel's correction, as TRL's ``nanstd``:
    ``sqrt(mean_i (x_i − x̄)² · n/(n−1))`` over the ``n`` non-NaN entries (over ``dim``, or all of ``x``);
    NaN where ``n <= 1``. The reduced dimension is dropped."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    std = torch.sqrt(variance * correction)
    return std.squeeze() if dim is None else std.squeeze(dim)


class GroupAdvantages(NamedTuple):
    """Output of :func:`grpo_advantages`, all ``[N]``."""

    advantages: torch.Tensor  #: 0 for unscorable rows
    rewards: torch.Tensor  #: the weighted reward sum, NaN for unscorable rows
    std: torch.Tensor  #: the std each row's advantage is scaled by (group or batch)


def grpo_advantages(rewards_per_func: torch.Tensor, weights: torch.Tensor, num_generations: int,
                    scale_rewards: str) -> GroupAdvantages:
    """TRL's GRPO advantages (``multi_objective_aggregation='sum_then_normalize'``) from ``rewards_per_func
    [N, F]`` (all processes' rows, groups of ``num_generations`` consecutive rows; NaN = no reward):

    * ``r_i = Σ_k w_k r_ik`` (NaN entries count 0), and ``r_i = NaN`` when row ``i`` is all NaN (unscorable);
    * ``A_i = r_i − nanmean(r over i's group)``, divided by ``s_i + 1e-4`` unless ``scale_rewards='none'``,
      where ``s_i`` = :func:`nanstd` of ``r`` over ``i``'s group (``'group'``, and ``'none'`` for the std
      returned; 0 when ``num_generations == 1``) or over the whole batch (``'batch'``; 0 when ``N == 1``);
    * ``A_i = 0`` where it is NaN (unscorable rows).

    The operations are TRL's, in TRL's order, so the result matches TRL bit for bit on the same device."""
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards={scale_rewards!r}: choose one of group, batch, none")
    unscorable = torch.isnan(rewards_per_func).all(dim=1)
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    grouped = rewards.view(-1, num_generations)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations, dim=0)
    if scale_rewards == "batch":
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    elif num_generations > 1:
        std = nanstd(grouped, dim=1).repeat_interleave(num_generations, dim=0)
    else:
        std = torch.zeros_like(rewards)
    advantages = rewards - mean
    if scale_rewards != "none":
        advantages = advantages / (std + 1e-4)
    return GroupAdvantages(torch.nan_to_num(advantages, nan=0.0), rewards, std)


def _no_reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[None]:
    """Placeholder for the ``clipo`` reward column; the trainer fills it after the real reward functions."""
    return [None] * len(completions)


_no_reward.__name__ = REWARD_NAME


class _FreezePolicyDuringWarmup(TrainerCallback):
    """Drops the policy's gradients before its optimizer step while the head warms up: AdamW skips parameters
    without a gradient, so the weights (weight decay included) and the AdamW moments stay exactly as they are."""

    def __init__(self, trainer: CLIPOGRPOTrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.trainer.policy_frozen:
            for parameter in self.trainer.model.parameters():
                parameter.grad = None
            self.trainer.frozen_policy_steps += 1


class CLIPOGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` plus CLIPO's contrastive reward (module docstring; docs/trl.md).

    Takes every ``GRPOTrainer`` argument, plus ``clipo_config`` (:class:`CLIPOConfig`; default: the paper's
    GSM8K settings). The head is built from the policy's hidden size with ``args.seed`` (the same on every
    process) and lives on the accelerator's device, outside DDP/FSDP/DeepSpeed (it is tiny and every process
    steps it identically). Its weights, AdamW state and step count go into each checkpoint
    (:data:`HEAD_STATE_FILE`) and come back with ``train(resume_from_checkpoint=...)``; ``save_model`` also
    writes the head to ``<output_dir>/clipo_head``. Metrics are logged under ``clipo/``.

    ``embedding_forward`` (:data:`EMBEDDING_FORWARDS`): ``"auto"`` (default) reads the embeddings from TRL's
    training forward when each process's generation batch is one micro-batch and TRL runs no old-log-prob
    forward (single pass; the head step and the advantages then happen inside that forward), else from TRL's
    old-log-prob forward when it runs, else from one extra no-grad forward; ``"extra"`` never uses the
    training forward. The metric ``clipo/single_pass`` says which ran.

    Requires ``multi_objective_aggregation="sum_then_normalize"`` (the default: CLIPO adds its reward before
    the group normalisation) and a text-only model.
    """

    def __init__(self, *args: Any, clipo_config: CLIPOConfig | None = None, embedding_forward: str = "auto",
                 **kwargs: Any):
        if embedding_forward not in EMBEDDING_FORWARDS:
            raise ValueError(f"CLIPOGRPOTrainer(embedding_forward={embedding_forward!r}): choose one of "
                             f"{', '.join(EMBEDDING_FORWARDS)}")
        super().__init__(*args, **kwargs)
        self.embedding_forward = embedding_forward
        self.clipo_config = CLIPOConfig() if clipo_config is None else clipo_config
        self.head_trainer: HeadTrainer | None = None
        self.policy_frozen = False
        self.frozen_policy_steps = 0
        self.last_head_result: HeadStepResult | None = None
        self._clipo_batch: tuple[list, list] | None = None
        self._clipo_pooled: torch.Tensor | None = None
        self._clipo_capture = False
        # Single pass: the generation batch's gathered rewards with a zero clipo column, waiting for the training
        # forward, and the inputs of the _compute_loss call whose forward the states are read from.
        self._clipo_single_pass = False
        self._clipo_pending: torch.Tensor | None = None
        self._clipo_loss_inputs: dict | None = None
        if not self.clipo_config.enabled:
            return
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError("CLIPOGRPOTrainer: CLIPO adds its reward to the verifiable reward before the group "
                             f"normalisation; set GRPOConfig(multi_objective_aggregation='sum_then_normalize') "
                             f"(got {self.multi_objective_aggregation!r})")
        if getattr(self, "_is_vlm", False):
            raise ValueError("CLIPOGRPOTrainer: vision-language models are not supported (the embedding forward "
                             "is text-only); use a text model or CLIPOConfig(enabled=False)")
        model_config = self.accelerator.unwrap_model(self.model).config
        # The head's initial weights depend only on args.seed, so every process builds the same head without a
        # broadcast, and the global RNG (generation, dropout) is left exactly as a plain GRPOTrainer has it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.args.seed)
            self.head_trainer = build_head_trainer(self.clipo_config, model_config, self.accelerator.device)
        self.reward_funcs.append(_no_reward)
        self.reward_func_names.append(REWARD_NAME)
        self.reward_processing_classes.append(None)
        self.reward_weights = torch.cat([self.reward_weights, self.reward_weights.new_ones(1)])
        self.add_callback(_FreezePolicyDuringWarmup(self))

    # ------------------------------------------------------------------ embeddings

    def _old_logps_forward_runs(self) -> bool:
        """Whether TRL's ``_generate_and_score_completions`` runs its no-grad old-log-prob forward (TRL 1.x)."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return bool(self.args.gradient_accumulation_steps % generate_every != 0
                    or (self.use_vllm and getattr(self, "vllm_importance_sampling_correction", False)))

    def single_pass_applies(self) -> bool:
        """Whether the embeddings come from TRL's training forward: ``embedding_forward="auto"``, TRL runs no
        old-log-prob forward, and each process's generation batch is one micro-batch used once
        (``steps_per_generation == 1``, ``num_iterations == 1``), so that forward sees every row before the
        policy update and the rows' advantages can still be changed."""
        return bool(self.embedding_forward == "auto" and self.args.steps_per_generation == 1
                    and self.num_iterations == 1 and not self._old_logps_forward_runs())

    def _generate(self, prompts: list):
        out = super()._generate(prompts)
        if self.head_trainer is not None and self.model.training:
            self._clipo_batch = (out[0], out[1])  # prompt_ids_list, completion_ids_list (this process's rows)
            self._clipo_pooled = None
            self._clipo_single_pass = self.single_pass_applies()
            self._clipo_capture = not self._clipo_single_pass and self._old_logps_forward_runs()
        return out

    @contextlib.contextmanager
    def _capture_pooled(self, completion_mask: torch.Tensor, completion_width: int, out: list[torch.Tensor]):
        """Hook the decoder of ``self.model`` so each forward's last-layer states are pooled into ``out``
        (rows in call order; ``completion_mask [B, C]`` covers every row the forwards will see)."""
        decoder = self.accelerator.unwrap_model(self.model).get_decoder()
        seen = [0]

        def hook(_module, _args, output):
            hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state  # [b, T, H]
            rows = hidden.shape[0]
            mask = completion_mask[seen[0]:seen[0] + rows]
            out.append(pool_hidden(hidden[:, -completion_width:].detach(), mask, self.clipo_config.pooling))
            seen[0] += rows

        handle = decoder.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        inputs = self._clipo_loss_inputs
        if inputs is not None and torch.is_grad_enabled():
            # Single pass: TRL's training forward over this micro-batch = the whole generation batch (shuffled).
            # Its states give the head step, whose rewards give the advantages TRL reads after this call.
            self._clipo_loss_inputs = None
            pooled: list[torch.Tensor] = []
            with self._capture_pooled(attention_mask[:, -logits_to_keep:], logits_to_keep, pooled):
                result = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                    *args, **kwargs)
            self._single_pass_step(inputs, torch.cat(pooled))
            return result
        if not self._clipo_capture or model is not self.model or torch.is_grad_enabled():
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              *args, **kwargs)
        # TRL's old-log-prob forward over exactly our rows: read the embedding from it instead of a new forward.
        self._clipo_capture = False
        pooled: list[torch.Tensor] = []
        with self._capture_pooled(attention_mask[:, -logits_to_keep:], logits_to_keep, pooled):
            result = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                *args, **kwargs)
        self._clipo_pooled = torch.cat(pooled)
        return result

    def _embedding_inputs(self, prompt_ids_list: list, completion_ids_list: list):
        """``(input_ids [B, P+C], attention_mask [B, P+C], completion_mask [B, C])`` laid out as TRL lays
        them out (prompts left-padded, completions right-padded, truncated completions masked if asked)."""
        device = self.accelerator.device
        # Recent TRL keeps the text tokenizer as `_tokenizer`; TRL 1.0 only as the processing class.
        tokenizer = getattr(self, "_tokenizer", None) or getattr(self.processing_class, "tokenizer",
                                                                 self.processing_class)
        pad_id, multiple = tokenizer.pad_token_id, getattr(self, "pad_to_multiple_of", None)
        prompts = [torch.tensor(ids, dtype=torch.long) for ids in prompt_ids_list]
        completions = [torch.tensor(ids, dtype=torch.long) for ids in completion_ids_list]  # an empty one too
        prompt_ids = pad(prompts, padding_value=pad_id, padding_side="left", pad_to_multiple_of=multiple)
        prompt_mask = pad([torch.ones_like(x) for x in prompts], padding_value=0, padding_side="left",
                          pad_to_multiple_of=multiple)
        completion_ids = pad(completions, padding_value=pad_id, padding_side="right", pad_to_multiple_of=multiple)
        completion_mask = pad([torch.ones_like(x) for x in completions], padding_value=0, padding_side="right",
                              pad_to_multiple_of=multiple)
        if self.mask_truncated_completions:
            ends = [*getattr(self, "eos_token_ids", [tokenizer.eos_token_id]), pad_id]
            truncated = torch.tensor([len(ids) > 0 and ids[-1] not in ends for ids in completion_ids_list])
            completion_mask = completion_mask * (~truncated).unsqueeze(1).long()
        input_ids = torch.cat([prompt_ids, completion_ids], 1).to(device)
        attention_mask = torch.cat([prompt_mask, completion_mask], 1).to(device)
        return input_ids, attention_mask, completion_mask.to(device)

    @torch.no_grad()
    def pooled_embeddings(self, prompt_ids_list: list, completion_ids_list: list) -> torch.Tensor:
        """``[B, H]`` float32 pooled last-layer states of prompt + completion from ``self.model`` (no grad),
        the same forward TRL runs for log-probs (inputs, masks and position ids as TRL passes them), chunked by
        ``per_device_train_batch_size``; the lm_head computes only the last column."""
        input_ids, attention_mask, completion_mask = self._embedding_inputs(prompt_ids_list, completion_ids_list)
        width = completion_mask.shape[1]
        keep = {"logits_to_keep": 1} if accepts_logits_to_keep(self.accelerator.unwrap_model(self.model)) else {}
        pooled: list[torch.Tensor] = []
        chunk = self.args.per_device_train_batch_size
        with disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs), \
                self._capture_pooled(completion_mask, width, pooled):
            for start in range(0, input_ids.shape[0], chunk):
                with self.accelerator.autocast():
                    self.model(input_ids=input_ids[start:start + chunk],
                               attention_mask=attention_mask[start:start + chunk], use_cache=False, **keep)
        return torch.cat(pooled)

    # ------------------------------------------------------------------ the head step

    def contrastive_step(self, pooled: torch.Tensor, verifiable: torch.Tensor) -> HeadStepResult:
        """One head step on this process's ``pooled [n, H]`` and the gathered ``verifiable [N, F]`` rewards.

        Gathers the embeddings of all processes (TRL's row order: process 0's rows, then process 1's, ...;
        rows ``g·G .. g·G+G−1`` are one prompt's group), derives ``correct = Σ_k w_k r_k > 0`` and the group
        ids, and steps the head identically on every process. Returns the result for all ``N`` rows."""
        hidden = self.accelerator.gather(pooled.float().contiguous())
        weights = self.reward_weights[: verifiable.shape[1]].to(verifiable.device)
        correct = (verifiable * weights).nansum(1) > 0
        group_ids = torch.arange(verifiable.shape[0], device=verifiable.device) // self.num_generations
        trainer = self.head_trainer
        device = next(trainer.head.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(positive_generator_seed(self.args.seed, trainer.steps_done + 1))
        return trainer.step(hidden, correct, group_ids, generator=generator)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.head_trainer is None:
            return rewards_per_func
        verifiable = rewards_per_func[:, :-1]
        unscorable = torch.isnan(verifiable).all(1)  # TRL zeroes their advantage; keep them all-NaN
        column = torch.zeros(rewards_per_func.shape[0], device=rewards_per_func.device)
        if self.model.training and self._clipo_batch is not None and self._clipo_single_pass:
            # The head steps in the training forward (_single_pass_step); TRL's advantages are redone there.
            self._clipo_batch, self._clipo_single_pass = None, False
            column[unscorable] = float("nan")
            rewards_per_func[:, -1] = column
            self._clipo_pending = rewards_per_func.clone()
            return rewards_per_func
        if self.model.training and self._clipo_batch is not None:
            pooled = self._clipo_pooled
            if pooled is None:
                pooled = self.pooled_embeddings(*self._clipo_batch)
            result = self.contrastive_step(pooled, verifiable)
            self._clipo_batch, self._clipo_pooled = None, None
            self.policy_frozen = self.head_trainer.in_warmup and not self.clipo_config.fixed_head
            self.last_head_result = result
            column = result.rewards.to(column.device, torch.float32, copy=True)  # result stays NaN-free
            self._log_head_metrics(result, rewards_per_func.shape[0], single_pass=False)
        column[unscorable] = float("nan")
        rewards_per_func[:, -1] = column
        return rewards_per_func

    # ------------------------------------------------------------------ single pass

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        pending = self._clipo_pending
        if pending is None or not self.model.training:
            return output
        local = output["advantages"]
        n = local.shape[0]
        start = self.accelerator.process_index * n
        # Our replica of TRL's formula must give TRL's advantages on the same rewards, or the ones written in
        # the training forward would silently differ from what this TRL version would compute.
        replica = grpo_advantages(pending, self.reward_weights, self.num_generations, self.scale_rewards)
        if not torch.allclose(replica.advantages[start:start + n].to(local.device), local, atol=1e-5, rtol=1e-5):
            raise RuntimeError(f"CLIPOGRPOTrainer: TRL {trl.__version__} computes GRPO advantages differently from "
                               "clipo's replica (clipo.integrations.trl.grpo_advantages); pass "
                               "CLIPOGRPOTrainer(embedding_forward='extra') to use the extra-forward mode")
        # TRL shuffles the batch's rows (shuffle_sequence_dict) before the training forward; this key follows.
        output[ROW_KEY] = torch.arange(n, device=local.device)
        return output

    def _compute_loss(self, model, inputs):
        if ROW_KEY not in inputs or not self.model.training or not torch.is_grad_enabled():
            return super()._compute_loss(model, inputs)
        if self._clipo_pending is None:
            raise RuntimeError("CLIPOGRPOTrainer: a single-pass micro-batch reached _compute_loss twice (or without "
                               "its rewards); pass CLIPOGRPOTrainer(embedding_forward='extra')")
        self._clipo_loss_inputs = inputs
        try:
            loss = super()._compute_loss(model, inputs)
            if self._clipo_loss_inputs is not None:  # TRL's loss took another path than its logps forward
                raise RuntimeError(f"CLIPOGRPOTrainer: TRL {trl.__version__}'s _compute_loss did not call "
                                   "_get_per_token_logps_and_entropies with gradients, so the single-pass embeddings "
                                   "could not be read; pass CLIPOGRPOTrainer(embedding_forward='extra')")
            return loss
        finally:
            self._clipo_loss_inputs = None

    def _single_pass_step(self, inputs: dict, pooled: torch.Tensor) -> None:
        """The head step on the training forward's ``pooled [n, H]`` (TRL's shuffled order), then this batch's
        contrastive rewards into the clipo column, the advantages recomputed with TRL's formula and written into
        ``inputs["advantages"]`` (shuffled order), and TRL's already-logged reward figures corrected."""
        rewards_per_func, self._clipo_pending = self._clipo_pending, None
        rows = inputs[ROW_KEY].to(pooled.device)
        unshuffled = torch.empty_like(pooled)
        unshuffled[rows] = pooled  # shuffled row j is original row rows[j]
        verifiable = rewards_per_func[:, :-1]
        result = self.contrastive_step(unshuffled, verifiable)
        self.policy_frozen = self.head_trainer.in_warmup and not self.clipo_config.fixed_head
        self.last_head_result = result
        column = result.rewards.to(rewards_per_func.device, torch.float32, copy=True)
        column[torch.isnan(verifiable).all(1)] = float("nan")
        rewards_per_func[:, -1] = column
        advantages = grpo_advantages(rewards_per_func, self.reward_weights, self.num_generations,
                                     self.scale_rewards)
        n = pooled.shape[0]
        start = self.accelerator.process_index * n
        local = advantages.advantages[start:start + n].to(inputs["advantages"].device, inputs["advantages"].dtype)
        inputs["advantages"] = local[rows.to(local.device)]
        self._log_head_metrics(result, rewards_per_func.shape[0], single_pass=True)
        self._rewrite_reward_logs(rewards_per_func, advantages)

    def _rewrite_reward_logs(self, rewards_per_func: torch.Tensor, advantages: GroupAdvantages) -> None:
        """Replace what TRL logged for this batch with the zero clipo column by the figures on the real one."""
        metrics = self._metrics["train"]
        column = rewards_per_func[:, -1]
        figures = {f"rewards/{REWARD_NAME}/mean": torch.nanmean(column).item(),
                   f"rewards/{REWARD_NAME}/std": nanstd(column).item(),
                   "reward": torch.nanmean(advantages.rewards).item(),
                   "reward_std": nanstd(advantages.rewards).item(),
                   "frac_reward_zero_std": torch.isclose(advantages.std, torch.zeros_like(advantages.std))
                   .float().mean().item()}
        for key, value in figures.items():
            if metrics.get(key):
                metrics[key][-1] = value
        logs = getattr(self, "_logs", None)
        if logs is None:
            return
        for log, values in ((logs["rewards"].get(REWARD_NAME), column.tolist()),
                            (logs.get("advantages"), advantages.advantages.tolist())):
            if log is None:
                continue
            tail = min(len(values), len(log))
            for offset in range(1, tail + 1):
                log[-offset] = values[-offset]

    def _log_head_metrics(self, result: HeadStepResult, rows: int, *, single_pass: bool) -> None:
        m = {key.split("/", 1)[1]: float(value) for key, value in result.metrics.items()}
        metrics = self._metrics["train"]
        metrics["clipo/single_pass"].append(float(single_pass))
        metrics["clipo/loss"].append(m["loss"])
        metrics["clipo/reward_mean"].append(float(result.rewards.float().mean()))
        metrics["clipo/valid_anchor_frac"].append(m["num_anchors"] / max(rows, 1))
        metrics["clipo/skipped"].append(m["skipped"])
        metrics["clipo/cos_correct_correct"].append(m["cos_correct_correct"])
        metrics["clipo/cos_correct_incorrect"].append(m["cos_correct_incorrect"])
        metrics["clipo/head_grad_norm"].append(m["grad_norm"])
        metrics["clipo/policy_frozen"].append(float(self.policy_frozen))

    # ------------------------------------------------------------------ checkpoints

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.head_trainer is not None and self.args.should_save:
            torch.save(self.head_trainer.state_dict(), os.path.join(output_dir, HEAD_STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.head_trainer is None or checkpoint is None:
            return
        path = os.path.join(checkpoint, HEAD_STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: this checkpoint has no CLIPO head state; resume from a checkpoint "
                                    "written by CLIPOGRPOTrainer, or pass CLIPOConfig(head_load_path=...) and "
                                    "start afresh")
        device = next(self.head_trainer.head.parameters()).device
        self.head_trainer.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        self.policy_frozen = self.head_trainer.in_warmup and self.head_trainer.steps_done > 0

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.head_trainer is not None and self.args.should_save:
            self.head_trainer.head.save_pretrained(os.path.join(output_dir or self.args.output_dir, HEAD_WEIGHTS_DIR))
