"""Rollouts with Hugging Face `model.generate` (KV cache, batched, in-process).

The engine shares the policy module with the trainer, so there are no weights to sync: `update_weights`
only swaps the module it samples from.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import torch

from clipo.models.compat import cache_kwarg, shared_prompt_cache
from clipo.rollout.base import RolloutEngine
from clipo.rollout.stopping import StopStringCriteria, cut_response_text, find_response_end
from clipo.rollout.types import RolloutBatch, SamplingParams

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["HFGenerateEngine", "eos_token_ids"]


class _Completion(NamedTuple):
    tokens: list[int]  # response ids up to and including EOS / the stop-completing token
    finish_reason: str  # "eos" | "stop" | "length"
    text: str  # decoded without special tokens, cut at the stop string


class HFGenerateEngine(RolloutEngine):
    """Batched `model.generate` over prompts repeated n times.

    micro_batch_size: most sequences (prompt copies) per `generate` call; None = all at once. Sampled
    tokens depend on it (the RNG draws per batch), so keep it fixed for reproducible runs.

    share_prompt_prefill: when a micro-batch holds whole groups (n copies of each prompt), run the model
    once on each distinct prompt (all but its last token) into a `DynamicCache`, repeat that cache n times
    and let `generate` start from it, instead of prefilling every copy. Greedy tokens are identical to the
    unshared path; sampled tokens use the same RNG draws, but the prefill runs on a batch n times smaller,
    so the logits can differ in the last bits (batch-shape-dependent kernels) and a draw that lands on a
    CDF boundary may pick a different token. Micro-batches that split a group are prefilled per row.

    Reproducibility: with `params.seed` set, generation runs inside `torch.random.fork_rng` after
    `torch.manual_seed(seed)`; the same prompts, seed, micro_batch_size and hardware give the same tokens,
    and the caller's RNG state is left as it was.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *,
                 micro_batch_size: int | None = None, share_prompt_prefill: bool = True):
        if tokenizer.pad_token_id is None:
            raise ValueError("HFGenerateEngine: the tokenizer needs a pad token (use clipo.models.load_tokenizer)")
        if micro_batch_size is not None and micro_batch_size < 1:
            raise ValueError(f"HFGenerateEngine: micro_batch_size={micro_batch_size} must be >= 1 or None")
        self.model = model
        self.tokenizer = tokenizer
        self.micro_batch_size = micro_batch_size
        self.share_prompt_prefill = share_prompt_prefill

    def update_weights(self, model: torch.nn.Module) -> None:
        self.model = model

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> RolloutBatch:
        """Sample `params.n` completions per prompt; see `RolloutEngine` for the layout.

        Only `model.generate` runs under `torch.inference_mode()`: the returned tensors are ordinary ones,
        so the trainer may edit them in place (e.g. zero the mask of over-long rollouts) or use them in
        autograd.
        """
        if not prompts:
            raise ValueError("HFGenerateEngine.generate: no prompts")
        start = time.perf_counter()
        pad = self.tokenizer.pad_token_id
        eos_ids = eos_token_ids(self.model, self.tokenizer)
        enc = self.tokenizer(list(prompts), padding=True, padding_side="left", add_special_tokens=False,
                             return_tensors="pt")
        # Repeat each prompt n times, contiguously: rows b*n .. b*n+n-1 belong to prompt b.
        prompt_ids = enc["input_ids"].repeat_interleave(params.n, dim=0)  # [N, P]
        prompt_mask = enc["attention_mask"].repeat_interleave(params.n, dim=0)  # [N, P]
        gen_config = _generation_config(params, eos_ids, pad)

        rows: list[_Completion] = []  # one per rollout, in row order
        step = self.micro_batch_size or prompt_ids.shape[0]
        with _eval_mode(self.model), _plain_generation_defaults(self.model), _seeded(params.seed, self._device):
            for lo in range(0, prompt_ids.shape[0], step):
                hi = min(lo + step, prompt_ids.shape[0])
                # Rows b*n .. b*n+n-1 share a prompt: a chunk holds whole groups iff both ends are on a boundary.
                whole_groups = self.share_prompt_prefill and params.n > 1 and lo % params.n == 0 and hi % params.n == 0
                rows.extend(self._generate_chunk(prompt_ids[lo:hi], prompt_mask[lo:hi], params, gen_config, eos_ids,
                                                 group_size=params.n if whole_groups else None))

        response_ids, response_mask = _right_pad([r.tokens for r in rows], pad)
        finish = [r.finish_reason for r in rows]
        group_ids = torch.arange(len(prompts), dtype=torch.long).repeat_interleave(params.n)  # [N]
        return RolloutBatch(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            truncated=torch.tensor([f == "length" for f in finish], dtype=torch.bool),
            group_ids=group_ids,
            prompt_index=group_ids.clone(),
            response_texts=[r.text for r in rows],
            finish_reasons=finish,
            pad_token_id=pad,
            extras={"generate_seconds": time.perf_counter() - start,
                    "generated_tokens": int(response_mask.sum())},
        )

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _generate_chunk(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, params: SamplingParams,
                        gen_config: GenerationConfig, eos_ids: frozenset[int], *,
                        group_size: int | None = None) -> list[_Completion]:
        """Generate for one micro-batch of prompt rows [m, P]; returns one completion per row.

        group_size: the rows are whole groups of this many contiguous copies of one prompt; each distinct
        prompt is then prefilled once (see `share_prompt_prefill`). None: every row is prefilled.
        """
        from transformers import StoppingCriteriaList

        # Columns that are padding in every row of this chunk cost compute and change nothing: drop them.
        first = int(prompt_mask.any(0).int().argmax())
        ids = prompt_ids[:, first:].to(self._device)
        mask = prompt_mask[:, first:].to(self._device)
        criteria = StoppingCriteriaList()
        stop_criterion = None
        if params.stop:
            stop_criterion = StopStringCriteria(self.tokenizer, params.stop, ids.shape[1],
                                                eos_ids | {gen_config.pad_token_id})
            criteria.append(stop_criterion)
        with torch.inference_mode():
            shared = {}
            if group_size is not None and ids.shape[1] > 1:
                # Each distinct prompt minus its last token is prefilled once; `generate` then sees a cache of
                # length P-1 for the full [m, P] input and runs only the last prompt token before decoding.
                # The position ids are those `generate` derives for left padding, so the cache is the one an
                # unshared prefill computes.
                positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
                cache = shared_prompt_cache(self.model, ids[::group_size, :-1], mask[::group_size, :-1],
                                            positions[::group_size, :-1], group_size)
                if cache is not None:
                    shared[cache_kwarg(self.model)] = cache
            # synced_gpus=False: transformers turns it on by itself for an FSDP-managed model, keeping every
            # process stepping until all are done; the trainer generates on gathered full weights instead
            # (clipo.training.parallel.full_weights), and evaluation runs on one process only.
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_config,
                                      stopping_criteria=criteria, synced_gpus=False, **shared)
        generated = out[:, ids.shape[1]:].tolist()  # [m, T] rows, padded after each row's end
        stopped_at = stop_criterion.stopped_at if stop_criterion and stop_criterion.stopped_at else None
        results = []
        for i, tokens in enumerate(generated):
            length, reason = find_response_end(tokens, eos_ids=eos_ids, stop=params.stop,
                                               tokenizer=self.tokenizer,
                                               stopped_at=stopped_at[i] if stopped_at else None)
            tokens = tokens[:length]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if reason == "stop":
                text = cut_response_text(text, params.stop, include_stop=params.include_stop_str_in_output)
            results.append(_Completion(tokens, reason, text))
        return results


def eos_token_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Every id that ends a response: the model's generation-config EOS ids (Qwen lists two) and the tokenizer's."""
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(config_eos, int):
        ids.add(config_eos)
    elif config_eos is not None:
        ids.update(int(i) for i in config_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("no EOS token id on the model's generation config or the tokenizer")
    return frozenset(ids)


def _generation_config(params: SamplingParams, eos_ids: frozenset[int], pad: int) -> GenerationConfig:
    """A GenerationConfig in which every knob that changes the sampling distribution is set explicitly."""
    from transformers import GenerationConfig

    sampling = {}
    if not params.greedy:
        sampling = {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,  # 0 disables top-k (transformers' own default would be 50)
            "min_p": params.min_p if params.min_p > 0 else None,
        }
    return GenerationConfig(
        max_new_tokens=params.max_new_tokens,
        do_sample=not params.greedy,
        num_beams=1,
        num_return_sequences=1,  # the prompts are already repeated n times
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        min_new_tokens=0,
        eos_token_id=sorted(eos_ids),
        pad_token_id=pad,
        use_cache=True,
        return_dict_in_generate=False,
        **sampling,
    )


@contextlib.contextmanager
def _plain_generation_defaults(model: torch.nn.Module) -> Iterator[None]:
    """Temporarily replace the model's generation config by a bare one (keeping its special-token ids).

    transformers 5 fills every field left None in the config passed to `generate` from
    `model.generation_config`, i.e. from the checkpoint's generation_config.json (suppress_tokens,
    forced_eos_token_id, sequence_bias, ...). RL sampling must follow `SamplingParams` only.
    """
    from transformers import GenerationConfig

    holders = [model]
    if hasattr(model, "get_base_model"):  # peft: generate() copies the wrapper's config onto the base model
        holders.append(model.get_base_model())
    saved = [h.generation_config for h in holders]
    bare = GenerationConfig(**{k: getattr(saved[0], k, None)
                               for k in ("bos_token_id", "eos_token_id", "pad_token_id")})
    try:
        for h in holders:
            h.generation_config = bare
        yield
    finally:
        for h, config in zip(holders, saved):
            h.generation_config = config


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for sampling; the previous train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG inside a fork of it (CPU + `device`), or do nothing when seed is None."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _right_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> ids [N, L] right-padded with `pad`, mask [N, L] (L = longest row, at least 1)."""
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask
