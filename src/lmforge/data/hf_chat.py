"""Chat templates as Hugging Face transformers applies them: a model directory's own `chat_template`.

A chat model from the Hub carries its template as Jinja source, next to its tokenizer:
`chat_template.jinja` (what transformers 5 writes) or the "chat_template" entry of
tokenizer_config.json (a string, or a list of {"name", "template"} of which "default" is used).
The template turns the messages into the text the model was trained on, e.g. Llama 3:

    <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n      <- add_generation_prompt

`ChatTemplate.render` gives the string `tokenizer.apply_chat_template(messages, tokenize=False)`
gives; `ChatTemplate.encode` its token ids. How transformers renders (read from its
utils/chat_template_utils.py and tokenization_utils_base.py, transformers 5):
  - Jinja2 in an ImmutableSandboxedEnvironment (a template from the Hub is untrusted code: no
    attribute starting with "_", no mutating lists or dicts the caller passed), trim_blocks and
    lstrip_blocks (a block tag eats its own line), the loop controls ({% break %}, {% continue %});
  - extras: raise_exception(message), a `tojson` filter that does not HTML-escape (json.dumps with
    ensure_ascii=False and the indent / separators / sort_keys options), strftime_now(format), and a
    `{% generation %}` block (for assistant masks; rendered as its body here);
  - variables: messages, add_generation_prompt, tools=None, documents=None and the named special
    tokens of tokenizer_config.json (bos_token, eos_token, unk_token, sep_token, pad_token,
    cls_token, mask_token, and any other "*_token" string), each a string (an AddedToken dict gives
    its "content");
  - keys whose value is None are dropped from each message first (an OpenAI client sends
    "content": null next to tool calls; templates test `'content' in message`), and a message's
    reasoning is given under both names templates read (reasoning_content, thinking).

Generation stops at the end of turn: the eos_token of tokenizer_config.json and the ids of
generation_config.json's eos_token_id (one id or a list, as Llama 3 and Qwen2 list several).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from pathlib import Path

from ..tokenizers.special import generation_eos_ids

TEMPLATE_FILE = "chat_template.jinja"  # transformers >= 4.43 writes the template here (5: always)
CONFIG_FILE = "tokenizer_config.json"
# the named special tokens a tokenizer carries (transformers' SPECIAL_TOKENS_ATTRIBUTES)
NAMED_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# A user's text is wrapped in these (Unicode private use, plane 15) around any special token it contains, so the
# encoder can tell a typed "<|eot_id|>" (text) from the one the template writes (one id). The same idea as
# transformers' sanitize_control_tokens.
_OPEN, _CLOSE = "\U000f0000", "\U000f0001"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid UTF-8 JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json stores it: a string, or an AddedToken dict
    ({"__type": "AddedToken", "content": "<s>", "lstrip": false, ...})."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _source(config: dict, directory: Path) -> tuple[str, str] | None:
    """(Jinja source, where it came from) or None. chat_template.jinja wins over the config's entry,
    as in transformers' from_pretrained."""
    path = directory / TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    where = f"{directory / CONFIG_FILE} chat_template"
    entry = config.get("chat_template")
    if entry is None:
        return None
    if isinstance(entry, str):
        return entry, where
    if isinstance(entry, list) and all(isinstance(t, dict) and isinstance(t.get("template"), str) for t in entry):
        named = {t.get("name"): t["template"] for t in entry}
        if "default" not in named:
            raise ValueError(f"{where} lists templates {sorted(map(str, named))} but none named 'default'; "
                             "name the one to chat with 'default'")
        return named["default"], f"{where} 'default'"
    raise ValueError(f"{where} must be a string or a list of {{'name': ..., 'template': ...}}")


def load_chat_template(directory: str | Path) -> ChatTemplate | None:
    """The chat template of a model directory, or None when it has none (lmforge's own runs: they
    use lmforge.data.chat). ValueError for a template that does not parse, naming the file and line."""
    directory = Path(directory)
    config = _read_json(directory / CONFIG_FILE) if (directory / CONFIG_FILE).is_file() else {}
    found = _source(config, directory)
    if found is None:
        return None
    source, where = found
    tokens = {k: _token_text(v) for k, v in config.items()
              if (k in NAMED_TOKENS or k.endswith("_token")) and _token_text(v) is not None}
    extra = config.get("extra_special_tokens")  # transformers 5: model-specific named tokens, {"image_token": ...}
    if isinstance(extra, dict):
        tokens.update({k: _token_text(v) for k, v in extra.items() if _token_text(v) is not None})
    template = ChatTemplate(source, tokens, generation_eos_ids(directory), where)
    template.compiled  # a syntax error is the directory's, found now rather than at the first message
    return template


@dataclass
class ChatTemplate:
    """One Jinja chat template, the special tokens it may name, and the ids that end a turn."""
    source: str
    special_tokens: dict[str, str] = field(default_factory=dict)  # {"bos_token": "<|begin_of_text|>", ...}
    eos_token_ids: tuple[int, ...] = ()  # from generation_config.json
    where: str = "chat_template"  # the file it came from, for error messages

    @cached_property
    def compiled(self):
        import jinja2
        try:
            return _environment().from_string(self.source)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"{self.where}: the chat template does not parse (line {e.lineno}: {e.message})") from None

    def render(self, messages: list[dict], *, add_generation_prompt: bool = True) -> str:
        """The conversation as the text the model reads, equal to transformers'
        `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`."""
        return self._render(checked(messages), add_generation_prompt)

    def _render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        import jinja2
        try:
            return self.compiled.render(**self.special_tokens, messages=messages, tools=None, documents=None,
                                        add_generation_prompt=add_generation_prompt)
        except jinja2.TemplateError as e:  # raise_exception(...), an undefined name, the sandbox refusing
            raise ValueError(f"the chat template ({self.where}) refused these messages: {e}") from None
        except (TypeError, ArithmeticError, LookupError) as e:  # e.g. content + 1 inside the template
            raise ValueError(f"the chat template ({self.where}) failed on these messages: "
                             f"{type(e).__name__}: {e}") from None

    def encode(self, tok, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered conversation: the special tokens the template writes are one id
        each; text the messages bring is encoded as text, even where it spells a special token (a user
        cannot type "<|eot_id|>" and end the turn). Without such text, the ids equal transformers'
        `apply_chat_template(messages, tokenize=True)` (which encodes without add_special_tokens:
        the template writes the bos itself)."""
        specials = sorted((t for t in tok.special_tokens if not t.isspace()), key=len, reverse=True)
        if not specials:
            return tok.encode(self.render(messages, add_generation_prompt=add_generation_prompt),
                              add_special_tokens=False)
        special_re = re.compile("|".join(map(re.escape, specials)))
        text = self._render(_mark(checked(messages), special_re), add_generation_prompt)
        if _OPEN not in text and _CLOSE not in text:  # no special token typed: the tokenizer splits them itself
            return tok.encode(text, add_special_tokens=False, split_special=True)
        ids, plain = [], ""
        # [outside, marked, outside, marked, ...]: a marked token stays text; a lone marker (a template
        # that cut a marked token apart) is dropped
        pieces = re.split(f"{_OPEN}({special_re.pattern}){_CLOSE}|[{_OPEN}{_CLOSE}]", text)
        for i, piece in enumerate(pieces):
            if piece is None or not piece:
                continue
            if i % 2:
                plain += piece
                continue
            pos = 0
            for m in special_re.finditer(piece):
                plain += piece[pos:m.start()]
                if plain:
                    ids += tok.encode(plain, add_special_tokens=False)
                ids.append(tok.special_tokens[m.group()])
                plain, pos = "", m.end()
            plain += piece[pos:]
        if plain:
            ids += tok.encode(plain, add_special_tokens=False)
        return ids

    def stop_ids(self, tok) -> list[int]:
        """The ids generation stops at: generation_config.json's eos_token_id, and the tokenizer's id
        of tokenizer_config.json's eos_token."""
        ids = list(self.eos_token_ids)
        eos = self.special_tokens.get("eos_token")
        if eos is not None and tok.token_to_id(eos) is not None and tok.token_to_id(eos) not in ids:
            ids.append(tok.token_to_id(eos))
        return ids


def checked(messages) -> list[dict]:
    """Messages as a template expects them: a non-empty list of {"role": str, "content": str, ...};
    keys whose value is None dropped (as transformers does). ValueError says what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    out = []
    for i, m in enumerate(messages):
        m = {k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not m["role"] \
                or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{'role': str, 'content': str}}, got {messages[i]!r}")
        # a model's reasoning goes by several names; templates read reasoning_content (Qwen3) or thinking
        # (gpt-oss): transformers fills both from whichever is given
        reasoning = next((m[k] for k in ("reasoning_content", "thinking", "reasoning") if k in m), None)
        if reasoning is not None:
            m = {"thinking": reasoning, **m, "reasoning_content": reasoning}
        out.append(m)
    return out


def _mark(value, special_re: re.Pattern):
    """Every string in `value` (messages, recursively; not dict keys) with each special token it
    contains wrapped in the markers; markers already in it are removed so none can be forged."""
    if isinstance(value, str):
        value = value.replace(_OPEN, "").replace(_CLOSE, "")
        return special_re.sub(lambda m: _OPEN + m.group() + _CLOSE, value)
    if isinstance(value, dict):
        return {k: _mark(v, special_re) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark(v, special_re) for v in value]
    return value


@lru_cache(maxsize=1)
def _environment():
    """The Jinja environment transformers renders chat templates in (module docstring), built once."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """{% generation %}...{% endgeneration %} marks the assistant's text for transformers' assistant
        masks; rendering it is rendering its body."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    class Namespace(jinja2.utils.Namespace):
        """namespace(...) that refuses names starting with "_" (CPython internals), as transformers' does."""

        def __init__(*args, **kwargs):  # Jinja's own signature trick: namespace(self=...) still works
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a chat template cannot set {name!r} on a namespace")

    class Dict:
        """dict(...) and dict.fromkeys(...) without handing the template the type itself."""

        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes <, >, & and ' for HTML; a prompt is not HTML
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt),
                       namespace=Namespace, dict=Dict())
    return env
