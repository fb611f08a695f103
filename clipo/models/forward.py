"""One teacher-forced forward of the policy: per-token log-probs, entropies and a pooled embedding.

Sequence layout (the `RolloutBatch` layout): `cat([prompt, response], 1)` with the prompt left-padded to
P columns and the response right-padded to L columns, so response token o_t sits at column P + t.

* `logp[i, t] = log softmax(logits / temperature)[o_t]`, where the logits come from column P + t − 1 (the
  state that *predicts* o_t; for t = 0 that is the last prompt token, always real thanks to left padding).
* The pooled embedding uses the last-layer hidden states (`hidden_states[-1]`: after the final norm, the
  lm_head input, read with a hook on the lm_head) at the response token columns P + t, i.e. h(o_t) is
  the state computed *from* o_t.
  - "mean":     h̄ = Σ_{t<|o|} h(o_t) / |o|                         (zero vector when |o| = 0)
  - "official": h̄ = Σ_{t<|o|−1} h(o_t) / |o|   (CLIPO's sglang patch, docs/algorithms.md#clipo: decode inputs
                are every response token except the last, divided by |o|; |o| ≤ 1 gives the zero vector,
                where the official code would crash on an empty list). Summed in float32: the official
                positions, not its arithmetic.
  - "official_bf16": the same positions and arithmetic as the patch: s ← bf16(h(o_0)); s ← bf16(s + bf16(h(o_t)))
                for t = 1 .. |o|−2 in order (the engine's bf16 running sum, rounded after every token), then
                bf16(s / |o|), returned as float32. States of a float32 policy are rounded to bf16 first.
Position ids are `cumsum(attention_mask) − 1`, so each row is computed exactly as its unpadded sequence.

Both outputs come from the same forward pass; the pooled embedding is always detached (CLIPO sends no
gradient into the LLM through the contrastive head).

Shared prompts (`group_size=n`): when rows come in contiguous groups of n copies of one prompt (the
`RolloutBatch` layout), each distinct prompt minus its last token is run once (with grad when `with_grad`)
into a KV cache, the cache is repeated n times (differentiable: the prompt's gradient is the sum over its n
rows), and only [last prompt token, response] runs per row on top of it. Same masks and position ids, so the
same log-probs, entropies, pooled states and gradients up to floating-point rounding; micro-batches then
hold whole groups.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipo.models.compat import accepts_logits_to_keep, cache_kwarg, checkpointing_active, shared_prompt_cache, unwrap

__all__ = ["POOLING_MODES", "ForwardOutput", "plan_micro_batches", "policy_forward", "pool_hidden", "token_logp"]

POOLING_MODES = ("mean", "official", "official_bf16")

# Float32 elements of logits processed at once by `token_logp`: 2^26 floats = 256 MiB, so a 150k vocab
# is handled ~440 tokens at a time instead of materialising [N, L, V] in float32.
_LOGP_CHUNK_ELEMENTS = 1 << 26


@dataclass
class ForwardOutput:
    """Result of `policy_forward` (rows in the order of the inputs)."""

    logp: torch.Tensor  # [N, L] float32, log-prob of each response token; 0 where response_mask = 0
    entropy: torch.Tensor | None  # [N, L] float32, entropy of the temperature-scaled distribution; or None
    pooled: torch.Tensor  # [N, H] float32, detached pooled last-layer hidden state


def policy_forward(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    pooling: str = "mean",
    compute_entropy: bool = False,
    entropy_grad: bool = True,
    micro_batch_size: int | None = None,
    max_tokens_per_micro_batch: int | None = None,
    with_grad: bool = False,
    group_size: int | None = None,
) -> ForwardOutput:
    """Teacher-forced forward over prompt + response; see the module docstring for the exact definitions.

    prompt_ids / prompt_mask: [N, P], left-padded. response_ids / response_mask: [N, L], right-padded
    (the mask marks real response tokens: it is also the attention mask, so it must not have holes).
    micro_batch_size / max_tokens_per_micro_batch: split the rows into micro-batches of at most that many
    rows / padded tokens (rows sorted by length so that similar lengths share a micro-batch; the output
    order is the input order). None for both: one pass over everything.
    with_grad: keep the autograd graph for `logp` (and `entropy`). Every micro-batch's graph is then held
    until backward, so for training pass one micro-batch per call (see `plan_micro_batches`).
    The model's train/eval mode is not changed: put it in eval mode for dropout-free old/ref log-probs.
    group_size: rows g*n .. g*n+n-1 (n = group_size) share one prompt (identical prompt_ids / prompt_mask,
    checked): compute each prompt once per micro-batch (see the module docstring). Micro-batches then hold
    whole groups; when the limits cannot hold a whole group (micro_batch_size < n, or a group's padded
    tokens > max_tokens_per_micro_batch) every row is computed on its own as without group_size.
    None or 1: no sharing.
    """
    if pooling not in POOLING_MODES:
        raise ValueError(f"pooling={pooling!r}: expected one of {POOLING_MODES}")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0 (use 1.0 for greedy rollouts)")
    _check_layout(prompt_mask, response_mask)
    device = prompt_ids.device
    lengths = prompt_mask.sum(-1) + response_mask.sum(-1)  # [N] real tokens per row
    share = group_size is not None and group_size > 1
    if share:
        _check_groups(prompt_ids, prompt_mask, group_size)
        plan = plan_micro_batches(lengths, micro_batch_size=micro_batch_size, max_tokens=max_tokens_per_micro_batch,
                                  group_size=group_size)
        share = plan is not None and prompt_mask.shape[1] > 1
    if not share:
        plan = plan_micro_batches(lengths, micro_batch_size=micro_batch_size, max_tokens=max_tokens_per_micro_batch)

    logps, entropies, pooled = [], [], []
    grad_mode = contextlib.nullcontext() if with_grad else torch.no_grad()
    with grad_mode:
        for rows in plan:
            rows = rows.to(device)
            out = _forward_micro_batch(model, prompt_ids[rows], prompt_mask[rows], response_ids[rows],
                                       response_mask[rows], temperature=temperature, pooling=pooling,
                                       compute_entropy=compute_entropy, entropy_grad=entropy_grad,
                                       group_size=group_size if share else None)
            logps.append(out.logp)
            entropies.append(out.entropy)
            pooled.append(out.pooled)

    order = torch.cat(plan).to(device)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=device)  # row i of the input is row inverse[i] here
    return ForwardOutput(
        logp=torch.cat(logps)[inverse],
        entropy=torch.cat(entropies)[inverse] if compute_entropy else None,
        pooled=torch.cat(pooled)[inverse],
    )


def plan_micro_batches(
    lengths: torch.Tensor,
    *,
    micro_batch_size: int | None = None,
    max_tokens: int | None = None,
    group_size: int | None = None,
) -> list[torch.Tensor] | None:
    """Split rows into micro-batches; returns index tensors (int64, CPU) that together cover every row once.

    lengths: [N] tokens per row. With neither limit: one micro-batch [0..N−1]. Otherwise rows are sorted
    by length (longest first) and packed greedily while `rows ≤ micro_batch_size` and
    `rows × longest ≤ max_tokens` (the padded size); a row longer than max_tokens goes alone.

    group_size=n: rows g*n .. g*n+n-1 form a group that must stay whole and contiguous (in row order) in
    one micro-batch. Groups are packed like rows (sorted by their longest row) under the same limits;
    returns None when a single group does not fit them (micro_batch_size < n or n × longest > max_tokens).
    """
    n = lengths.shape[0]
    if micro_batch_size is not None and micro_batch_size < 1:
        raise ValueError(f"micro_batch_size={micro_batch_size}: must be >= 1")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens}: must be >= 1")
    if group_size is not None and group_size > 1:
        if n % group_size:
            raise ValueError(f"group_size={group_size} does not divide the {n} rows")
        longest = lengths.cpu().reshape(-1, group_size).max(-1).values  # [G] longest row of each group
        if micro_batch_size is not None and micro_batch_size < group_size:
            return None
        if max_tokens is not None and int(longest.max()) * group_size > max_tokens:
            return None
        groups = plan_micro_batches(longest * group_size,  # a group's padded size per "row" of the plan
                                    micro_batch_size=None if micro_batch_size is None else micro_batch_size // group_size,
                                    max_tokens=max_tokens)
        offsets = torch.arange(group_size)
        return [(g[:, None] * group_size + offsets).reshape(-1) for g in groups]
    if micro_batch_size is None and max_tokens is None:
        return [torch.arange(n)]
    order = torch.argsort(lengths.cpu(), descending=True, stable=True)
    sizes = lengths.cpu()[order].tolist()
    batches, current, longest = [], [], 0
    for row, size in zip(order.tolist(), sizes):
        grown_longest = max(longest, size)
        too_many = micro_batch_size is not None and len(current) + 1 > micro_batch_size
        too_big = max_tokens is not None and (len(current) + 1) * grown_longest > max_tokens
        if current and (too_many or too_big):
            batches.append(torch.tensor(current))
            current, grown_longest = [], size
        current.append(row)
        longest = grown_longest
    batches.append(torch.tensor(current))
    return batches


def _forward_micro_batch(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float,
    pooling: str,
    compute_entropy: bool,
    entropy_grad: bool = True,
    group_size: int | None = None,
) -> ForwardOutput:
    """`policy_forward` on one micro-batch of m rows; outputs keep the full response width L.

    group_size: the rows are whole groups of this many copies of one prompt (contiguous): prefill each
    distinct prompt once (see the module docstring).
    """
    width = response_ids.shape[1]
    # Trim columns that are padding in every row of this micro-batch: less compute, identical results.
    first = int(prompt_mask.any(0).int().argmax())  # first prompt column with a real token in some row
    used = max(1, int(response_mask.sum(-1).max()))  # response columns with a real token in some row
    ids = torch.cat([prompt_ids[:, first:], response_ids[:, :used]], dim=1)  # [m, T]
    attention = torch.cat([prompt_mask[:, first:], response_mask[:, :used]], dim=1).long()  # [m, T]
    positions = (attention.cumsum(-1) - 1).clamp(min=0)  # [m, T]
    p = ids.shape[1] - used  # prompt columns kept; the response starts here

    keep = used + 1  # logits at columns p-1 .. p+used-1; the last one predicts past the response
    kwargs = {"logits_to_keep": keep} if accepts_logits_to_keep(model) else {}
    # A DistributedDataParallel wrapper runs the main forward (its gradient hooks must see it) but has no HF
    # attributes; the prompt prefill runs on the inner module, so DDP sees exactly one forward per backward.
    inner = unwrap(model)
    head = inner.get_output_embeddings()
    cache = None
    if group_size is not None and p > 1 and not checkpointing_active(model):
        cache = shared_prompt_cache(inner, ids[::group_size, :p - 1], attention[::group_size, :p - 1],
                                     positions[::group_size, :p - 1], group_size)
    shared = cache is not None
    if shared:
        # Only [last prompt token, o_0 .. o_{used-1}] run per row, on top of the repeated prompt cache; the
        # attention mask still spans every column, the position ids are those of the full layout.
        with _capture_input(head) as captured:
            out = model(input_ids=ids[:, p - 1:], attention_mask=attention, position_ids=positions[:, p - 1:],
                        use_cache=True, output_hidden_states=head is None, **{cache_kwarg(model): cache}, **kwargs)
        del cache
    else:
        with _capture_input(head) as captured:
            out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False,
                        output_hidden_states=head is None, **kwargs)
    # The lm_head saw the last `keep` columns (or all columns it was run on); either way the response states
    # are its last `used` columns, the states computed from o_0 .. o_{used-1}.
    head_input = captured[0] if head is not None else out.hidden_states[-1]  # [m, keep or T, H]
    hidden = head_input[:, -used:].detach()  # [m, used, H]
    # With a cache the model ran exactly `keep` columns, so the last `keep` logits are the same slice.
    logits = out.logits[:, -keep:-1] if kwargs or shared else out.logits[:, p - 1:p + used - 1]  # [m, used, V]
    mask = response_mask[:, :used].bool()  # [m, used]
    logp, entropy = token_logp(logits, response_ids[:, :used], temperature=temperature,
                               compute_entropy=compute_entropy, entropy_grad=entropy_grad)
    return ForwardOutput(
        logp=_pad_columns(logp.masked_fill(~mask, 0.0), width),
        entropy=_pad_columns(entropy.masked_fill(~mask, 0.0), width) if compute_entropy else None,
        pooled=pool_hidden(hidden, mask, pooling),
    )


def token_logp(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log softmax(logits / temperature) gathered at `targets`, and optionally the entropy, in float32.

    entropy_grad=False computes the entropy outside autograd (a metric only), so a training forward does not
    keep a [c, V] softmax per chunk alive for backward.

    logits: [m, l, V] any float dtype; targets: [m, l] int64. Returns logp [m, l] and entropy [m, l] or
    None. Works through the flattened tokens in chunks so that only one chunk is ever upcast to float32.
    No op here is one autocast lowers (upcast, logsumexp, gather, softmax), so under trainer.precision=bf16-mixed
    bf16 logits still give float32 log-probs. logp = x[target] − logsumexp(x);  entropy = logsumexp(x) − Σ_v softmax(x)_v · x_v,  x = logits / T.
    """
    m, l, vocab = logits.shape
    flat = logits.reshape(m * l, vocab)
    flat_targets = targets.reshape(m * l, 1)
    chunk = max(1, _LOGP_CHUNK_ELEMENTS // vocab)
    logps, entropies = [], []
    for lo in range(0, m * l, chunk):
        x = flat[lo:lo + chunk].float()  # [c, V]
        if temperature != 1.0:
            x = x / temperature
        lse = torch.logsumexp(x, dim=-1)  # [c]
        logps.append(x.gather(-1, flat_targets[lo:lo + chunk]).squeeze(-1) - lse)
        if compute_entropy:
            with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
                probs = torch.softmax(x, dim=-1)
                entropies.append(lse - (probs * x).sum(-1))
    logp = torch.cat(logps).reshape(m, l) if logps else flat.new_zeros((m, l), dtype=torch.float32)
    entropy = None
    if compute_entropy:
        entropy = torch.cat(entropies).reshape(m, l) if entropies else logp.new_zeros((m, l))
    return logp, entropy


def pool_hidden(hidden: torch.Tensor, response_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Pool the states at the response tokens into one float32 vector per rollout.

    hidden: [m, l, H], row i column t = h(o_t); response_mask: [m, l] right-padded. Returns [m, H].
    "mean": Σ_{t<|o|} h(o_t) / |o|;  "official": Σ_{t<|o|−1} h(o_t) / |o|  (both 0 for an empty response,
    "official" also 0 for |o| = 1, see the module docstring); "official_bf16": "official" with the official
    bf16 running sum (:func:`_official_bf16_pool`).
    """
    if pooling == "official_bf16":
        return _official_bf16_pool(hidden, response_mask)
    mask = response_mask.to(torch.float32)  # [m, l]
    count = mask.sum(-1, keepdim=True)  # [m, 1] = |o|
    if pooling == "official":
        # Drop the last real token of each row: a right-padded mask shifted left by one column.
        mask = mask * F.pad(mask[:, 1:], (0, 1))
    elif pooling != "mean":
        raise ValueError(f"pooling={pooling!r}: expected one of {POOLING_MODES}")
    with _autocast_off(hidden.device):  # under an outer bf16 autocast this einsum (a bmm) would run in bf16
        summed = torch.einsum("mlh,ml->mh", hidden.float(), mask)  # [m, H]
    return summed / count.clamp(min=1.0)


def _official_bf16_pool(hidden: torch.Tensor, response_mask: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """The official embedding op for op: a bf16 running sum over o_0 .. o_{|o|−2}, divided by |o| in bf16.

    hidden: [m, l, H]; response_mask: [m, l] right-padded. Returns [m, H] float32 (0 when |o| ≤ 1).
    s ← 0 (bf16); for each column t in order, s ← s + bf16(h(o_t)) where t < |o|−1, else s + 0 (exact in bf16,
    so rows of different lengths share the loop); then s / |o| with |o| a Python int, as the patch divides.
    Columns are cast to bf16 `chunk` at a time so that no [m, l, H] bf16 copy is materialised.
    """
    mask = response_mask.bool()
    keep = mask & F.pad(mask[:, 1:], (0, 1))  # [m, l] all real tokens but the last
    counts = mask.sum(-1).tolist()  # |o| per row
    used = int(keep.sum(-1).max()) if keep.numel() else 0  # right-padded: kept tokens are the first columns
    m, _, width = hidden.shape
    total = torch.zeros(m, width, dtype=torch.bfloat16, device=hidden.device)
    with _autocast_off(hidden.device):
        for lo in range(0, used, chunk):
            part = hidden[:, lo:min(used, lo + chunk)].to(torch.bfloat16)
            part = part.masked_fill(~keep[:, lo:lo + part.shape[1], None], 0.0)
            for t in range(part.shape[1]):
                total.add_(part[:, t])  # bf16 in, bf16 out: rounded after every token, as the engine's `+=`
        rows = [total[i] / counts[i] if counts[i] > 1 else torch.zeros_like(total[i]) for i in range(m)]
    return torch.stack(rows).float() if rows else total.float()


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast disabled on `device` while float32 math runs (trainer.precision=bf16-mixed wraps the whole forward
    in bf16 autocast); a no-op when autocast is not on."""
    try:
        on = torch.is_autocast_enabled(device.type)  # torch >= 2.4
    except TypeError:  # torch 2.3 takes no device type
        on = torch.is_autocast_cpu_enabled() if device.type == "cpu" else torch.is_autocast_enabled()
    return torch.autocast(device_type=device.type, enabled=False) if on else contextlib.nullcontext()


def _check_layout(prompt_mask: torch.Tensor, response_mask: torch.Tensor) -> None:
    """Reject layouts that would silently misalign log-probs: o_0 is predicted from the last prompt column,
    so every prompt must be left-padded and non-empty (its last column real)."""
    if prompt_mask.shape[0] != response_mask.shape[0]:
        raise ValueError(f"policy_forward: {prompt_mask.shape[0]} prompt rows but {response_mask.shape[0]} "
                         "response rows")
    if prompt_mask.shape[1] == 0 or not bool(prompt_mask[:, -1].all()):
        raise ValueError("policy_forward: every prompt must be left-padded and hold at least one token "
                         "(prompt_mask[:, -1] must be all ones)")


def _check_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group_size: int) -> None:
    """group_size must divide the rows, and every row of a group must hold its group's prompt."""
    n = prompt_ids.shape[0]
    if group_size < 1 or n % group_size:
        raise ValueError(f"policy_forward: group_size={group_size} does not divide the {n} rows")
    for x in (prompt_ids, prompt_mask):
        grouped = x.reshape(n // group_size, group_size, -1)
        if not bool((grouped == grouped[:, :1]).all()):
            raise ValueError(f"policy_forward: group_size={group_size}, but rows g*n .. g*n+n-1 do not share "
                             "one prompt (prompt_ids / prompt_mask differ within a group)")


def _pad_columns(x: torch.Tensor, width: int) -> torch.Tensor:
    """Right-pad [m, l] with zeros to [m, width]."""
    return F.pad(x, (0, width - x.shape[1]))


@contextlib.contextmanager
def _capture_input(module: torch.nn.Module | None):
    """Record the input of `module` (the lm_head) during one forward; yields the list it is appended to.

    The lm_head input is `hidden_states[-1]` (after the final norm). Reading it here avoids
    `output_hidden_states=True`, which keeps every layer's states alive until the forward returns, and with
    `logits_to_keep` it is already cut to the response columns. `module=None` records nothing.
    """
    captured: list[torch.Tensor] = []
    handle = None if module is None else module.register_forward_pre_hook(
        lambda _module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        if handle is not None:
            handle.remove()
