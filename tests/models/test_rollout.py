"""HFGenerateEngine: layout, masks, EOS/stop/truncation, groups, determinism, and greedy exactness."""

import pytest
import torch

import clipo.rollout.hf as hf_module
from clipo.models.compat import shared_prompt_cache
from clipo.models.forward import policy_forward
from clipo.models.tiny import add_logit_bias, build_tiny_tokenizer
from clipo.rollout import HFGenerateEngine, RolloutBatch, SamplingParams
from clipo.rollout.stopping import cut_response_text


def check_layout(batch, tokenizer, params, num_prompts):
    """Invariants every RolloutBatch from HFGenerateEngine must satisfy."""
    n_rows = num_prompts * params.n
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    assert batch.num_rollouts == n_rows and batch.response_ids.shape == batch.response_mask.shape
    # Groups are contiguous: prompt b owns rows b*n .. b*n+n-1.
    assert batch.group_ids.tolist() == [b for b in range(num_prompts) for _ in range(params.n)]
    assert batch.group_ids.dtype == torch.int64 and torch.equal(batch.prompt_index, batch.group_ids)
    # Prompts are left-padded, identical within a group.
    assert torch.all(batch.prompt_mask[:, -1] == 1)
    assert torch.all(batch.prompt_ids[batch.prompt_mask == 0] == pad)
    for b in range(num_prompts):
        rows = slice(b * params.n, (b + 1) * params.n)
        assert (batch.prompt_ids[rows] == batch.prompt_ids[b * params.n]).all()
    lengths = batch.response_lengths
    assert lengths.max() == batch.response_ids.shape[1] and lengths.min() >= 1
    for i in range(n_rows):
        length = int(lengths[i])
        tokens = batch.response_ids[i, :length].tolist()
        # The mask is a prefix of ones; everything after it is padding.
        assert batch.response_mask[i, :length].all() and not batch.response_mask[i, length:].any()
        assert (batch.response_ids[i, length:] == pad).all()
        reason = batch.finish_reasons[i]
        assert batch.truncated[i].item() == (reason == "length")
        assert eos not in tokens[:-1]  # nothing after the first EOS is kept
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        if reason == "eos":
            assert tokens[-1] == eos and batch.response_texts[i] == text
        elif reason == "length":
            assert length == params.max_new_tokens and batch.response_texts[i] == text
        else:  # a stop string ends within the last token, and only there
            assert any(s in text for s in params.stop)
            shorter = tokenizer.decode(tokens[:-1], skip_special_tokens=True)
            assert not any(s in shorter for s in params.stop)
            assert batch.response_texts[i] == cut_response_text(text, params.stop,
                                                                include_stop=params.include_stop_str_in_output)


def test_sampled_batch_layout_eos_and_truncation(tokenizer, eos_model, prompts):
    params = SamplingParams(n=6, max_new_tokens=8, seed=0)
    batch = HFGenerateEngine(eos_model, tokenizer).generate(prompts, params)
    check_layout(batch, tokenizer, params, len(prompts))
    # With p(EOS) ~ 0.16 per step both endings occur among 18 rollouts.
    assert {"eos", "length"} <= set(batch.finish_reasons)


def test_micro_batched_generation_keeps_the_layout(tokenizer, eos_model, prompts):
    params = SamplingParams(n=4, max_new_tokens=6, seed=1)
    batch = HFGenerateEngine(eos_model, tokenizer, micro_batch_size=5).generate(prompts, params)
    check_layout(batch, tokenizer, params, len(prompts))


def test_pad_equal_to_eos_is_handled(eos_model, prompts):
    # SmolLM2 pads with its EOS token: rows that finished early are then followed by "EOS" padding.
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    params = SamplingParams(n=4, max_new_tokens=8, seed=0)
    batch = HFGenerateEngine(eos_model, tokenizer).generate(prompts, params)
    check_layout(batch, tokenizer, params, len(prompts))


@pytest.mark.parametrize("include", [True, False])
def test_stop_strings(tokenizer, model, prompts, include):
    # Make "x" frequent so that "xx" shows up, and the word token "answer" frequent so that the stop
    # string "nsw" ends in the middle of a token.
    x, answer = tokenizer.convert_tokens_to_ids("x"), tokenizer.convert_tokens_to_ids("answer")
    add_logit_bias(model, {x: 2.5, answer: 1.5, tokenizer.eos_token_id: 1.0})
    params = SamplingParams(n=6, max_new_tokens=12, stop=("xx", "nsw"), include_stop_str_in_output=include, seed=3)
    batch = HFGenerateEngine(model, tokenizer).generate(prompts, params)
    check_layout(batch, tokenizer, params, len(prompts))
    stopped = [i for i, r in enumerate(batch.finish_reasons) if r == "stop"]
    assert stopped, "expected some rollouts to hit a stop string"
    mid_token = [i for i in stopped if batch.response_ids[i, batch.response_lengths[i] - 1] == answer]
    assert mid_token, "expected a stop string ending inside the token 'answer'"
    for i in mid_token:
        assert batch.response_texts[i].endswith("answ" if include else "a")


def test_stop_strings_never_match_the_prompt(tokenizer, model, prompts):
    # Every prompt ends with "assistant\n"; only the response may trigger the stop string.
    params = SamplingParams(n=2, max_new_tokens=5, stop=("assistant\n",), seed=0)
    batch = HFGenerateEngine(model, tokenizer).generate(prompts, params)
    assert all(r != "stop" for r in batch.finish_reasons)
    assert batch.response_lengths.tolist() == [5] * len(batch.finish_reasons)


def manual_greedy(model, tokenizer, prompt, max_new_tokens):
    """Token-by-token argmax on the unpadded prompt, recomputing the full forward each step."""
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(input_ids=ids).logits[0, -1].argmax())
            out.append(token)
            if token == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


@pytest.mark.parametrize("micro_batch_size", [None, 2])
def test_greedy_equals_manual_argmax_loop(tokenizer, model, prompts, micro_batch_size):
    # A small EOS bias makes EOS the argmax at some steps, so both endings are exercised.
    add_logit_bias(model, {tokenizer.eos_token_id: 0.35})
    params = SamplingParams(n=2, max_new_tokens=10, temperature=0.0)
    engine = HFGenerateEngine(model, tokenizer, micro_batch_size=micro_batch_size)
    batch = engine.generate(prompts, params)
    again = engine.generate(prompts, params)
    assert torch.equal(batch.response_ids, again.response_ids)
    for b, prompt in enumerate(prompts):
        expected = manual_greedy(model, tokenizer, prompt, params.max_new_tokens)
        for row in (2 * b, 2 * b + 1):
            length = int(batch.response_lengths[row])
            assert batch.response_ids[row, :length].tolist() == expected


def test_greedy_tokens_are_the_argmax_of_policy_forward(tokenizer, model, prompts):
    # End-to-end alignment: the rollout layout fed to policy_forward gives, at every greedy token, the
    # largest log-prob of its position.
    params = SamplingParams(n=1, max_new_tokens=7, temperature=0.0)
    batch = HFGenerateEngine(model, tokenizer).generate(prompts, params)
    out = policy_forward(model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.response_mask,
                         compute_entropy=True)
    # The best log-prob per position, from a plain teacher-forced pass over the concatenated layout.
    ids = torch.cat([batch.prompt_ids, batch.response_ids], 1)
    mask = torch.cat([batch.prompt_mask, batch.response_mask], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits
    p = batch.prompt_ids.shape[1]
    best = torch.log_softmax(logits[:, p - 1:-1].float(), -1).max(-1).values
    torch.testing.assert_close(out.logp * batch.response_mask, best * batch.response_mask, atol=1e-5, rtol=0)


def test_seeded_sampling_is_reproducible_and_leaves_the_rng_alone(tokenizer, eos_model, prompts):
    engine = HFGenerateEngine(eos_model, tokenizer)
    state = torch.get_rng_state()
    first = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=8, seed=7))
    assert torch.equal(state, torch.get_rng_state())
    second = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=8, seed=7))
    other = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=8, seed=8))
    assert torch.equal(first.response_ids, second.response_ids) and first.response_texts == second.response_texts
    assert not torch.equal(first.response_ids, other.response_ids)
    # Rollouts of one prompt differ from each other (sampling, not n copies of one sample).
    assert len(set(first.response_texts[:4])) > 1


def test_checkpoint_generation_defaults_do_not_leak(tokenizer, eos_model, prompts):
    params = SamplingParams(n=3, max_new_tokens=8, seed=5)
    clean = HFGenerateEngine(eos_model, tokenizer).generate(prompts, params)
    # What a Qwen generation_config.json carries; none of it may change RL sampling.
    config = eos_model.generation_config
    config.top_k, config.top_p, config.repetition_penalty, config.temperature = 1, 0.1, 5.0, 0.01
    config.suppress_tokens = [tokenizer.eos_token_id]
    dirty = HFGenerateEngine(eos_model, tokenizer).generate(prompts, params)
    assert torch.equal(clean.response_ids, dirty.response_ids)
    assert eos_model.generation_config.repetition_penalty == 5.0  # restored afterwards


def test_eval_mode_during_generation_and_train_mode_restored(tokenizer, model, prompts):
    seen = []
    model.register_forward_pre_hook(lambda module, _args: seen.append(module.training))
    model.train()
    HFGenerateEngine(model, tokenizer).generate(prompts[:1], SamplingParams(max_new_tokens=3, seed=0))
    assert seen and not any(seen) and model.training


def test_sampling_params_validation():
    with pytest.raises(ValueError, match="n="):
        SamplingParams(n=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1.0)
    assert SamplingParams(stop="</answer>").stop == ("</answer>",)
    assert SamplingParams(temperature=0).greedy


def test_select_and_concat(tokenizer, eos_model, prompts):
    engine = HFGenerateEngine(eos_model, tokenizer)
    a = engine.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=4, seed=0))
    b = engine.generate(prompts[2:], SamplingParams(n=3, max_new_tokens=9, seed=1))
    both = RolloutBatch.concat([a, b])
    assert both.num_rollouts == 7
    assert both.group_ids.tolist() == [0, 0, 1, 1, 2, 2, 2]  # b's group 0 became 2
    assert both.response_texts == a.response_texts + b.response_texts
    for src, rows in ((a, range(0, 4)), (b, range(4, 7))):
        for j, i in enumerate(rows):
            length = int(src.response_lengths[j])
            assert both.response_ids[i, :length].tolist() == src.response_ids[j, :length].tolist()
            assert both.response_lengths[i] == length
            prompt = src.prompt_ids[j][src.prompt_mask[j].bool()]
            assert torch.equal(both.prompt_ids[i][both.prompt_mask[i].bool()], prompt)
    picked = both.select([6, 0])
    assert picked.group_ids.tolist() == [2, 0] and picked.response_texts == [both.response_texts[6], both.response_texts[0]]


def test_cut_response_text_uses_the_first_completed_stop_string():
    assert cut_response_text("xxabcyy", ("abc", "b"), include_stop=True) == "xxab"
    assert cut_response_text("xxabcyy", ("abc", "b"), include_stop=False) == "xxa"
    assert cut_response_text("xxabcyy", ("bc", "abc"), include_stop=False) == "xx"
    assert cut_response_text("no stop", ("abc",), include_stop=True) == "no stop"


def test_rollout_tensors_are_ordinary_tensors(tokenizer, eos_model, prompts):
    # Not inference tensors: the trainer edits masks in place and feeds the ids to a forward with grad.
    batch = HFGenerateEngine(eos_model, tokenizer).generate(prompts, SamplingParams(n=2, max_new_tokens=4, seed=0))
    assert not any(t.is_inference() for t in (batch.prompt_ids, batch.prompt_mask, batch.response_ids,
                                              batch.response_mask, batch.truncated, batch.group_ids))
    mask = batch.response_mask.clone()
    batch.response_mask[0] = 0  # in place, as DAPO's overlong filter would
    eos_model.train()
    out = policy_forward(eos_model, batch.prompt_ids, batch.prompt_mask, batch.response_ids, mask, with_grad=True)
    out.logp.sum().backward()


def test_top_k_one_sampling_is_greedy(tokenizer, eos_model, prompts):
    # Proof that the sampling knobs reach generate: keeping only the top token turns sampling into argmax.
    engine = HFGenerateEngine(eos_model, tokenizer)
    greedy = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, temperature=0.0))
    top1 = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=6, temperature=1.3, top_k=1, seed=0))
    assert torch.equal(greedy.response_ids, top1.response_ids)


def test_generation_stops_when_every_row_is_done(tokenizer, model, prompts):
    add_logit_bias(model, {tokenizer.eos_token_id: 20.0})  # EOS is (almost surely) the first token
    batch = HFGenerateEngine(model, tokenizer).generate(prompts, SamplingParams(n=4, max_new_tokens=50, seed=0))
    assert batch.response_ids.shape[1] == 1 and batch.finish_reasons == ["eos"] * 12
    assert batch.response_texts == [""] * 12 and not batch.truncated.any()


def test_find_response_end_by_hand(tokenizer):
    from clipo.rollout.stopping import find_response_end

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    body = tokenizer("ab=xxc", add_special_tokens=False)["input_ids"]  # one token per character
    tokens = body + [eos, pad, pad]
    end = lambda toks, **kw: find_response_end(toks, eos_ids={eos}, tokenizer=tokenizer, **kw)  # noqa: E731
    assert end(tokens, stop=()) == (7, "eos")  # 6 characters + EOS
    assert end(tokens, stop=("xx",)) == (5, "stop")  # "ab=xx" completes the stop string at token 5
    assert end(tokens, stop=("x", "b=")) == (3, "stop")  # "b=" completes first
    assert end(body, stop=("zz",)) == (6, "length")
    # pad == eos (SmolLM2): after a stop the row is padded with "EOS"; the criterion's record bounds the search.
    assert end(body[:3] + [eos, eos], stop=("=",), stopped_at=2) == (3, "stop")


# ---- Shared-prompt prefill (HFGenerateEngine(share_prompt_prefill=True), the default) ----

LONG_QUESTIONS = ["1+1?", "What is the answer to 23*7?", "Hi", "A much longer question, so that the prompts differ a lot?"]


def _count_prefills(engine, monkeypatch):
    """Count the engine's shared-prompt prefills and the rows each one prefilled."""
    calls = []
    real = hf_module.shared_prompt_cache

    def spy(model, ids, mask, positions, repeats):
        calls.append((ids.shape[0], repeats))
        return real(model, ids, mask, positions, repeats)

    monkeypatch.setattr(hf_module, "shared_prompt_cache", spy)
    return calls


@pytest.mark.parametrize(("n", "micro_batch_size", "num_prompts"),
                         [(2, None, 3), (3, None, 4), (4, 4, 4), (4, 8, 3), (3, 5, 4), (5, 2, 2), (8, None, 4)])
def test_shared_prefill_greedy_is_token_identical(tokenizer, model, monkeypatch, n, micro_batch_size, num_prompts):
    # Several prompt lengths (1-4 distinct prompts of different lengths, left-padded), group sizes, and
    # micro-batches that hold whole groups (shared), split groups (per-row fallback) or a mix of both.
    add_logit_bias(model, {tokenizer.eos_token_id: 0.35})  # some rows end early
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in LONG_QUESTIONS[:num_prompts]]
    params = SamplingParams(n=n, max_new_tokens=12, temperature=0.0)
    shared_engine = HFGenerateEngine(model, tokenizer, micro_batch_size=micro_batch_size)
    assert shared_engine.share_prompt_prefill  # the default
    calls = _count_prefills(shared_engine, monkeypatch)
    shared = shared_engine.generate(prompts, params)
    plain = HFGenerateEngine(model, tokenizer, micro_batch_size=micro_batch_size,
                             share_prompt_prefill=False).generate(prompts, params)
    step = micro_batch_size or n * num_prompts
    expected = [(min(lo + step, n * num_prompts) - lo) // n for lo in range(0, n * num_prompts, step)
                if lo % n == 0 and min(lo + step, n * num_prompts) % n == 0]
    assert [c[0] for c in calls] == expected and all(c[1] == n for c in calls)
    assert torch.equal(shared.response_ids, plain.response_ids)
    assert torch.equal(shared.response_mask, plain.response_mask)
    assert shared.finish_reasons == plain.finish_reasons and shared.response_texts == plain.response_texts
    assert torch.equal(shared.prompt_ids, plain.prompt_ids) and torch.equal(shared.truncated, plain.truncated)
    check_layout(shared, tokenizer, params, num_prompts)
    # And both equal a manual argmax loop, prompt by prompt.
    for b, prompt in enumerate(prompts):
        want = manual_greedy(model, tokenizer, prompt, params.max_new_tokens)
        for row in range(b * n, (b + 1) * n):
            assert shared.response_ids[row, :int(shared.response_lengths[row])].tolist() == want


def test_shared_prefill_cache_equals_the_unshared_prefill(tokenizer, model, prompts):
    # The repeated cache holds, for every row, the keys/values a per-row prefill computes (up to fp rounding).
    from transformers import DynamicCache

    enc = tokenizer(prompts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
    ids, mask = enc["input_ids"].repeat_interleave(3, 0), enc["attention_mask"].repeat_interleave(3, 0)
    with torch.inference_mode():
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        shared = shared_prompt_cache(model, ids[::3, :-1], mask[::3, :-1], positions[::3, :-1], 3)
        full = DynamicCache(config=model.config)
        model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1], cache=full,
              use_cache=True)
    valid = mask[:, :-1].bool()[:, None, :, None]  # keys/values of padding positions are never attended
    for a, b in zip(shared.layers, full.layers):
        assert a.keys.shape == b.keys.shape
        torch.testing.assert_close(a.keys * valid, b.keys * valid, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.values * valid, b.values * valid, atol=1e-5, rtol=0)


@pytest.mark.parametrize("micro_batch_size", [None, 6, 4])
def test_shared_prefill_sampled_with_seed(tokenizer, eos_model, prompts, micro_batch_size):
    # Same seed, same batch shape of every decoding step -> the same RNG draws. On this CPU build the logits
    # agree bit for bit and so do the tokens; the layout invariants hold either way.
    params = SamplingParams(n=6, max_new_tokens=10, seed=4)
    shared = HFGenerateEngine(eos_model, tokenizer, micro_batch_size=micro_batch_size).generate(prompts, params)
    plain = HFGenerateEngine(eos_model, tokenizer, micro_batch_size=micro_batch_size,
                             share_prompt_prefill=False).generate(prompts, params)
    check_layout(shared, tokenizer, params, len(prompts))
    assert torch.equal(shared.response_ids, plain.response_ids) and shared.finish_reasons == plain.finish_reasons


def test_shared_prefill_keeps_stop_strings_and_pad_equal_to_eos(model, prompts):
    tokenizer = build_tiny_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    x, answer = tokenizer.convert_tokens_to_ids("x"), tokenizer.convert_tokens_to_ids("answer")
    add_logit_bias(model, {x: 2.5, answer: 1.5, tokenizer.eos_token_id: 1.0})
    params = SamplingParams(n=6, max_new_tokens=12, stop=("xx", "nsw"), seed=3)
    shared = HFGenerateEngine(model, tokenizer).generate(prompts, params)
    plain = HFGenerateEngine(model, tokenizer, share_prompt_prefill=False).generate(prompts, params)
    check_layout(shared, tokenizer, params, len(prompts))
    assert "stop" in shared.finish_reasons
    assert torch.equal(shared.response_ids, plain.response_ids) and shared.response_texts == plain.response_texts


def test_shared_prefill_with_a_lora_policy(tokenizer, model, prompts):
    pytest.importorskip("peft")
    from clipo.models import LoraSpec, apply_lora

    policy = apply_lora(model, LoraSpec(r=4)).eval()
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    params = SamplingParams(n=3, max_new_tokens=8, temperature=0.0)
    shared = HFGenerateEngine(policy, tokenizer).generate(prompts, params)
    plain = HFGenerateEngine(policy, tokenizer, share_prompt_prefill=False).generate(prompts, params)
    assert torch.equal(shared.response_ids, plain.response_ids)
