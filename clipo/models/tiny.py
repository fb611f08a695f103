"""Tiny, download-free tokenizer and model builders for tests, benchmarks and the CPU demo.

Everything here is built locally: the tokenizer with the `tokenizers` library (character level, plus a few
whole-word tokens) and the model from a transformers config with random weights. A 2-layer, 64-wide model
runs a forward pass in milliseconds on a CPU, so tests can exercise the real generation and forward code
paths instead of mocks.

    tok = build_tiny_tokenizer()
    model = build_tiny_model(tok)              # Qwen2-style, untied embeddings
    handle = add_logit_bias(model, {tok.eos_token_id: 4.0})   # make a random model stop now and then
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

from clipo.models.compat import dtype_kwarg

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "QWEN_STYLE_CHAT_TEMPLATE",
    "TINY_SPECIAL_TOKENS",
    "TINY_WORD_TOKENS",
    "add_logit_bias",
    "build_tiny_model",
    "build_tiny_tokenizer",
]

#: Special tokens of the tiny tokenizer, Qwen-style: the end of a chat turn is the EOS token, and a separate
#: `<|endoftext|>` pads (so pad != eos, like Qwen2.5; SmolLM2 is the other case, where pad == eos).
TINY_SPECIAL_TOKENS = {
    "pad_token": "<|endoftext|>",
    "eos_token": "<|im_end|>",
    "unk_token": "<unk>",
}
_CHAT_START = "<|im_start|>"

#: Multi-character (non-special) tokens, so that tests see tokens longer than one character: a stop string
#: can then end in the middle of a token, and decoding must join multi-character pieces.
TINY_WORD_TOKENS = ("<answer>", "</answer>", "answer", "The", "is", "user", "assistant", "system")

#: The Qwen2.5 chat format without the default system prompt: `<|im_start|>role\ncontent<|im_end|>\n` per
#: message, then `<|im_start|>assistant\n` when a generation prompt is asked for.
QWEN_STYLE_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_DEFAULT_CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"


def build_tiny_tokenizer(
    chars: str = _DEFAULT_CHARS,
    *,
    words: Iterable[str] = TINY_WORD_TOKENS,
    chat_template: str = QWEN_STYLE_CHAT_TEMPLATE,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer with Qwen-style special tokens and chat template.

    Vocabulary (ids in this order): the special tokens (`<|endoftext|>` = pad, `<|im_end|>` = eos,
    `<unk>`, `<|im_start|>`), one token per character of `chars`, then `words` as added tokens that are
    matched before the character split. Decoding concatenates pieces with no separator, so
    `decode(encode(text)) == text` for any text over `chars`. Padding side is left (generation layout).
    """
    specials = [TINY_SPECIAL_TOKENS["pad_token"], TINY_SPECIAL_TOKENS["eos_token"],
                TINY_SPECIAL_TOKENS["unk_token"], _CHAT_START]
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    for ch in dict.fromkeys(chars):  # dict.fromkeys: de-duplicate, keep order
        vocab.setdefault(ch, len(vocab))

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=TINY_SPECIAL_TOKENS["unk_token"]))
    # Every character is its own pre-token; "isolated" keeps whitespace as tokens instead of dropping it.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m:.)"), behavior="isolated")
    backend.decoder = decoders.Fuse()

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        **TINY_SPECIAL_TOKENS,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [_CHAT_START]})
    tokenizer.add_tokens([w for w in words if w not in vocab])
    tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    *,
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    tie_word_embeddings: bool = False,
    max_position_embeddings: int = 2048,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """A randomly initialised causal LM (`arch` "qwen2" or "llama") sized for `tokenizer`.

    The weights depend only on `seed` (the global RNG is left untouched). Attention is SDPA, as for real
    checkpoints. The model's generation config carries the tokenizer's eos/pad ids and nothing else.
    """
    config_classes = {"qwen2": Qwen2Config, "llama": LlamaConfig}
    if arch not in config_classes:
        raise ValueError(f"arch={arch!r}: expected one of {sorted(config_classes)}")
    config = config_classes[arch](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", **{dtype_kwarg(): dtype})
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def add_logit_bias(model: PreTrainedModel, bias: Mapping[int, float]) -> torch.utils.hooks.RemovableHandle:
    """Add a constant to chosen logits of every forward pass (generation and teacher forcing alike).

    A random tiny model almost never samples EOS (p ~ 1/V per step); `add_logit_bias(model, {eos: 4.0})`
    makes it finish after a handful of tokens, which tests and demos need. Implemented as a forward hook
    on the output embedding, so the policy stays an ordinary `PreTrainedModel`. Returns the hook handle:
    call `.remove()` to undo.
    """
    head = model.get_output_embeddings()
    vocab = head.weight.shape[0]
    delta = torch.zeros(vocab, dtype=head.weight.dtype, device=head.weight.device)
    for token_id, value in bias.items():
        delta[token_id] = value

    def _hook(_module, _inputs, logits):
        return logits + delta.to(logits.dtype)

    return head.register_forward_hook(_hook)
