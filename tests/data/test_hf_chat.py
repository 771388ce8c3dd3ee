"""A model directory's own chat template (lmforge.data.hf_chat) against transformers' apply_chat_template:
the Llama 3, Qwen2 (ChatML) and GLM-4 layouts written for the tests, each saved with save_pretrained."""
import json

import pytest
from hf_chat_helpers import CONVERSATIONS, GLM4, LAYOUTS, LLAMA3, QWEN2, hf_tokenizer  # tests/hf_chat_helpers.py

from lmforge.data import chat
from lmforge.data.hf_chat import ChatTemplate, load_chat_template
from lmforge.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (directory written by save_pretrained, the transformers tokenizer loaded back from it)."""
    transformers = pytest.importorskip("transformers")
    out = {}
    for name, (template, specials, named) in LAYOUTS.items():
        d = tmp_path_factory.mktemp(name)
        hf_tokenizer(template, specials, named).save_pretrained(d)
        out[name] = d, transformers.AutoTokenizer.from_pretrained(d)
    return out


@pytest.mark.parametrize("gen", [True, False], ids=["generation prompt", "no generation prompt"])
@pytest.mark.parametrize("conv", CONVERSATIONS)
@pytest.mark.parametrize("name", LAYOUTS)
def test_rendered_text_and_ids_equal_transformers(saved, name, conv, gen):
    d, hf = saved[name]
    assert (d / "chat_template.jinja").is_file()  # transformers 5 writes the template next to the config
    messages = CONVERSATIONS[conv]
    template = load_chat_template(d)
    text = template.render(messages, add_generation_prompt=gen)
    assert text == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    ids = template.encode(load_tokenizer(d), messages, add_generation_prompt=gen)
    assert ids == hf.apply_chat_template(messages, add_generation_prompt=gen, return_dict=False)


def test_what_the_layouts_look_like(saved):
    """The three layouts spelled out (what the parity above is parity of)."""
    user = [{"role": "user", "content": "Hi"}]
    llama = load_chat_template(saved["llama3"][0]).render(user)
    assert llama.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nToday Date: ")
    assert llama.endswith("<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert load_chat_template(saved["qwen2"][0]).render(user) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert load_chat_template(saved["glm4"][0]).render(user, add_generation_prompt=False) == "[gMASK]<sop><|user|>\nHi"


def test_template_in_tokenizer_config_string_or_named_list(saved, tmp_path):
    """The older layout: "chat_template" inside tokenizer_config.json, a string or [{"name", "template"}]."""
    d, hf = saved["qwen2"]
    msgs = CONVERSATIONS["with system"]
    old = tmp_path / "old"
    hf.save_pretrained(old, save_jinja_files=False)
    assert not (old / "chat_template.jinja").exists()
    assert load_chat_template(old).render(msgs) == hf.apply_chat_template(msgs, tokenize=False,
                                                                           add_generation_prompt=True)
    transformers = pytest.importorskip("transformers")
    named = tmp_path / "named"
    hf = hf_tokenizer({"default": GLM4, "tool_use": QWEN2}, *LAYOUTS["glm4"][1:])
    hf.save_pretrained(named, save_jinja_files=False)
    config = json.loads((named / "tokenizer_config.json").read_text())
    assert isinstance(config["chat_template"], list)  # [{"name": "default", ...}, {"name": "tool_use", ...}]
    ref = transformers.AutoTokenizer.from_pretrained(named)
    assert load_chat_template(named).render(msgs) == ref.apply_chat_template(msgs, tokenize=False,
                                                                              add_generation_prompt=True)
    # chat_template.jinja wins over the config's entry, as in transformers' from_pretrained
    (named / "chat_template.jinja").write_text(QWEN2)
    assert load_chat_template(named).render(msgs).startswith("<|im_start|>system")
    config["chat_template"] = [{"name": "tool_use", "template": QWEN2}]
    (named / "chat_template.jinja").unlink()
    (named / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="none named 'default'"):
        load_chat_template(named)


def test_extras_transformers_provides(transformers, tmp_path):
    """tojson (no HTML escaping, indent, ensure_ascii), raise_exception, namespace, loop controls, the
    {% generation %} block, special tokens stored as AddedToken dicts, None-valued keys dropped."""
    source = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'stop' %}{% break %}{% endif %}"
              "{% set ns.n = ns.n + 1 %}{% generation %}{{ m | tojson }}|{{ m | tojson(indent=2) }}|"
              "{{ m.content | tojson(ensure_ascii=True) }}{% endgeneration %}\n{% endfor %}"
              "{{ ns.n }}{{ bos_token }}{{ eos_token }}{{ 'name' in messages[0] }}")
    hf = hf_tokenizer(source, ["<s>", "</s>"], dict(bos_token="<s>", eos_token="</s>"))
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["bos_token"] = {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                           "rstrip": False, "single_word": False, "special": True}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    msgs = [{"role": "user", "content": "<b>é & 'x'</b>", "name": None}, {"role": "stop", "content": ""},
            {"role": "user", "content": "never"}]
    ours = load_chat_template(tmp_path).render(msgs)
    assert ours == transformers.AutoTokenizer.from_pretrained(tmp_path).apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True)
    assert '"<b>é & \'x\'</b>"' in ours and "\\u00e9" in ours
    assert ours.endswith('</b>"1<s></s>False')  # trim_blocks ate the newline after {% endgeneration %}


def test_errors_name_the_problem(saved, tmp_path):
    template = load_chat_template(saved["llama3"][0])
    with pytest.raises(ValueError, match="refused these messages: Only user and assistant roles .* got tool"):
        template.render([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42"}])
    for bad, what in [([], "non-empty list"), ("Hi", "non-empty list"), ([{"role": "user"}], r"messages\[0\]"),
                      ([{"role": "user", "content": "a"}, "b"], r"messages\[1\]"),
                      ([{"role": "user", "content": ["a"]}], r"messages\[0\] must be")]:
        with pytest.raises(ValueError, match=what):
            template.render(bad)
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }\n{% endfor %}")
    with pytest.raises(ValueError, match=r"chat_template.jinja: the chat template does not parse \(line 1"):
        load_chat_template(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0].content + 1 }}")
    with pytest.raises(ValueError, match="failed on these messages: TypeError"):
        load_chat_template(tmp_path).render([{"role": "user", "content": "a"}])
    # the sandbox: no reaching Python internals from a template
    (tmp_path / "chat_template.jinja").write_text("{{ messages.__class__.__mro__ }}")
    with pytest.raises(ValueError, match="refused these messages"):
        load_chat_template(tmp_path).render([{"role": "user", "content": "a"}])
    (tmp_path / "chat_template.jinja").write_text("{% set ns = namespace() %}{% set ns._x = 1 %}")
    with pytest.raises(ValueError, match="cannot set '_x'"):
        load_chat_template(tmp_path).render([{"role": "user", "content": "a"}])
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "tokenizer_config.json").write_text('{"chat_template": 3}')
    with pytest.raises(ValueError, match="must be a string or a list"):
        load_chat_template(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{}")
    assert load_chat_template(tmp_path) is None  # no template: lmforge's own (lmforge.data.chat) is used


def test_typed_special_tokens_stay_text(saved):
    """A user who types "<|eot_id|>" gets text, not the end of turn (transformers' sanitize_control_tokens
    idea); the rendered text is unchanged."""
    d, hf = saved["llama3"]
    tok, template = load_tokenizer(d), load_chat_template(d)
    msgs = [{"role": "user", "content": "Say <|eot_id|> now \U000f0001"}]
    ids = template.encode(tok, msgs)
    eot = tok.special_tokens["<|eot_id|>"]
    assert ids.count(eot) == 2  # the system message's and the user message's, both written by the template
    # the same text as rendered (less the marker character typed in: dropped so no marker can be forged)
    assert tok.decode(ids) == template.render([{"role": "user", "content": "Say <|eot_id|> now "}])
    plain = template.encode(tok, [{"role": "user", "content": "Say now"}])
    header = tok.special_tokens["<|start_header_id|>"]
    assert ids.count(header) == plain.count(header)


def test_stop_ids_from_tokenizer_and_generation_config(saved, tmp_path):
    d, _ = saved["glm4"]
    tok = load_tokenizer(d)
    assert load_chat_template(d).stop_ids(tok) == [tok.special_tokens["<|user|>"]]  # eos_token
    for f in d.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    ids = [tok.special_tokens[t] for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": ids}))  # GLM-4 lists three
    assert load_chat_template(tmp_path).stop_ids(tok) == ids
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": ids[0]}))
    assert load_chat_template(tmp_path).stop_ids(tok) == [ids[0], ids[1]]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": "x"}))
    with pytest.raises(ValueError, match="eos_token_id must be a token id or a list"):
        load_chat_template(tmp_path)


def test_build_prompt_with_a_directory_template_drops_whole_exchanges(saved):
    d, hf = saved["qwen2"]
    tok, template = load_tokenizer(d), load_chat_template(d)
    msgs = [{"role": "system", "content": "Be brief."}]
    for i in range(4):
        msgs += [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
    msgs.append({"role": "user", "content": "Last?"})
    full = chat.build_prompt(tok, msgs, 10_000, template)
    assert full.ids == hf.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False)
    # the end of turn (eos_token), then the tokenizer's end-of-text token (as a plain LM stops at)
    assert full.stop_ids == [tok.special_tokens["<|im_end|>"], tok.special_tokens["<|endoftext|>"]]
    assert full.dropped == 0 and full.stop_text == []
    short = chat.build_prompt(tok, msgs, len(full.ids) - 1, template)
    kept = [msgs[0], *msgs[3:]]  # the first exchange (question and answer) is dropped, never half of it
    assert short.dropped == 2 and short.ids == hf.apply_chat_template(kept, add_generation_prompt=True,
                                                                       return_dict=False)
    with pytest.raises(ValueError, match="the last message alone is"):
        chat.build_prompt(tok, msgs, 5, template)
    with pytest.raises(ValueError, match=r"messages\[2\] must be"):
        chat.build_prompt(tok, [*msgs[:2], {"content": "no role"}], 100, template)


def test_lmforge_template_is_kept_for_lmforge_runs():
    assert ChatTemplate(LLAMA3).render([{"role": "user", "content": "x"}]).count("<|eot_id|>") == 2
    assert chat.render([{"role": "user", "content": "Hi"}]) == "<|user|>Hi<|end|>\n<|assistant|>"


def test_reasoning_is_given_under_both_names(transformers):
    """A message's reasoning ("reasoning_content", "thinking" or "reasoning") reaches a template under both
    names templates read, as transformers passes it."""
    source = "{% for m in messages %}{{ m.thinking }}|{{ m.reasoning_content }}|{{ m.content }};{% endfor %}"
    hf = hf_tokenizer(source, ["<s>"], {})
    msgs = [{"role": "assistant", "content": "Noah.", "reasoning": "Genesis 6"},
            {"role": "assistant", "content": "Yes.", "thinking": "Genesis 7"}]
    ours = ChatTemplate(source).render(msgs)
    assert ours == hf.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert ours == "Genesis 6|Genesis 6|Noah.;Genesis 7|Genesis 7|Yes.;"
