"""The tiny tokenizer and model builders that every other test stands on."""

import pytest
import torch

from clipo.models.tiny import TINY_WORD_TOKENS, add_logit_bias, build_tiny_model


def test_tokenizer_round_trips_text(tokenizer):
    text = "The answer is 12*(3+4) = 84.\n  <answer>84</answer> ~`|"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    # Multi-character words are single tokens (matched before the character split).
    for word in TINY_WORD_TOKENS:
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1


def test_tokenizer_special_tokens_and_padding(tokenizer):
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["1", "123"], padding=True, add_special_tokens=False, return_tensors="pt")
    assert batch["input_ids"][0, :2].tolist() == [tokenizer.pad_token_id] * 2
    assert batch["attention_mask"].tolist() == [[0, 0, 1], [1, 1, 1]]


def test_chat_template_is_qwen_style(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    # Skipping special tokens removes the chat markers only.
    assert tokenizer.decode(ids, skip_special_tokens=True) == "system\nBe brief.\nuser\n2+2?\nassistant\n"


@pytest.mark.parametrize("arch,tied", [("qwen2", False), ("llama", True)])
def test_tiny_model_shapes_and_seed(tokenizer, arch, tied):
    model = build_tiny_model(tokenizer, arch=arch, tie_word_embeddings=tied, seed=3)
    again = build_tiny_model(tokenizer, arch=arch, tie_word_embeddings=tied, seed=3)
    other = build_tiny_model(tokenizer, arch=arch, tie_word_embeddings=tied, seed=4)
    assert model.config.model_type == arch and model.config.vocab_size == len(tokenizer)
    assert (model.get_input_embeddings().weight is model.get_output_embeddings().weight) == tied
    ids = torch.tensor([[5, 6, 7]])
    logits = model(input_ids=ids).logits
    assert logits.shape == (1, 3, len(tokenizer))
    assert torch.equal(logits, again(input_ids=ids).logits)
    assert not torch.equal(logits, other(input_ids=ids).logits)


def test_building_a_model_leaves_the_global_rng_alone(tokenizer):
    state = torch.get_rng_state()
    build_tiny_model(tokenizer)
    assert torch.equal(state, torch.get_rng_state())


def test_unknown_arch_is_rejected(tokenizer):
    with pytest.raises(ValueError, match="arch"):
        build_tiny_model(tokenizer, arch="gpt9")


def test_logit_bias_shifts_chosen_logits_and_can_be_removed(tokenizer, model):
    ids = torch.tensor([[5, 6, 7]])
    before = model(input_ids=ids).logits
    handle = add_logit_bias(model, {tokenizer.eos_token_id: 2.5})
    shifted = model(input_ids=ids).logits
    expected = before.clone()
    expected[..., tokenizer.eos_token_id] += 2.5
    torch.testing.assert_close(shifted, expected)
    handle.remove()
    assert torch.equal(model(input_ids=ids).logits, before)
