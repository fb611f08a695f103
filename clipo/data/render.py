"""Turn a :class:`~clipo.data.records.PromptExample` into the exact text the policy model is given."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

from .records import Message, PromptExample, PromptLike

__all__ = ["chooses_chat_template", "render_prompt", "render_prompts", "to_messages"]

ChatTemplateSetting = Union[bool, str]  # True, False or "auto"


def chooses_chat_template(tokenizer: Any, use_chat_template: ChatTemplateSetting = "auto") -> bool:
    """Whether prompts are rendered with the chat template: ``"auto"`` means when ``tokenizer`` has one."""
    if use_chat_template == "auto":
        return bool(getattr(tokenizer, "chat_template", None))
    return bool(use_chat_template)


def to_messages(prompt: PromptLike, system_prompt: Optional[str] = None) -> List[Message]:
    """Chat messages for ``prompt``: text becomes one user message.

    ``system_prompt`` is put first; if the prompt already starts with a system message, it is replaced
    (one system message is what chat templates expect, and the caller's choice should win).
    """
    messages: List[Message] = ([{"role": "user", "content": prompt}] if isinstance(prompt, str)
                               else [dict(m) for m in prompt])
    if system_prompt is not None:
        if messages and messages[0].get("role") == "system":
            messages = messages[1:]
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


def _raw_text(prompt: PromptLike, system_prompt: Optional[str]) -> str:
    # Without a chat template the model sees plain text: the message contents separated by blank lines
    # (role names would be tokens the base model was never trained to see).
    parts = [system_prompt] if system_prompt else []
    if isinstance(prompt, str):
        parts.append(prompt)
    else:
        parts.extend(m["content"] for m in prompt if not (system_prompt is not None and m.get("role") == "system"))
    return "\n\n".join(parts)


def render_prompt(example: PromptExample | PromptLike, tokenizer: Any = None, *,
                  use_chat_template: ChatTemplateSetting = True, system_prompt: Optional[str] = None) -> str:
    """The prompt text to tokenize for generation.

    With ``use_chat_template`` (default) the tokenizer's chat template is applied with
    ``add_generation_prompt=True``, so the text ends where the assistant's answer starts; text prompts are
    wrapped as one user message. Without it, the raw text is returned (message contents joined by blank
    lines), optionally preceded by ``system_prompt``. ``use_chat_template="auto"`` picks the template when the
    tokenizer has one and raw text otherwise (a base model).

    Raises:
        ValueError: a chat template is requested but ``tokenizer`` is None or has no chat template.
    """
    prompt = example.prompt if isinstance(example, PromptExample) else example
    if use_chat_template == "auto":
        use_chat_template = chooses_chat_template(tokenizer)
    if not use_chat_template:
        return _raw_text(prompt, system_prompt)
    if tokenizer is None:
        raise ValueError("render_prompt(use_chat_template=True) needs a tokenizer; pass one, or "
                         "use_chat_template=False for raw text")
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(f"tokenizer {name!r} has no chat template (a base model?). Fix: pass "
                         "use_chat_template=False to use the raw prompt text, or set tokenizer.chat_template.")
    text = tokenizer.apply_chat_template(to_messages(prompt, system_prompt), tokenize=False,
                                         add_generation_prompt=True)
    if not isinstance(text, str):  # some tokenizers return a list for batched input; we pass one conversation
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def render_prompts(examples: Sequence[PromptExample], tokenizer: Any = None, *, use_chat_template: ChatTemplateSetting = True,
                   system_prompt: Optional[str] = None) -> List[str]:
    """:func:`render_prompt` for each example."""
    return [render_prompt(ex, tokenizer, use_chat_template=use_chat_template, system_prompt=system_prompt)
            for ex in examples]
