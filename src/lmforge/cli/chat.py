"""lmforge chat RUN [--system TEXT]: a terminal chat with streaming answers.

A directory with its own chat template (a Hugging Face chat model: chat_template.jinja or
tokenizer_config.json's "chat_template") is talked to in that template, and answers stop at its end
of turn (lmforge.data.hf_chat); an lmforge run uses lmforge's template (lmforge.data.chat).

Commands: /regen (answer the last message again with a new seed and say where it diverged),
/reset (forget the conversation, keep the system prompt), /probs on|off (show p and the runner-up
after every token), /quit. Ctrl-C stops the answer being written and keeps the session.
"""
from __future__ import annotations

import sys

from lmforge.cli.generate import add_sampling_arguments, add_weights_argument, load_run, token_text


def add_arguments(p) -> None:
    p.add_argument("run", help="an lmforge run/model directory or a Hugging Face directory (with tokenizer.json; "
                               "its chat_template is used when it has one)")
    p.add_argument("--system", default=None, help="system prompt: who the assistant is (default: the one an sft "
                                                  "run was trained with, its run.json data.system; else none)")
    add_sampling_arguments(p, temperature=0.8, max_new_tokens=200)
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95; 1 = off)")
    add_weights_argument(p)


def answer(model, tok, messages, args, seed, show_probs, out=sys.stdout, template=None):
    """Stream one assistant answer; returns (text, tokens). Ctrl-C ends it early.
    template: the directory's chat template (None: lmforge's)."""
    from lmforge.data.chat import build_prompt
    from lmforge.generate import generate
    from lmforge.tokenizers.stream import TextStream

    room = model.config.max_len - min(args.max_new_tokens, model.config.max_len // 2)
    prompt = build_prompt(tok, messages, room, template)
    if prompt.dropped:
        print(f"[context full: the oldest {prompt.dropped} message(s) are left out of what the model sees]", file=out)
    stream = TextStream(tok.decode, prompt.stop_text)
    tokens, steps = [], None
    try:
        print("assistant> ", end="", flush=True, file=out)
        steps = generate(model, prompt.ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=seed, eos_token_id=prompt.stop_ids)
        for s in steps:
            if s.token in prompt.stop_ids:
                break
            tokens.append(s.token)
            piece = stream.push(s.token)
            if show_probs:  # each token as it comes, with its probability and the runner-up's
                runner = next((a for a in s.alternatives if a.token != s.token), None)
                note = f" vs {token_text(tok, runner.token)} {runner.raw_prob:.2f}" if runner else ""
                piece = f"{tok.decode([s.token])}[{s.raw_prob:.2f}{note}]"
            print(piece, end="", flush=True, file=out)
            if stream.stopped:
                break
        print("" if show_probs else stream.flush(), file=out)
    except KeyboardInterrupt:
        if steps is not None:
            steps.close()
        print(" [stopped]", file=out)
    return stream.text.strip(), tokens


class Session:
    """The conversation and the terminal's settings."""

    def __init__(self, model, tok, args, template=None):
        import random
        self.model, self.tok, self.args, self.template = model, tok, args, template
        self.system = [{"role": "system", "content": args.system}] if args.system else []
        self.messages = list(self.system)
        self.show_probs, self.last_tokens = False, None
        self.seed = args.seed if args.seed is not None else random.randrange(2**31)

    def reply(self) -> list[int]:
        self.seed += 1  # a new seed per answer: /regen gives a different one
        text, tokens = answer(self.model, self.tok, self.messages, self.args, self.seed, self.show_probs,
                              template=self.template)
        self.messages.append({"role": "assistant", "content": text})
        return tokens

    def handle(self, line: str) -> bool:
        """Act on one line; False to quit."""
        from lmforge.generate import first_divergence
        cmd = line.strip()
        if cmd in ("/quit", "/exit"):
            return False
        if cmd == "/reset":
            self.messages, self.last_tokens = list(self.system), None
            print("[conversation cleared]")
        elif cmd in ("/probs on", "/probs off"):
            self.show_probs = cmd.endswith("on")
            print(f"[probabilities {'on' if self.show_probs else 'off'}]")
        elif cmd == "/regen":
            if not self.messages or self.messages[-1]["role"] != "assistant":
                print("[nothing to regenerate yet]")
                return True
            self.messages.pop()
            tokens = self.reply()
            i = first_divergence(self.last_tokens or [], tokens)
            print("[same answer]" if i is None else f"[new answer diverged at token {i}]")
            self.last_tokens = tokens
        elif cmd.startswith("/"):
            print(f"[unknown command {cmd.split()[0]}: use /regen /reset /probs on|off /quit]")
        elif cmd:
            self.messages.append({"role": "user", "content": line})
            try:
                self.last_tokens = self.reply()
            except ValueError as e:  # e.g. a message longer than the context: say so, keep the session
                self.messages.pop()
                print(f"[{e}]")
        return True


def trained_system_prompt(run_dir) -> str:
    """The system prompt an SFT run was trained with (run.json: recipe sft, data.system), else ""."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "run.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""  # not ours to judge here: loading the run says what is wrong with it
    data = saved.get("data") if isinstance(saved, dict) else None
    return data.get("system", "") if isinstance(data, dict) and isinstance(data.get("system"), str) else ""


def run(args) -> int:
    from lmforge.data.hf_chat import load_chat_template
    if args.system is None:
        args.system = trained_system_prompt(args.run)
    model, tok = load_run(args.run, args.weights)
    session = Session(model, tok, args, load_chat_template(args.run))
    print("lmforge chat: /regen /reset /probs on|off /quit; Ctrl-C stops an answer")
    while True:
        try:
            if not session.handle(input("you> ")):
                return 0
        except KeyboardInterrupt:  # Ctrl-C between tokens or at the prompt: the session goes on
            print(" [stopped]")
        except EOFError:
            print()
            return 0
