"""/v1/chat/completions on a Hugging Face directory with its own chat template, against a real `lmforge serve`:
the prompt is the template's (token for token what transformers' apply_chat_template gives), the answer
stops at the end of turn generation_config.json names, and messages the template refuses get a 400."""
import httpx
import pytest
from hf_chat_helpers import hf_gpt2_chat_dir  # tests/hf_chat_helpers.py
from live import start_server

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_chat(tmp_path_factory):
    path, hf = hf_gpt2_chat_dir(tmp_path_factory.mktemp("hf-chat"))
    proc, url = start_server(path, "--name", "hf", "--threads", "1")
    yield url, hf
    proc.terminate()
    proc.wait(10)


def post(url, route, body):
    return httpx.post(url + route, json={"model": "hf", "temperature": 0, **body}, timeout=60)


def test_chat_uses_the_directorys_template_and_stops_at_its_end_of_turn(hf_chat):
    url, hf = hf_chat
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    r = post(url, "/v1/chat/completions", {"messages": msgs, "max_tokens": 20}).json()
    # the model answers "Hi" then <|eom_id|>: an end of turn only generation_config.json lists
    assert r["choices"][0]["message"]["content"] == "Hi" and r["choices"][0]["finish_reason"] == "stop"
    assert r["usage"]["completion_tokens"] == 3  # H, i and the end of turn (not shown)
    assert r["usage"]["prompt_tokens"] == len(hf.apply_chat_template(msgs, add_generation_prompt=True,
                                                                     return_dict=False))
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=60,
                      json={"model": "hf", "messages": msgs, "max_tokens": 20, "temperature": 0, "stream": True}) as s:
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and '"finish_reason": "stop"' in events[-2]
    # /v1/completions on the same prompt text ends there too: generation_config.json's eos_token_id is the
    # model's end of generation for every route (as in transformers' generate)
    text = hf.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    c = post(url, "/v1/completions", {"prompt": hf(text, add_special_tokens=False)["input_ids"],
                                      "max_tokens": 4}).json()["choices"][0]
    assert c["text"] == "Hi" and c["finish_reason"] == "stop"


@pytest.mark.parametrize("messages, says", [
    ([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "42"}],
     r"the chat template \(.*chat_template.jinja\) refused these messages: Only user and assistant roles"),
    ([{"role": "user", "content": 3}], r"messages\[0\] must be \{'role': str, 'content': str\}"),
    ("Hi", "messages must be a non-empty list"),
    ([], "messages must be a non-empty list"),
])
def test_messages_the_template_refuses_get_400(hf_chat, messages, says):
    import re
    url, _ = hf_chat
    r = post(url, "/v1/chat/completions", {"messages": messages})
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "messages" and re.search(says, err["message"]), err
    assert post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}).status_code == 200


def test_a_template_that_does_not_parse_stops_serve_with_one_line(tmp_path, capsys):
    from lmforge.cli import main
    hf_gpt2_chat_dir(tmp_path)
    capsys.readouterr()  # what writing the directory printed
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}")  # no endfor
    assert main(["serve", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "chat_template.jinja: the chat template does not parse (line 1" in err
