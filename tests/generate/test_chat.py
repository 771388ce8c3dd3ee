"""The chat template and `lmforge chat` driven through its terminal (a real subprocess)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from lmforge.data import chat
from lmforge.data.chat import CHAT_SPECIAL_TOKENS
from lmforge.tokenizers import CharTokenizer

MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|end|>"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Who?"}]


def test_template_with_role_markers_and_sft_mask():
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyzBHW<|>.? \n", special_tokens=CHAT_SPECIAL_TOKENS)
    assert chat.render(MSGS) == ("<|system|>Be brief.<|end|>\n<|user|>Hi <|end|><|end|>\n<|assistant|>Hello.<|end|>\n"
                                 "<|user|>Who?<|end|>\n<|assistant|>")
    ids, mask = chat.encode(tok, MSGS)
    end = tok.special_tokens["<|end|>"]
    # the user's typed "<|end|>" stays text (7 characters), never the special token
    assert ids.count(end) == 4 and tok.decode(ids) == chat.render(MSGS)
    learned = tok.decode([i for i, m in zip(ids, mask) if m])
    assert learned == "Hello.<|end|>\n"  # only the assistant's words (and its end of turn) are learned
    p = chat.build_prompt(tok, MSGS, max_tokens=1000)
    assert p.ids == ids and p.stop_ids == [end] and p.dropped == 0
    # truncation drops the oldest turns, keeps the system prompt and the last message
    short = chat.build_prompt(tok, MSGS, max_tokens=len(ids) - 5)
    assert short.dropped >= 1 and tok.decode(short.ids).startswith("<|system|>Be brief.")
    assert tok.decode(short.ids).endswith("<|user|>Who?<|end|>\n<|assistant|>")
    with pytest.raises(ValueError, match="the last message alone is"):
        chat.build_prompt(tok, MSGS, max_tokens=10)
    with pytest.raises(ValueError, match=r"messages\[0\] must be"):
        chat.render([{"role": "robot", "content": "x"}])


def test_plain_template_for_a_tokenizer_without_markers():
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyzBHWSUA<|>.?: \n")
    p = chat.build_prompt(tok, MSGS, max_tokens=1000)
    assert tok.decode(p.ids) == "System: Be brief.\n\nUser: Hi <|end|>\n\nAssistant: Hello.\n\nUser: Who?\n\nAssistant:"
    assert p.stop_ids == [] and p.stop_text == ["\nUser:"]


def read_until(proc, marker: str, timeout: float = 60) -> str:
    """Read the child's output until `marker` appears (bounded)."""
    buf, end = "", time.time() + timeout
    while marker not in buf:
        assert time.time() < end, f"timed out waiting for {marker!r}; got {buf[-500:]!r}"
        ch = proc.stdout.read(1)
        assert ch, f"process ended before {marker!r}; got {buf[-500:]!r}"
        buf += ch
    return buf


def test_chat_session_regen_reset_probs_and_ctrl_c(tiny_run):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "chat", str(tiny_run), "--system", "Be wise.",
                             "--max-new-tokens", "12", "--seed", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        def send(line):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()

        read_until(proc, "you> ")
        send("And God said unto Noah, make thee an ark of gopher wood")  # too long for a 64-token context
        assert "the last message alone is" in read_until(proc, "you> ")
        send("And God said")
        first = read_until(proc, "you> ")
        assert "assistant> " in first
        send("/probs on")
        assert "[probabilities on]" in read_until(proc, "you> ")
        send("/regen")
        out = read_until(proc, "you> ")
        assert "[new answer diverged at token" in out  # a new seed (deterministic here: --seed 0, then 1, 2)
        assert "[0." in out or "[1.0" in out  # probabilities shown after tokens
        send("/reset")
        assert "[conversation cleared]" in read_until(proc, "you> ")
        # Ctrl-C while an answer streams stops that answer and keeps the session
        send("/probs off")
        read_until(proc, "you> ")
        proc.stdin.write("Go on\n")
        proc.stdin.flush()
        read_until(proc, "assistant> ")
        proc.send_signal(signal.SIGINT)
        read_until(proc, "you> ")  # the session survives (the answer shows " [stopped]" if it was still running)
        send("/probs on")
        assert "[probabilities on]" in read_until(proc, "you> ")
        send("/quit")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_stops_the_answer_and_closes_generation(tiny_run, monkeypatch):
    """In-process: a KeyboardInterrupt while tokens stream ends the answer with [stopped], keeps the tokens
    so far and closes the generator (no more steps computed)."""
    import argparse
    import io

    import lmforge
    import lmforge.generate
    from lmforge.cli.chat import answer
    from lmforge.tokenizers import load_tokenizer
    real, state = lmforge.generate.generate, {}

    def interrupted(*a, **k):
        def steps():
            try:
                for i, s in enumerate(real(*a, **k)):
                    if i == 3:
                        raise KeyboardInterrupt
                    yield s
            finally:
                state["closed"] = True
        return steps()
    monkeypatch.setattr(lmforge.generate, "generate", interrupted)
    model, tok = lmforge.load(tiny_run), load_tokenizer(tiny_run)
    args = argparse.Namespace(max_new_tokens=20, temperature=0.0, top_k=0, top_p=1.0)
    out = io.StringIO()
    text, tokens = answer(model, tok, [{"role": "user", "content": "And"}], args, seed=0, show_probs=False, out=out)
    assert out.getvalue().rstrip().endswith("[stopped]") and len(tokens) == 3 and state["closed"]
