"""Request validation (serve/params.py) without a server: each bad value is a 400 (404 for the model)
that names its parameter; good values become SamplingParams and Options."""
import pytest

from lmforge.generate import SamplingParams
from lmforge.serve.params import APIError, Limits, Options, Validator, parse_json
from lmforge.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def v():
    tok = CharTokenizer.train("And God said, Let there be light.")
    return Validator(tok, name="tiny", vocab_size=tok.vocab_size, max_len=16, limits=Limits(max_tokens=50))


def error(fn, *args) -> APIError:
    with pytest.raises(APIError) as e:
        fn(*args)
    return e.value


def test_good_values_become_sampling_params_and_options(v):
    body = {"temperature": 0, "top_p": 0.5, "top_k": 3, "presence_penalty": -2, "frequency_penalty": 1.5,
            "max_tokens": 50, "n": 8, "seed": 7, "stop": "\n"}
    assert v.sampling(body) == SamplingParams(temperature=0, top_p=0.5, top_k=3, presence_penalty=-2,
                                              frequency_penalty=1.5)
    assert v.options(body) == Options(max_tokens=50, n=8, seed=7, stop=("\n",))
    assert v.options({"max_tokens": None}) == Options(max_tokens=16, n=1, seed=None, stop=())  # null = default
    assert v.prompt({"prompt": "And"}) == v.prompt({"prompt": ["And"]}) == v.tok.encode("And")
    assert v.prompt({"prompt": [1, 2]}) == v.prompt({"prompt": [[1, 2]]}) == [1, 2]
    assert v.completion_logprobs({}) is None and v.completion_logprobs({"logprobs": 0}) == 0
    assert v.chat_logprobs({"top_logprobs": 5}) is None and v.chat_logprobs({"logprobs": True, "top_logprobs": 5}) == 5
    assert v.bars({}) == 10


@pytest.mark.parametrize("method, body, param", [
    ("sampling", {"temperature": -0.5}, "temperature"),
    ("sampling", {"temperature": 2.5}, "temperature"),
    ("sampling", {"temperature": "hot"}, "temperature"),
    ("sampling", {"temperature": True}, "temperature"),  # JSON true is not a number
    ("sampling", {"top_p": 0}, "top_p"),
    ("sampling", {"top_k": 1.5}, "top_k"),
    ("sampling", {"top_k": 10**6}, "top_k"),  # above the vocabulary
    ("sampling", {"presence_penalty": 3}, "presence_penalty"),
    ("sampling", {"frequency_penalty": float("nan")}, "frequency_penalty"),
    ("options", {"max_tokens": 0}, "max_tokens"),
    ("options", {"max_tokens": 51}, "max_tokens"),  # over Limits.max_tokens
    ("options", {"n": 9}, "n"),
    ("options", {"seed": 1.5}, "seed"),
    ("options", {"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ("options", {"stop": [1]}, "stop"),
    ("prompt", {}, "prompt"),
    ("prompt", {"prompt": ""}, "prompt"),
    ("prompt", {"prompt": "A" * 16}, "prompt"),  # fills the context: no room for a new token
    ("prompt", {"prompt": [1, -1]}, "prompt"),
    ("prompt", {"prompt": [1, True]}, "prompt"),
    ("prompt", {"prompt": []}, "prompt"),
    ("completion_logprobs", {"logprobs": 21}, "logprobs"),
    ("chat_logprobs", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("bars", {"n": 21}, "n"),
    ("chat", {"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
])
def test_bad_values_are_400s_that_name_the_parameter(v, method, body, param):
    args = (body, Options(max_tokens=4, n=1, seed=None, stop=())) if method == "chat" else (body,)
    e = error(getattr(v, method), *args)
    assert e.status == 400 and e.param == param and param in e.message
    assert e.response().status_code == 400


def test_token_ids_and_context_length(v):
    assert v.ids([0, v.vocab_size - 1], "ids") == [0, v.vocab_size - 1]
    e = error(v.ids, [0, v.vocab_size], "ids")
    assert e.param == "ids" and f"[0, {v.vocab_size - 1}]" in e.message
    e = error(v.ids, [0] * 16, "ids")
    assert e.code == "context_length_exceeded" and "maximum context length is 16 tokens" in e.message
    assert "at most 15 tokens" in e.message


def test_unknown_model_is_404_and_bad_json_400(v):
    v.model({}), v.model({"model": "tiny"})
    e = error(v.model, {"model": "gpt-4"})
    assert (e.status, e.param, e.code) == (404, "model", "model_not_found")
    assert parse_json(b'{"a": 1}') == {"a": 1}
    for raw in (b"{not json", b"[1, 2]", b"\xff"):
        e = error(parse_json, raw)
        assert e.status == 400 and e.param == "body"
