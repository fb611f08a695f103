"""Memory per GPU of an RL training run, on paper: weights, gradients, AdamW state, activations, logits, KV cache.

Pure arithmetic on plain numbers: a :class:`ModelShape` (read from a model config or the table of known
checkpoints :data:`KNOWN_SHAPES`) and the run's sizes go in, a :class:`MemoryPlan` with one field per term comes
out. Nothing is loaded or allocated. The formulas, the bytes each precision spends per term, the assumptions
about how this trainer holds its tensors, and what the estimate misses are written out in ``docs/memory.md``;
``benchmarks/bench_memory_plan.py`` checks the training terms against measured peak memory on CPU.

A step has three phases whose peaks are estimated separately (the run needs the largest):

* rollout: the weights (FSDP: every unit gathered, as ``clipo.training.parallel.full_weights`` does), the
  resident gradients and optimizer state, the reference model, the KV cache and the prefill/sampling work;
* no-grad forward (old / reference log-probs): one ``trainer.micro_batch_size`` micro-batch without autograd;
* training: one micro-batch's saved activations and logits on top of everything resident;
* optimizer step: AdamW's temporaries on top of everything resident.

One file (~540 lines) on purpose: each function is one term of ``docs/memory.md``, and the phases combine all of
them, so the estimator reads against that document from top to bottom.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from clipo.models.forward import _LOGP_CHUNK_ELEMENTS

__all__ = [
    "BYTES",
    "GIB",
    "KNOWN_SHAPES",
    "PARALLEL_MODES",
    "PRECISIONS",
    "MemoryPlan",
    "ModelShape",
    "PrecisionBytes",
    "Suggestion",
    "estimate_memory",
    "known_shape",
    "layer_activation_bytes",
    "shape_from_config",
    "suggest_changes",
]

GIB = 1 << 30
PRECISIONS = ("fp32", "bf16-mixed", "bf16")
PARALLEL_MODES = ("none", "ddp", "fsdp")
ATTENTION_KINDS = ("sdpa", "eager")

#: float32 elements of logits that `clipo.models.forward.token_logp` upcasts at once (one chunk).
LOGP_CHUNK_ELEMENTS = _LOGP_CHUNK_ELEMENTS

#: Backward through `token_logp` and the logits slicing holds this many logits-sized gradient buffers in the
#: logits' dtype at once (the accumulated gradient of the sliced logits plus the next slice's zero-filled full-size
#: gradient), and this many float32 chunk-sized temporaries (logsumexp and gather backward; one more when the
#: logits are 16-bit, for the cast back). Probed on CPU (docs/memory.md#logits).
LOGITS_BACKWARD_COPIES = 2
LOGITS_CHUNK_TEMPORARIES = {4: 2, 2: 3}

#: CUDA context, cuBLAS/NCCL workspaces and allocator slack kept free on every GPU (docs/memory.md#overhead).
OVERHEAD_BYTES = 1 * GIB

#: Modules LoRA can adapt, by name, and their (in, out) sizes as functions of the shape.
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers of a dense decoder-only transformer (Qwen2 / Llama style: RMSNorm, RoPE, GQA
    attention, SwiGLU MLP)."""

    hidden_size: int
    num_layers: int
    heads: int
    kv_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    head_dim: int = 0  # 0: hidden_size // heads
    qkv_bias: bool = True  # Qwen2: q/k/v projections carry a bias; Llama: none
    o_bias: bool = False  # Llama with attention_bias=True: the output projection too
    mlp_bias: bool = False
    name: str = ""

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_size

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_size

    def layer_params(self) -> int:
        """Parameters of one decoder layer: q/k/v/o projections, SwiGLU MLP (gate, up, down), two RMSNorm weights."""
        h, q, kv, inter = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        attention = h * q + 2 * h * kv + q * h
        attention += (q + 2 * kv) * self.qkv_bias + h * self.o_bias
        mlp = 3 * h * inter + (2 * inter + h) * self.mlp_bias
        return attention + mlp + 2 * h

    def root_params(self) -> int:
        """Parameters outside the decoder layers: input embedding, final norm, output head (absent when tied)."""
        embedding = self.vocab_size * self.hidden_size
        return embedding * (1 if self.tie_word_embeddings else 2) + self.hidden_size

    def num_params(self) -> int:
        return self.num_layers * self.layer_params() + self.root_params()

    def matmul_params(self) -> int:
        """Weights that go through a matmul (the projections and the output head): the ones bf16 autocast copies.
        The input embedding is a lookup (not cast) and the RMSNorm weights multiply in float32."""
        return self.num_layers * (self.layer_params() - 2 * self.hidden_size) + self.vocab_size * self.hidden_size

    def lora_params(self, r: int, targets: str | Iterable[str] = ("q_proj", "k_proj", "v_proj", "o_proj")) -> int:
        """Trainable parameters of rank-``r`` LoRA adapters (A: r × in, B: out × r) on ``targets`` in every layer."""
        if r <= 0:
            return 0
        h, q, kv, inter = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        sizes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                 "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}
        names = LORA_MODULES if isinstance(targets, str) and targets == "all-linear" else tuple(targets)
        unknown = [t for t in names if t not in sizes]
        if unknown:
            raise ValueError(f"LoRA target(s) {unknown}: the planner knows {', '.join(LORA_MODULES)} and 'all-linear'")
        return self.num_layers * sum(r * (sizes[t][0] + sizes[t][1]) for t in names)

    def describe(self) -> str:
        heads = f"{self.heads}/{self.kv_heads} heads" + (f" × {self.head_size}" if self.head_dim else "")
        return (f"{self.num_params() / 1e9:.2f} B parameters; {self.num_layers} layers, hidden {self.hidden_size}, "
                f"{heads}, MLP {self.intermediate_size}, vocab {self.vocab_size}, "
                f"{'tied' if self.tie_word_embeddings else 'untied'} embeddings")


def _qwen25(name: str, h: int, layers: int, heads: int, kv: int, inter: int, vocab: int, tied: bool) -> ModelShape:
    return ModelShape(hidden_size=h, num_layers=layers, heads=heads, kv_heads=kv, intermediate_size=inter,
                      vocab_size=vocab, tie_word_embeddings=tied, qkv_bias=True, name=name)


#: Public config.json numbers of the Qwen2.5 family (base and -Instruct share them), so that the hub names in the
#: recipes plan without a download. Parameter counts (``num_params``): 0.49 B, 1.54 B, 3.09 B, 7.62 B, 14.77 B,
#: 32.76 B, as the model cards state.
KNOWN_SHAPES: dict[str, ModelShape] = {s.name: s for s in (
    _qwen25("Qwen/Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, True),
    _qwen25("Qwen/Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, True),
    _qwen25("Qwen/Qwen2.5-3B", 2048, 36, 16, 2, 11008, 151936, True),
    _qwen25("Qwen/Qwen2.5-7B", 3584, 28, 28, 4, 18944, 152064, False),
    _qwen25("Qwen/Qwen2.5-14B", 5120, 48, 40, 8, 13824, 152064, False),
    _qwen25("Qwen/Qwen2.5-32B", 5120, 64, 40, 8, 27648, 152064, False),
)}


def known_shape(name_or_path: str) -> ModelShape | None:
    """The shape of a checkpoint in :data:`KNOWN_SHAPES` by hub name (``-Instruct`` and case ignored), or None."""
    key = name_or_path.strip().rstrip("/").lower().removesuffix("-instruct")
    for name, shape in KNOWN_SHAPES.items():
        if key == name.lower() or key == name.lower().split("/")[-1]:
            return replace(shape, name=name_or_path)
    return None


def shape_from_config(config: object, name: str = "") -> ModelShape:
    """A :class:`ModelShape` from a transformers config object (read by attribute; nothing is imported).

    Multimodal configs are read through ``get_text_config()``. Mixture-of-experts configs are refused: the
    planner models dense MLPs only.
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
               if getattr(text, k, None) is None]
    if missing:
        raise ValueError(f"{name or type(config).__name__}: its config lacks {', '.join(missing)}; "
                         "the planner models dense decoder-only transformers")
    if any(getattr(text, k, None) for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        raise ValueError(f"{name or type(config).__name__}: a mixture-of-experts model; the planner models dense MLPs only")
    model_type = getattr(text, "model_type", "")
    attention_bias = getattr(text, "attention_bias", None)
    qkv_bias = bool(attention_bias) if attention_bias is not None else model_type == "qwen2"
    o_bias = bool(attention_bias) and model_type != "qwen2"
    heads = int(text.num_attention_heads)
    return ModelShape(
        hidden_size=int(text.hidden_size), num_layers=int(text.num_hidden_layers), heads=heads,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
        intermediate_size=int(text.intermediate_size), vocab_size=int(text.vocab_size),
        tie_word_embeddings=bool(getattr(text, "tie_word_embeddings", getattr(config, "tie_word_embeddings", False))),
        head_dim=int(getattr(text, "head_dim", None) or 0), qkv_bias=qkv_bias, o_bias=o_bias,
        mlp_bias=bool(getattr(text, "mlp_bias", False)), name=name)


# ------------------------------------------------------------------------------------------ precision


@dataclass(frozen=True)
class PrecisionBytes:
    """Bytes per element of each kind of tensor under one ``trainer.precision`` (docs/memory.md#precisions)."""

    stored: int  # parameters as the model holds them (bf16-mixed: the fp32 master weights); the reference copy too
    compute_copy: int  # bf16 copies autocast makes of the matmul weights (bf16-mixed only; 0 = none)
    grads: int  # per trainable parameter
    optimizer: int  # AdamW's two moments per trainable parameter, in the parameter's dtype
    compute: int  # matmul outputs: saved activations, logits, KV-cache values
    residual: int  # the residual stream between layers, RMSNorm's normalised output, RoPE'd keys in the KV cache


BYTES: dict[str, PrecisionBytes] = {
    "fp32": PrecisionBytes(stored=4, compute_copy=0, grads=4, optimizer=8, compute=4, residual=4),
    "bf16-mixed": PrecisionBytes(stored=4, compute_copy=2, grads=4, optimizer=8, compute=2, residual=4),
    "bf16": PrecisionBytes(stored=2, compute_copy=0, grads=2, optimizer=4, compute=2, residual=2),
}


def layer_activation_bytes(shape: ModelShape, precision: str, *, seq_len: int, attention: str = "sdpa",
                           padded: bool = True) -> int:
    """Bytes one decoder layer saves for backward, per token (docs/memory.md#activations).

    Counted from the tensors transformers' Qwen2/Llama layer hands to autograd (listed with
    ``torch.autograd.graph.saved_tensors_hooks``). Per RMSNorm (two per layer): its float32 input (4 B), the
    normalised output (residual dtype) and the matmul input (compute dtype) — once when the projections share
    it, once per projection under bf16 autocast, which casts each linear's input on its own (q, k, v: 3 copies;
    gate, up: 2). Attention: q, k, v as SDPA receives them and its output, which is also o_proj's input
    (``2·q_dim + 2·kv`` elements, ``kv = q_dim`` when a padding mask makes transformers repeat the KV heads,
    ``kv_dim`` otherwise), plus SDPA's float32 log-sum-exp per head. MLP: gate, silu(gate), up and their
    product (``4·intermediate``). ``attention="eager"`` adds the ``heads × seq_len`` softmax matrix per token
    (float32, plus a compute-dtype copy when that is not float32).
    """
    b = BYTES[precision]
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention={attention!r}: expected one of {', '.join(ATTENTION_KINDS)}")
    h, q, inter = shape.hidden_size, shape.q_dim, shape.intermediate_size
    kv = q if padded and shape.kv_heads < shape.heads else shape.kv_dim
    matmul_inputs = 5 if b.compute_copy else 2  # autocast: one cast per projection; else one shared tensor per norm
    norms = 2 * (4 + b.residual) * h + matmul_inputs * b.compute * h
    attn = b.compute * (2 * q + 2 * kv) + 4 * shape.heads
    mlp = b.compute * 4 * inter
    scores = shape.heads * seq_len * (4 + (b.compute if b.compute != 4 else 0)) if attention == "eager" else 0
    return norms + attn + mlp + scores


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU, one field per term (docs/memory.md has the formula of each)."""

    precision: str
    parallel: str
    gpus: int
    offload: bool
    gradient_checkpointing: bool
    params: int  # parameters of the policy (LoRA adapters included)
    trainable_params: int
    train_tokens: int  # tokens of one training micro-batch (rows × (prompt + response))
    # resident through the whole step
    weights: int  # parameters as stored (bf16-mixed: the fp32 master weights); FSDP: this GPU's shard
    compute_weights: int  # bf16-mixed: autocast's bf16 copies of the matmul weights (held from forward to backward)
    gradients: int  # FSDP: the shard (kept from one update to the next: zero_grad runs at the next update)
    optimizer: int  # AdamW exp_avg + exp_avg_sq
    reference: int  # frozen copy of the policy for the KL term (a full replica on every GPU)
    head: int  # CLIPO head: fp32 weights, gradients and AdamW state
    # training phase
    gathered: int  # FSDP: root unit + two layers gathered (current, prefetched) and their unsharded gradients
    accumulated_gradients: int  # FSDP with several micro-batches per update: unsharded gradients between syncs
    comm_buffers: int  # DDP: the gradient buckets (a second copy of the gradients)
    activations: int  # saved for backward by one micro-batch's forward, with or without checkpointing as configured
    activations_full: int  # the same without gradient checkpointing
    activations_checkpointed: int  # the same with gradient checkpointing (each layer's input only)
    recompute: int  # gradient checkpointing: one layer's activations, recomputed during backward
    logits: int  # training: fp32 log-softmax inputs saved for backward and the logits' gradient buffers
    # no-grad forward phase (old / reference log-probs)
    forward_work: int
    # optimizer step: AdamW's foreach step allocates one moment-sized temporary (sqrt of exp_avg_sq)
    optimizer_work: int
    # rollout phase
    rollout_weights: int  # FSDP: every unit gathered for generation (full weights)
    kv_cache: int
    rollout_work: int  # on top of the full KV cache: the last decode step's logits and cache growth (or the prefill)
    offloaded: int  # bytes held in host memory per process instead (FSDP CPU offload)

    @property
    def resident(self) -> int:
        return self.weights + self.compute_weights + self.gradients + self.optimizer + self.reference + self.head

    @property
    def train_peak(self) -> int:
        # Backward meets the logits' buffers first and the recomputed layers after they are freed: the larger counts.
        return (self.resident + self.gathered + self.accumulated_gradients + self.comm_buffers + self.activations
                + max(self.logits, self.recompute))

    @property
    def forward_peak(self) -> int:
        return self.resident + self.gathered + self.forward_work

    @property
    def step_peak(self) -> int:
        return self.resident + self.optimizer_work

    @property
    def rollout_peak(self) -> int:
        return self.resident + self.rollout_weights + self.kv_cache + self.rollout_work

    @property
    def peak(self) -> int:
        return max(self.train_peak, self.forward_peak, self.step_peak, self.rollout_peak)

    @property
    def peak_phase(self) -> str:
        phases = {"training": self.train_peak, "no-grad forward": self.forward_peak, "optimizer step": self.step_peak,
                  "rollout": self.rollout_peak}
        return max(phases, key=phases.__getitem__)

    def fits(self, gpu_bytes: float, overhead: int = OVERHEAD_BYTES) -> bool:
        return self.peak + overhead <= gpu_bytes


def estimate_memory(
    shape: ModelShape,
    *,
    precision: str = "fp32",
    parallel: str = "none",
    gpus: int = 1,
    micro_batch_size: int = 1,
    prompt_tokens: int = 512,
    response_tokens: int = 512,
    rollout_batch: int = 1,
    group_size: int = 1,
    gradient_checkpointing: bool = False,
    lora_r: int = 0,
    lora_targets: str | Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    reference: bool = False,
    offload: bool = False,
    accumulation_steps: int = 1,
    attention: str = "sdpa",
    padded: bool = True,
    temperature: float = 1.0,
    head_params: int = 0,
) -> MemoryPlan:
    """Estimate the memory per GPU of training ``shape`` with this trainer (formulas: docs/memory.md).

    micro_batch_size: rows per training forward/backward (``trainer.micro_batch_size``) and per no-grad
    log-prob forward. prompt_tokens / response_tokens: padded lengths (worst case: the longest prompt and
    ``rollout.max_new_tokens``). rollout_batch: sequences generated at once per GPU (``rollout.micro_batch_size``,
    at most ``prompts_per_step × n``); group_size: rollouts per prompt (prompts are prefilled once per group).
    accumulation_steps: micro-batches per optimizer step (FSDP then holds unsharded gradients in between).
    reference: a frozen reference model is kept (``algorithm.kl_coef > 0``). offload: FSDP CPU offload of the
    parameter, gradient and optimizer shards. padded: batches carry a padding mask (transformers then repeats
    the KV heads for SDPA). temperature: the training forward's logits temperature. head_params: CLIPO head size.
    """
    if precision not in BYTES:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel={parallel!r}: expected one of {', '.join(PARALLEL_MODES)}")
    for key, value in (("gpus", gpus), ("micro_batch_size", micro_batch_size), ("rollout_batch", rollout_batch),
                       ("group_size", group_size), ("accumulation_steps", accumulation_steps),
                       ("prompt_tokens", prompt_tokens), ("response_tokens", response_tokens)):
        if value < 1:
            raise ValueError(f"{key}={value}: must be >= 1")
    if offload and parallel != "fsdp":
        raise ValueError("offload=True needs parallel='fsdp' (CPU offload is FSDP's)")
    b = BYTES[precision]
    fsdp = parallel == "fsdp"
    shards = gpus if fsdp else 1
    lora = shape.lora_params(lora_r, lora_targets)
    base = shape.num_params()
    params = base + lora
    trainable = lora if lora_r > 0 else base
    layer_trainable = lora // shape.num_layers if lora_r > 0 else shape.layer_params()
    root_trainable = 0 if lora_r > 0 else shape.root_params()

    # Resident terms; FSDP shards the policy's parameters, gradients and AdamW state over the GPUs.
    weights = math.ceil(params * b.stored / shards)
    gradients = math.ceil(trainable * b.grads / shards)
    optimizer = math.ceil(trainable * b.optimizer / shards)
    offloaded = 0
    if offload:
        offloaded, weights, gradients, optimizer = weights + gradients + optimizer, 0, 0, 0
    compute_weights = b.compute_copy * (shape.matmul_params() + lora)
    reference_bytes = base * b.stored if reference else 0
    head = 16 * head_params

    # Training-phase buffers.
    gathered = accumulated = comm = 0
    if fsdp:
        gathered = (shape.root_params() + 2 * shape.layer_params() + 2 * lora // shape.num_layers) * b.stored
        gathered += (root_trainable + layer_trainable) * b.grads
        if accumulation_steps > 1:
            accumulated = trainable * b.grads
    elif parallel == "ddp":
        comm = trainable * b.grads

    seq = prompt_tokens + response_tokens
    tokens = micro_batch_size * seq
    per_layer = layer_activation_bytes(shape, precision, seq_len=seq, attention=attention, padded=padded)
    # Outside the layers: the final norm (float32 input, normalised output, lm_head input), RoPE's cos and sin,
    # and the 4-D attention mask every layer shares (rows × seq × seq in the compute dtype).
    outside = tokens * ((4 + b.residual + b.compute) * shape.hidden_size + 2 * b.residual * shape.head_size)
    outside += micro_batch_size * seq * seq * b.compute if padded else 0
    full = tokens * shape.num_layers * per_layer + outside
    checkpointed = tokens * shape.num_layers * b.residual * shape.hidden_size + outside
    activations = checkpointed if gradient_checkpointing else full
    recompute = tokens * per_layer if gradient_checkpointing else 0

    # Logits: the model returns [m, R + 1, V] (logits_to_keep); token_logp's logsumexp saves each chunk's float32
    # input (the logits themselves in fp32 at temperature 1, a copy otherwise), and backward holds
    # LOGITS_BACKWARD_COPIES logits-sized gradients in the logits' dtype plus a few float32 chunks.
    logit_elements = micro_batch_size * (response_tokens + 1) * shape.vocab_size
    chunk = min(LOGP_CHUNK_ELEMENTS // shape.vocab_size * shape.vocab_size, logit_elements)
    logits = (logit_elements * (4 + LOGITS_BACKWARD_COPIES * b.compute)
              + LOGITS_CHUNK_TEMPORARIES[b.compute] * 4 * chunk)

    # No-grad forward: one layer's working set, the logits, and token_logp's float32 chunk, softmax and product.
    layer_work = tokens * (b.compute * (3 * shape.intermediate_size + 2 * shape.q_dim) + 2 * b.residual * shape.hidden_size)
    forward_work = layer_work + logit_elements * b.compute + 3 * 4 * chunk
    if temperature != 1.0 and b.compute == 4:
        forward_work += 4 * chunk

    # AdamW step (foreach): one temporary the size of a moment, for this GPU's parameters (on the host with offload).
    optimizer_work = 0 if offload else math.ceil(trainable * b.optimizer // 2 / shards)

    # Rollout: the KV cache of every sequence generated at once (keys after RoPE are in the residual dtype). Its
    # peak is the last decode step: the full cache, the float32 sampling logits (logits, processed scores,
    # probabilities) and one layer's key or value tensor copied as the cache grows. The prefill (each distinct
    # prompt once when groups share it: one layer's MLP working set) comes when the cache still holds only
    # the prompts, so it counts only where it exceeds the response part of the cache.
    rollout_weights = params * b.stored if fsdp else 0
    kv_cache = shape.num_layers * shape.kv_dim * seq * rollout_batch * (b.residual + b.compute)
    decode = 3 * 4 * rollout_batch * shape.vocab_size + kv_cache // (2 * shape.num_layers)
    prefill_rows = rollout_batch // group_size if rollout_batch % group_size == 0 else rollout_batch
    prefill = prefill_rows * prompt_tokens * (b.compute * (3 * shape.intermediate_size + 2 * shape.q_dim)
                                              + 2 * b.residual * shape.hidden_size)
    rollout_work = max(decode, prefill - kv_cache * response_tokens // seq)

    return MemoryPlan(
        precision=precision, parallel=parallel, gpus=gpus, offload=offload,
        gradient_checkpointing=gradient_checkpointing, params=params, trainable_params=trainable, train_tokens=tokens,
        weights=weights, compute_weights=compute_weights, gradients=gradients, optimizer=optimizer,
        reference=reference_bytes, head=head, gathered=gathered, accumulated_gradients=accumulated,
        comm_buffers=comm, activations=activations, activations_full=full, activations_checkpointed=checkpointed,
        recompute=recompute, logits=logits, forward_work=forward_work, optimizer_work=optimizer_work,
        rollout_weights=rollout_weights, kv_cache=kv_cache,
        rollout_work=rollout_work, offloaded=offloaded)


# ------------------------------------------------------------------------------------------ what to change


@dataclass(frozen=True)
class Suggestion:
    """A change to the run (config overrides and/or CLI options) and the plan it gives."""

    change: str
    plan: MemoryPlan
    fits: bool


def suggest_changes(shape: ModelShape, settings: dict, gpu_bytes: float, *, max_gpus: int = 256,
                    overhead: int = OVERHEAD_BYTES) -> list[Suggestion]:
    """Changes that lower the peak of ``estimate_memory(shape, **settings)``, each with the plan it gives.

    Tried one at a time, first the changes that leave the training math as it is: FSDP, gradient
    checkpointing, FSDP CPU offload, the largest ``trainer.micro_batch_size`` whose training phase fits and the
    largest ``rollout.micro_batch_size`` whose rollout fits (halving); then bf16-mixed (from fp32), LoRA (r = 16),
    no reference model (``kl_coef=0``); and the fewest GPUs (powers of two, FSDP) that fit. When none fits on its
    own, they are stacked in that order (the GPU count left as it is; a change kept only if it lowers some phase;
    the batch sizes searched once more at the end) until the stack fits; the stack is the last suggestion.
    """
    current = estimate_memory(shape, **settings)

    def plan(delta: dict) -> MemoryPlan:
        return estimate_memory(shape, **{**settings, **delta})

    def fits(candidate: MemoryPlan) -> bool:
        return candidate.fits(gpu_bytes, overhead)

    def largest(key: str, base: dict) -> dict | None:
        """The largest halving of settings[key] whose phase (training for the micro-batch, rollout for the
        rollout batch) fits on top of ``base``; None when even 1 does not, or nothing is left to halve."""
        def phase_fits(candidate: MemoryPlan) -> bool:
            peak = candidate.rollout_peak if key == "rollout_batch" else max(candidate.train_peak, candidate.forward_peak)
            return peak + overhead <= gpu_bytes

        sizes = [v for v in dict.fromkeys(settings.get(key, 1) // 2 ** k for k in range(1, 20)) if v >= 1]
        value = next((v for v in sizes if phase_fits(plan({**base, key: v}))), None)
        return None if value is None else {key: value}

    gpus = settings.get("gpus", 1)
    # (config overrides, estimator settings); None: a batch size, searched on top of what is stacked so far.
    # Changes that leave the training math as it is come first; kl_coef=0 and LoRA change the algorithm.
    batch_sizes: list[tuple[tuple[str, ...], dict | None]] = [
        (("trainer.micro_batch_size={micro_batch_size}",), None), (("rollout.micro_batch_size={rollout_batch}",), None)]
    steps: list[tuple[tuple[str, ...], dict | None]] = []
    if gpus > 1 and settings.get("parallel") != "fsdp":
        steps.append((("trainer.parallel=fsdp",), {"parallel": "fsdp"}))
    if not settings.get("gradient_checkpointing"):
        steps.append((("model.gradient_checkpointing=true",), {"gradient_checkpointing": True}))
    if gpus > 1 and not settings.get("offload"):
        steps.append((("trainer.parallel=fsdp", "trainer.fsdp_offload=true"), {"parallel": "fsdp", "offload": True}))
    steps += batch_sizes
    if settings.get("precision", "fp32") == "fp32":
        steps.append((("trainer.precision=bf16-mixed",), {"precision": "bf16-mixed"}))
    if not settings.get("lora_r"):
        steps.append((("model.lora_r=16",), {"lora_r": 16}))
    if settings.get("reference"):
        steps.append((("algorithm.kl_coef=0",), {"reference": False}))

    def resolve(labels: tuple[str, ...], delta: dict | None, base: dict) -> tuple[tuple[str, ...], dict] | None:
        if delta is None:
            delta = largest("micro_batch_size" if labels[0].startswith("trainer.") else "rollout_batch", base)
            if delta is None:
                return None
        return tuple(label.format(**delta) for label in labels), delta

    out: list[Suggestion] = []
    for labels, delta in steps:
        resolved = resolve(labels, delta, {})
        if resolved is not None and plan(resolved[1]).peak < current.peak:
            candidate = plan(resolved[1])
            out.append(Suggestion(" ".join(resolved[0]), candidate, fits(candidate)))
    counts = [n for n in (2 ** k for k in range(1, 12)) if gpus < n <= max_gpus]
    fewest = next((n for n in counts if fits(plan({"parallel": "fsdp", "gpus": n}))), None)
    if fewest is not None:
        out.append(Suggestion(f"--gpus {fewest} trainer.parallel=fsdp", plan({"parallel": "fsdp", "gpus": fewest}), True))
    if out and not any(s.fits for s in out):
        stacked: dict = {}
        overrides: dict[str, str] = {}  # config key -> "key=value", so a re-searched batch size replaces its first value
        for labels, delta in steps + batch_sizes:  # the batch sizes once more, on top of everything
            resolved = resolve(labels, delta, stacked)
            if resolved is None or _phase_sum(plan({**stacked, **resolved[1]})) >= _phase_sum(plan(stacked)):
                continue  # lowers no phase on top of the stack so far
            overrides.update({label.split("=")[0]: label for label in resolved[0]})
            stacked.update(resolved[1])
            if fits(plan(stacked)):
                break
        if len(overrides) > 1:
            out.append(Suggestion(" ".join(overrides.values()), plan(stacked), fits(plan(stacked))))
    return out


def _phase_sum(plan: MemoryPlan) -> int:
    return plan.train_peak + plan.forward_peak + plan.step_peak + plan.rollout_peak
