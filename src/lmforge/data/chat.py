"""The chat template: how a conversation becomes one token sequence, and back.

A chat model is still a next-token predictor; the template is the convention that tells it who is
speaking. With the role markers of `CHAT_SPECIAL_TOKENS` (below) as special tokens of the
tokenizer (one id each, never produced by splitting user text):

    <|system|>You are terse.<|end|>
    <|user|>Who built the ark?<|end|>
    <|assistant|>Noah.<|end|>
    <|assistant|>                      <- add_generation_prompt: the model continues from here

Each message is `<|role|>` + content + `<|end|>` + "\\n"; generation stops at `<|end|>`.
A tokenizer without these special tokens (any plain LM, before SFT) gets the same layout in
plain text, "System: ...", "User: ...", "Assistant: ...", one message per paragraph, and
generation stops at the next "\\nUser:".

A model directory that brings its own template (a Hugging Face chat model: chat_template.jinja or
tokenizer_config.json's "chat_template") is rendered with that instead, as transformers renders it
(lmforge.data.hf_chat); pass it to `build_prompt` as `template`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..tokenizers import eos_ids

if TYPE_CHECKING:
    from .hf_chat import ChatTemplate

ROLES = ("system", "user", "assistant")
# The template's special tokens: one marker per role, then the end of turn. Give them to a tokenizer
# meant for chat (`CharTokenizer.train(text, special_tokens=CHAT_SPECIAL_TOKENS)`); generation stops
# at "<|end|>", which lmforge.tokenizers.END_OF_TEXT_TOKENS lists for that reason.
CHAT_SPECIAL_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
*_markers, END = CHAT_SPECIAL_TOKENS
MARKERS = dict(zip(ROLES, _markers))
PLAIN = {"system": "System: ", "user": "User: ", "assistant": "Assistant: "}
PLAIN_STOP = "\nUser:"


def _check(messages: list[dict]) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{'role': one of {list(ROLES)}, 'content': str}}, got {m!r}")


def has_markers(tok) -> bool:
    return all(t in tok.special_tokens for t in (*MARKERS.values(), END))


def render(messages: list[dict], *, add_generation_prompt: bool = True, markers: bool = True) -> str:
    """The conversation as text (what the model reads).

    >>> render([{"role": "user", "content": "Hi"}])
    '<|user|>Hi<|end|>\\n<|assistant|>'
    >>> render([{"role": "user", "content": "Hi"}], markers=False)
    'User: Hi\\n\\nAssistant:'
    """
    _check(messages)
    if markers:
        text = "".join(f"{MARKERS[m['role']]}{m['content']}{END}\n" for m in messages)
        return text + (MARKERS["assistant"] if add_generation_prompt else "")
    text = "".join(f"{PLAIN[m['role']]}{m['content']}\n\n" for m in messages)
    return text + (PLAIN["assistant"].rstrip() if add_generation_prompt else "")


@dataclass
class ChatPrompt:
    ids: list[int]
    stop_ids: list[int]  # end-of-turn token(s) (marker template)
    stop_text: list[str]  # end-of-turn text (plain template)
    dropped: int  # oldest messages left out to fit the context


def encode(tok, messages: list[dict], *, add_generation_prompt: bool = True) -> tuple[list[int], list[int]]:
    """(ids, loss_mask) with 1 on the assistant's tokens (content and its end marker): what SFT learns.

    Content is encoded without matching special tokens, so a user cannot type "<|end|>" into a turn.
    """
    _check(messages)
    ids: list[int] = []
    mask: list[int] = []
    marked = has_markers(tok)
    for m in messages:
        learn = int(m["role"] == "assistant")
        if marked:
            head = [tok.special_tokens[MARKERS[m["role"]]]]
            body = tok.encode(m["content"], add_special_tokens=False) + [tok.special_tokens[END]] + \
                tok.encode("\n", add_special_tokens=False)
        else:
            head = tok.encode(PLAIN[m["role"]], add_special_tokens=False)
            body = tok.encode(m["content"] + "\n\n", add_special_tokens=False)
        ids += head + body
        mask += [0] * len(head) + [learn] * len(body)
    if add_generation_prompt:
        tail = [tok.special_tokens[MARKERS["assistant"]]] if marked else \
            tok.encode(PLAIN["assistant"].rstrip(), add_special_tokens=False)
        ids += tail
        mask += [0] * len(tail)
    return ids, mask


def build_prompt(tok, messages: list[dict], max_tokens: int, template: ChatTemplate | None = None) -> ChatPrompt:
    """Encode for generation, dropping the oldest turns (never the system message, never the last
    message) until the prompt fits in `max_tokens`. ValueError if even that does not fit.

    template: the model directory's own chat template (lmforge.data.hf_chat.load_chat_template);
    None for lmforge's (above). After a drop the kept turns start at a user message, so a template
    that checks the roles alternate (user, assistant, user, ...) still accepts them."""
    if template is None:
        _check(messages)
        encode_ = lambda msgs: encode(tok, msgs)[0]  # noqa: E731
    else:
        from .hf_chat import checked
        messages = checked(messages)
        encode_ = lambda msgs: template.encode(tok, msgs)  # noqa: E731
    system = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(system):]
    dropped = 0
    while True:
        ids = encode_(system + turns)
        if len(ids) <= max_tokens:
            break
        if len(turns) <= 1:
            raise ValueError(f"the last message alone is {len(ids)} tokens with the template; the model's "
                             f"context leaves {max_tokens} for the prompt: shorten it")
        turns, dropped = turns[1:], dropped + 1
        while len(turns) > 1 and turns[0]["role"] != "user":
            turns, dropped = turns[1:], dropped + 1
    if template is not None:  # its end of turn, and any end-of-text token the tokenizer has (as for a plain LM)
        stops = template.stop_ids(tok)
        return ChatPrompt(ids, stops + [i for i in eos_ids(tok) if i not in stops], [], dropped)
    if has_markers(tok):
        return ChatPrompt(ids, [tok.special_tokens[END]], [], dropped)
    return ChatPrompt(ids, [], [PLAIN_STOP], dropped)
