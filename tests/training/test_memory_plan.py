"""The memory estimator (clipo/training/memory.py): hand-derived byte counts on a tiny shape, parameter counts against
built models and the published Qwen2.5 sizes, sharding, and the suggestions. Formulas: docs/memory.md."""
import dataclasses

import pytest

from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer
from clipo.training.memory import (
    KNOWN_SHAPES,
    OVERHEAD_BYTES,
    PRECISIONS,
    ModelShape,
    estimate_memory,
    known_shape,
    layer_activation_bytes,
    shape_from_config,
    suggest_changes,
)

#: h=8, 2 layers, 2 heads of 4 (1 KV head), MLP 16, vocab 10, untied, q/k/v bias (Qwen2).
TINY = ModelShape(hidden_size=8, num_layers=2, heads=2, kv_heads=1, intermediate_size=16, vocab_size=10,
                  tie_word_embeddings=False)
# One layer by hand: q 8·8 + 8, k 8·4 + 4, v 8·4 + 4, o 8·8, MLP 3·8·16, two norms 2·8.
LAYER = (64 + 8) + (32 + 4) + (32 + 4) + 64 + 384 + 16  # 608
PARAMS = 2 * LAYER + 10 * 8 * 2 + 8  # layers, embedding + output head, final norm = 1384
MATMUL = 2 * (LAYER - 16) + 10 * 8  # what autocast copies: projections and the output head = 1264


def plan(**kwargs):
    return estimate_memory(TINY, **{"micro_batch_size": 2, "prompt_tokens": 3, "response_tokens": 5, **kwargs})


def test_parameter_count_by_hand():
    assert TINY.layer_params() == LAYER
    assert TINY.num_params() == PARAMS
    assert TINY.matmul_params() == MATMUL
    tied = dataclasses.replace(TINY, tie_word_embeddings=True)
    assert tied.num_params() == PARAMS - 80


@pytest.mark.parametrize(("precision", "weights", "copy", "grads", "optimizer"), [
    ("fp32", 4 * PARAMS, 0, 4 * PARAMS, 8 * PARAMS),
    # fp32 master weights (the stored parameters) + bf16 compute copies of the matmul weights; fp32 grads and moments
    ("bf16-mixed", 4 * PARAMS, 2 * MATMUL, 4 * PARAMS, 8 * PARAMS),
    ("bf16", 2 * PARAMS, 0, 2 * PARAMS, 4 * PARAMS),
])
def test_resident_bytes_per_precision(precision, weights, copy, grads, optimizer):
    p = plan(precision=precision)
    assert (p.weights, p.compute_weights, p.gradients, p.optimizer) == (weights, copy, grads, optimizer)
    if precision == "bf16-mixed":  # master + two moments = 12 bytes per parameter, gradients 4
        assert p.weights + p.optimizer == 12 * PARAMS and p.gradients == 4 * PARAMS


def test_fsdp_shards_params_grads_and_optimizer_but_not_the_rest():
    none = plan(precision="bf16-mixed", reference=True)
    fsdp = plan(precision="bf16-mixed", reference=True, parallel="fsdp", gpus=4)
    assert (fsdp.weights, fsdp.gradients, fsdp.optimizer) == (PARAMS, PARAMS, 2 * PARAMS)  # 4, 4, 8 B / 4 GPUs
    assert fsdp.compute_weights == none.compute_weights == 2 * MATMUL  # autocast casts the gathered weights
    assert fsdp.reference == none.reference == 4 * PARAMS  # the trainer's reference is a full replica
    # root unit (embedding, head, final norm) + two layers gathered in fp32, + their unsharded fp32 gradients
    root = 10 * 8 * 2 + 8
    assert fsdp.gathered == (root + 2 * LAYER) * 4 + (root + LAYER) * 4
    assert fsdp.rollout_weights == 4 * PARAMS and none.rollout_weights == 0
    assert fsdp.accumulated_gradients == 0
    assert plan(parallel="fsdp", gpus=4, accumulation_steps=3).accumulated_gradients == 4 * PARAMS


def test_ddp_replicates_and_adds_gradient_buckets():
    ddp = plan(parallel="ddp", gpus=8)
    assert ddp.weights == 4 * PARAMS and ddp.comm_buffers == ddp.gradients == 4 * PARAMS


def test_offload_moves_the_shards_to_the_host():
    p = plan(parallel="fsdp", gpus=2, offload=True)
    assert p.weights == p.gradients == p.optimizer == 0
    assert p.offloaded == (4 + 4 + 8) * PARAMS // 2
    with pytest.raises(ValueError, match="fsdp"):
        plan(offload=True)


def test_layer_activations_by_hand():
    # fp32, no padding mask (k and v keep their one KV head of 4): two norms × (input 4 + normalised 4 + matmul
    # input 4) × h, q/k/v/output 4 × (8 + 4 + 4 + 8), log-sum-exp 4 × 2 heads, MLP 4 × 4 × 16.
    assert layer_activation_bytes(TINY, "fp32", seq_len=8, padded=False) == 2 * 12 * 8 + 4 * 24 + 8 + 256
    # a padding mask repeats the KV heads: k and v become q-sized
    assert layer_activation_bytes(TINY, "fp32", seq_len=8, padded=True) == 2 * 12 * 8 + 4 * 32 + 8 + 256
    # bf16-mixed: fp32 input and normalised output; each projection casts its own bf16 input (3 + 2 copies)
    assert layer_activation_bytes(TINY, "bf16-mixed", seq_len=8, padded=False) == 2 * 8 * 8 + 5 * 2 * 8 + 2 * 24 + 8 + 128
    assert layer_activation_bytes(TINY, "bf16", seq_len=8, padded=False) == 2 * 6 * 8 + 2 * 2 * 8 + 2 * 24 + 8 + 128
    # eager attention keeps the heads × seq softmax per token (fp32)
    assert (layer_activation_bytes(TINY, "fp32", seq_len=8, attention="eager", padded=False)
            - layer_activation_bytes(TINY, "fp32", seq_len=8, padded=False)) == 2 * 8 * 4


def test_checkpointing_keeps_each_layer_input_and_recomputes_one_layer():
    full, ckpt = plan(), plan(gradient_checkpointing=True)
    tokens = 2 * (3 + 5)
    per_layer = layer_activation_bytes(TINY, "fp32", seq_len=8)
    assert full.activations - ckpt.activations == tokens * 2 * (per_layer - 4 * 8)
    assert ckpt.recompute == tokens * per_layer and full.recompute == 0
    assert ckpt.activations_full == full.activations and full.activations_checkpointed == ckpt.activations


def test_logits_and_kv_cache_by_hand():
    p = plan()
    elements = 2 * (5 + 1) * 10  # logits_to_keep = response + 1; one float32 chunk holds them all
    assert p.logits == elements * (4 + 2 * 4) + 2 * 4 * elements
    rows = 6
    for precision, per_element in (("fp32", 4 + 4), ("bf16-mixed", 4 + 2), ("bf16", 2 + 2)):
        # layers × (K + V) × kv heads × head size × (prompt + response) × rows; keys after RoPE in the residual dtype
        assert plan(precision=precision, rollout_batch=rows).kv_cache == 2 * 4 * (3 + 5) * rows * per_element


def test_adamw_step_temporary_is_one_moment():
    assert plan().optimizer_work == 4 * PARAMS and plan(precision="bf16").optimizer_work == 2 * PARAMS
    assert plan(parallel="fsdp", gpus=4).optimizer_work == PARAMS
    assert plan(parallel="fsdp", gpus=4, offload=True).optimizer_work == 0  # the step runs on the host
    p = plan()
    assert p.step_peak == p.resident + p.optimizer_work


def test_peak_is_the_largest_phase_and_fits_keeps_the_overhead():
    p = plan(rollout_batch=64)
    assert p.peak == max(p.train_peak, p.forward_peak, p.step_peak, p.rollout_peak)
    assert p.fits(p.peak + OVERHEAD_BYTES) and not p.fits(p.peak + OVERHEAD_BYTES - 1)


def test_lora_trains_only_the_adapters():
    p = plan(lora_r=2)
    adapters = 2 * 2 * ((8 + 8) + (8 + 4) + (8 + 4) + (8 + 8))  # layers × r × (in + out) for q, k, v, o
    assert TINY.lora_params(2) == adapters
    assert p.trainable_params == adapters and p.params == PARAMS + adapters
    assert p.gradients == 4 * adapters and p.optimizer == 8 * adapters


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="precision"):
        plan(precision="fp8")
    with pytest.raises(ValueError, match="parallel"):
        plan(parallel="tp")
    with pytest.raises(ValueError, match="micro_batch_size"):
        plan(micro_batch_size=0)
    with pytest.raises(ValueError, match="LoRA target"):
        TINY.lora_params(4, ["qkv"])


@pytest.mark.parametrize(("arch", "tied"), [("qwen2", False), ("qwen2", True), ("llama", False), ("llama", True)])
def test_parameter_count_equals_a_built_model(arch, tied):
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, arch=arch, hidden_size=48, num_layers=3, heads=6, kv_heads=2,
                             intermediate=80, tie_word_embeddings=tied)
    shape = shape_from_config(model.config)
    assert shape.qkv_bias == (arch == "qwen2") and shape.tie_word_embeddings == tied
    assert shape.num_params() == sum(p.numel() for p in model.parameters())


def test_known_qwen25_shapes_give_the_published_parameter_counts():
    published = {"0.5B": 494_032_768, "1.5B": 1_543_714_304, "3B": 3_085_938_688, "7B": 7_615_616_512,
                 "14B": 14_770_033_664, "32B": 32_763_876_352}
    assert {name.split("-")[-1]: shape.num_params() for name, shape in KNOWN_SHAPES.items()} == published
    assert known_shape("Qwen/Qwen2.5-7B-Instruct").num_params() == published["7B"]
    assert known_shape("qwen2.5-3b-instruct").tie_word_embeddings
    assert known_shape("Qwen/Qwen2.5-7B-Instruct").name == "Qwen/Qwen2.5-7B-Instruct"
    assert known_shape("Qwen/Qwen3-8B") is None and known_shape("./my-model") is None


def test_moe_configs_are_refused():
    class MoE:
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size = 8, 2, 2, 16, 10
        num_experts = 8

    with pytest.raises(ValueError, match="mixture-of-experts"):
        shape_from_config(MoE())


def test_suggestions_lower_the_peak_and_one_fits():
    settings = dict(precision="fp32", parallel="ddp", gpus=4, micro_batch_size=8, prompt_tokens=64,
                    response_tokens=256, rollout_batch=64, group_size=8, reference=True, accumulation_steps=4)
    current = estimate_memory(TINY, **settings)
    budget = current.peak // 2 + OVERHEAD_BYTES
    suggestions = suggest_changes(TINY, settings, budget)
    assert suggestions and all(s.plan.peak < current.peak for s in suggestions)
    assert any(s.fits for s in suggestions)
    assert all(s.fits == s.plan.fits(budget) for s in suggestions)


def test_precision_names_match_the_trainer():
    precision = pytest.importorskip("clipo.training.precision")
    # the planner plans resolved precisions; the trainer also takes 'auto' (bf16-mixed on a bf16-capable GPU)
    assert set(PRECISIONS) == set(precision.PRECISIONS) - {"auto"}
