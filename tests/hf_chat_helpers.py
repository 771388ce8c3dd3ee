"""Chat templates written for the tests in the three layouts the open-model family reads, and a Hugging Face
tokenizer carrying one, built in-process (a byte-level BPE trained with `tokenizers`; no downloads)."""
import lzma
from pathlib import Path

import lmforge

# Llama 3: bos, one header per message, <|eot_id|> ends each; the system message carries the date, read
# from strftime_now when the caller gives none (as Llama 3.1's template does)
LLAMA3 = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message['role'] not in ['user', 'assistant'] %}
        {{- raise_exception("Only user and assistant roles are supported after the system message, got " + message['role']) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Qwen2 (ChatML): a default system prompt when none is given; block tags on their own lines exercise
# trim_blocks and lstrip_blocks
QWEN2 = """{% for message in messages %}
    {% if loop.first and messages[0]['role'] != 'system' %}
<|im_start|>system
You are a helpful assistant.<|im_end|>
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""

# GLM-4: [gMASK]<sop>, a role marker and a newline per message; generation ends at <|user|> (the next turn)
GLM4 = """[gMASK]<sop>{% for item in messages %}{% if item['role'] == 'system' %}<|system|>
{{ item['content'] }}{% elif item['role'] == 'user' %}<|user|>
{{ item['content'] }}{% elif item['role'] == 'assistant' %}<|assistant|>
{{ item['content'] }}{% else %}{{ raise_exception('unknown role ' + item['role']) }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"""

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>", "<|eom_id|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
GLM4_SPECIALS = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"]

LAYOUTS = {  # name -> (template, special tokens, tokenizer_config tokens)
    "llama3": (LLAMA3, LLAMA3_SPECIALS, dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")),
    "qwen2": (QWEN2, QWEN2_SPECIALS, dict(eos_token="<|im_end|>", pad_token="<|endoftext|>")),
    "glm4": (GLM4, GLM4_SPECIALS, dict(eos_token="<|user|>", pad_token="<|endoftext|>")),
}

CONVERSATIONS = {
    "with system": [{"role": "system", "content": "You are terse. "},
                    {"role": "user", "content": "Who built the ark?"},
                    {"role": "assistant", "content": " Noah."},
                    {"role": "user", "content": "And then? é 中文"}],
    "without system": [{"role": "user", "content": "In the beginning"}],
}


def kjv(n_chars: int = 4000) -> str:
    with lzma.open(Path(lmforge.__file__).parent / "data" / "corpora" / "kjv.txt.xz", "rt", encoding="utf-8") as f:
        return f.read(n_chars)


def hf_tokenizer(template, specials: list[str], named: dict, vocab_size: int = 400):
    """A transformers PreTrainedTokenizerFast: byte-level BPE trained on a slice of the bundled KJV, the
    layout's special tokens added, `template` as its chat_template (a string, or a dict of named ones)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(kjv().splitlines(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, chat_template=template, **named)
