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
        {{- raise_exception("Only user and assistant roles are supported after the system message, got "
                            + message['role']) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'
        + message['content'] | trim + '<|eot_id|>' }}
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
GLM4 = ("[gMASK]<sop>{% for item in messages %}{% if item['role'] == 'system' %}<|system|>\n"
        "{{ item['content'] }}{% elif item['role'] == 'user' %}<|user|>\n"
        "{{ item['content'] }}{% elif item['role'] == 'assistant' %}<|assistant|>\n"
        "{{ item['content'] }}{% else %}{{ raise_exception('unknown role ' + item['role']) }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")

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


def hf_gpt2_chat_dir(path, template: str = LLAMA3):
    """A Hugging Face GPT-2 directory (GPT2LMHeadModel.save_pretrained + a tokenizer with a Llama 3 chat
    template) whose greedy answer to any chat prompt is "Hi" and then <|eom_id|>: an end of turn that only
    generation_config.json names (eos_token_id [<|eot_id|>, <|eom_id|>], as Llama 3.1 lists its ends).

    The weights are set by hand so the answer is known: every block adds nothing (its output projections
    are zero), positions are zero, so the last hidden state is LayerNorm(embedding of the current token);
    the (untied) head maps "\\n" -> "H" -> "i" -> <|eom_id|> by giving row `next` the direction of
    LayerNorm(embedding of `current`), a logit of 10 * sqrt(d_model) against about +-10 for the others.
    Returns (path, the transformers tokenizer)."""
    import torch
    import transformers
    hf = hf_tokenizer(template, LLAMA3_SPECIALS, dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"))
    hf.save_pretrained(path)
    ids = hf.convert_tokens_to_ids
    last = hf.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                  return_dict=False)[-1]  # the generation prompt's last token ("\n" here)
    chain = [(last, ids("H")), (ids("H"), ids("i")), (ids("i"), ids("<|eom_id|>"))]
    config = transformers.GPT2Config(vocab_size=len(hf), n_positions=128, n_embd=64, n_layer=2, n_head=4,
                                     tie_word_embeddings=False, bos_token_id=ids("<|begin_of_text|>"),
                                     eos_token_id=ids("<|eot_id|>"))
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_(); proj.bias.zero_()
        model.transformer.wpe.weight.zero_()
        model.lm_head.weight.zero_()
        for cur, nxt in chain:
            h = torch.nn.functional.layer_norm(model.transformer.wte.weight[cur], (64,))
            model.lm_head.weight[nxt] = 10 * h / h.norm()
    model.generation_config.eos_token_id = [ids("<|eot_id|>"), ids("<|eom_id|>")]
    model.save_pretrained(path)
    return path, hf
