"""lmforge generate RUN --prompt TEXT [--show text|probs] [--plot PNG] [--attention PNG] [--trace JSONL]

Generate text and show the distribution behind every token: `--show probs` prints one row per step
(token, p, rank, entropy, top alternatives); `--plot` draws them as bars; `--attention` draws where
each new token looked; `--trace` writes every Step as a JSON line.

On a translation run (an encoder-decoder: transformer or lstm) the prompt is the source sentence and
what is generated is its translation, one target token per row; `--attention` then draws the
cross-attention: the source tokens against the generated target tokens.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_sampling_arguments(p, *, temperature: float = 1.0, max_new_tokens: int = 100) -> None:
    """The generation options shared by generate, sample and chat."""
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"at most this many new tokens (default {max_new_tokens})")
    p.add_argument("--temperature", type=float, default=temperature, help=f"0 = greedy; <1 sharper, >1 flatter (default {temperature})")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    p.add_argument("--seed", type=int, default=None, help="random seed (same seed, same text)")


def add_weights_argument(p) -> None:
    """--weights for the decoding commands (generate, chat, serve): lmforge.quantize on the loaded model."""
    p.add_argument("--weights", choices=["fp32", "bf16", "int8"], default=None,
                   help="store the linear layers' weights as int8 (per-channel scales: a quarter of the bytes "
                        "per token) or bf16 (half) before decoding (default: as saved, fp32 for a trained run; "
                        "docs/quantize.md)")


def add_arguments(p) -> None:
    p.add_argument("run", help="an lmforge run/model directory or a Hugging Face GPT-2 directory (with tokenizer.json); "
                               "a translation run translates the prompt")
    p.add_argument("--prompt", required=True, help="text to continue (a translation run: the sentence to translate)")
    add_sampling_arguments(p)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus: smallest set with this much probability (1 = off)")
    p.add_argument("--min-p", type=float, default=0.0, help="drop tokens below min_p x p(top token) (0 = off)")
    p.add_argument("--typical-p", type=float, default=1.0, help="locally typical sampling mass (1 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="CTRL repetition penalty (1 = off)")
    p.add_argument("--no-repeat-ngram", type=int, default=0, help="never repeat an n-gram of this size (0 = off)")
    p.add_argument("--stop", action="append", default=[], help="stop when this text appears (repeatable)")
    p.add_argument("--show", choices=["text", "probs"], default="text",
                   help="text: stream the text; probs: one row per token with p, rank, entropy, alternatives")
    p.add_argument("--alternatives", type=int, default=5, help="alternatives shown/recorded per step (default 5)")
    p.add_argument("--plot", metavar="PNG", help="draw each step's alternatives (raw vs after processors) as bars")
    p.add_argument("--attention", metavar="PNG", help="draw the attention of each new token (heatmap; "
                   "a translation run: its cross-attention over the source)")
    p.add_argument("--layer", type=int, default=-1, help="layer for --attention (default: last)")
    p.add_argument("--head", default="mean", help="head for --attention: an index or 'mean' (default)")
    p.add_argument("--trace", metavar="JSONL", help="write every Step as one JSON line")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence at every step (slow; for checking)")
    add_weights_argument(p)


def load_run(path: str, weights: str | None = None):
    """(model in eval mode, tokenizer) from a run directory or a HF GPT-2 directory. A translation run
    gives the weights `lmforge translate` uses (the averaged ones when they were better). For the decoding
    commands (generate, chat, sample, serve): the model's weights are moved into huge pages
    (lmforge.kernels.hugepages), here, before any thread runs it. weights: "int8" / "bf16" / "fp32" quantizes
    the model first (lmforge.quantize; None: as saved)."""
    import lmforge
    from lmforge.eval.translation import translator_path
    from lmforge.kernels import huge_page_weights
    from lmforge.models import FAMILIES
    from lmforge.tokenizers import load_tokenizer
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist; pass a run directory (e.g. runs/kjv-char) or a HF GPT-2 directory")
    tok = load_tokenizer(path)
    model = lmforge.load(translator_path(path)).eval()
    family = FAMILIES.get(getattr(model.config, "family", None))
    if family is not None and family.decoding == "encoder":
        raise ValueError(f"{path} holds a {model.config.family} model, an encoder: it does not generate text. "
                         f"Try `lmforge embed {path} TEXT` or `lmforge fill-mask {path} TEXT`")
    if tok.vocab_size > model.config.vocab_size:
        raise ValueError(f"{path}: tokenizer.json has {tok.vocab_size} ids but the model only {model.config.vocab_size}")
    if weights is not None:
        lmforge.quantize(model, weights)
    huge_page_weights(model)  # the CLI owns this model; each decoding step streams every weight
    return model, tok


def token_text(tok, i: int) -> str:
    """A token made visible: spaces as '␣', newlines and other controls escaped."""
    return repr(tok.decode([i]))[1:-1].replace(" ", "␣")


def encode_prompt(tok, text: str) -> list[int]:
    if not text:
        raise ValueError("--prompt is empty; give some text to continue")
    return tok.encode(text)


def run(args) -> int:
    import torch

    from lmforge.generate import generate
    from lmforge.tokenizers import eos_ids
    from lmforge.tokenizers.stream import TextStream

    if args.head != "mean" and not args.head.lstrip("-").isdigit():
        raise ValueError(f"--head must be an integer or 'mean', got {args.head!r}")
    model, tok = load_run(args.run, args.weights)
    translating = model.decoder_start is not None  # encoder-decoder: the prompt is the source
    if translating:
        from lmforge.eval.translation import encode_source
        if not args.prompt.strip():
            raise ValueError("--prompt is empty; give a sentence to translate")
        ids, cut = encode_source(tok, args.prompt, model.config.max_len, model.config.eos_id)
        if cut:
            print(f"warning: the source is longer than max_len - 1 = {model.config.max_len - 1} tokens; "
                  "its end was cut", file=sys.stderr)
        eos = [model.config.eos_id]
    else:
        ids, eos = encode_prompt(tok, args.prompt), eos_ids(tok, args.run)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    steps = generate(model, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                     top_p=args.top_p, min_p=args.min_p, typical_p=args.typical_p,
                     repetition_penalty=args.repetition_penalty, no_repeat_ngram_size=args.no_repeat_ngram,
                     eos_token_id=eos, seed=args.seed, use_cache=not args.no_cache,
                     alternatives=args.alternatives, need_weights=bool(args.attention))
    # a translation's text leaves out </s>; a language model's shows what it generated
    stream = TextStream((lambda t: tok.decode(t, skip_special_tokens=True)) if translating else tok.decode, args.stop)
    kept = []
    trace = open(args.trace, "w", encoding="utf-8") if args.trace else None
    try:
        if args.show == "probs":
            print(f"{'source' if translating else 'prompt'}: {args.prompt!r} ({len(ids)} tokens)")
            print(f"{'#':>4}  {'token':<12} {'p':>6} {'p model':>8} {'rank':>5} {'H nats':>7}  "
                  "alternatives: token p model -> p final")
        elif not translating:
            print(args.prompt, end="", flush=True)
        for s in steps:
            kept.append(s)
            piece = stream.push(s.token)
            if trace:
                trace.write(json.dumps(step_record(s, tok)) + "\n")
            if args.show == "probs":
                print(format_step(s, tok))
            else:
                print(piece, end="", flush=True)
            if stream.stopped:
                break
        if args.show == "text":
            print(stream.flush())
    finally:
        if trace:
            trace.close()
    reason = kept[-1].finish_reason if kept else None
    if args.show == "probs":
        print(f"\n{stream.text + stream.flush()!r}")
        print(f"{len(kept)} tokens; stopped by {'stop string' if stream.stopped else reason or 'max tokens'}")
    if args.plot:
        plot_steps(kept, tok, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.attention:
        plot_attention(kept, tok, ids, args.attention, args.layer, args.head, cross=translating)
        print(f"wrote {args.attention}", file=sys.stderr)
    return 0


def format_step(s, tok) -> str:
    alts = "  ".join(f"{token_text(tok, a.token)!s:>4} {a.raw_prob:.2f}->{a.prob:.2f}" +
                     (f"({a.removed_by})" if a.removed_by else "") for a in s.alternatives)
    return (f"{s.index:>4}  {token_text(tok, s.token)!s:<12} {s.prob:>6.3f} {s.raw_prob:>8.3f} {s.rank:>5} "
            f"{s.entropy:>7.2f}  {alts}")


def step_record(s, tok) -> dict:
    """A Step as plain JSON (attention excluded: write it with --attention)."""
    return {"row": s.row, "index": s.index, "token": s.token, "text": tok.decode([s.token]), "prob": s.prob,
            "logprob": s.logprob, "raw_prob": s.raw_prob, "raw_logprob": s.raw_logprob, "rank": s.rank,
            "entropy": s.entropy, "removed": s.removed, "finish_reason": s.finish_reason,
            "alternatives": [{"token": a.token, "text": tok.decode([a.token]), "raw_prob": a.raw_prob,
                              "prob": a.prob, "removed_by": a.removed_by} for a in s.alternatives]}


def plot_steps(steps, tok, path: str, max_steps: int = 24) -> None:
    """One small bar chart per step: the model's probability (light) and after processors (dark)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmforge.plots import token_fonts
    steps = steps[:max_steps]
    if not steps:
        raise ValueError("nothing was generated, so there is nothing to plot")
    cols = min(6, len(steps))
    rows = (len(steps) + cols - 1) // cols
    with matplotlib.rc_context(token_fonts()):  # CJK token labels need a CJK font
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
        for ax in axes.flat[len(steps):]:
            ax.axis("off")
        for ax, s in zip(axes.flat, steps):
            labels = [token_text(tok, a.token) for a in s.alternatives]
            x = range(len(labels))
            ax.bar([i - 0.2 for i in x], [a.raw_prob for a in s.alternatives], 0.4, color="#9ecae1", label="model")
            ax.bar([i + 0.2 for i in x], [a.prob for a in s.alternatives], 0.4, color="#08519c", label="sampled from")
            for i, a in enumerate(s.alternatives):
                if a.token == s.token:
                    ax.axvspan(i - 0.5, i + 0.5, color="#fdae6b", alpha=0.35, lw=0)
            ax.set_xticks(list(x), labels, fontsize=7)
            ax.set_ylim(0, 1)
            ax.set_title(f"#{s.index} {token_text(tok, s.token)!s}  p={s.prob:.2f}", fontsize=8)
            ax.tick_params(axis="y", labelsize=6)
        axes.flat[0].legend(fontsize=6)
        fig.suptitle("each step: top alternatives, model (light) vs after processors (dark); chosen shaded", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attention(steps, tok, prompt_ids, path: str, layer: int, head: str, cross: bool = False) -> None:
    """Heatmap: one row per generated token, one column per token it could attend to: the prompt and
    the generated tokens (self-attention), or the source tokens (`cross`: an encoder-decoder's
    cross-attention, Step.cross_attention)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from lmforge.plots import token_fonts
    if not steps:
        raise ValueError("nothing was generated, so there is no attention to plot")
    maps = [s.cross_attention if cross else s.attention for s in steps]  # each (n_layers, n_heads, S_i)
    n_layers, n_heads = maps[0].shape[:2]
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"--layer must be in [{-n_layers}, {n_layers - 1}], got {layer}")
    if head != "mean" and not -n_heads <= int(head) < n_heads:
        raise ValueError(f"--head must be 'mean' or in [{-n_heads}, {n_heads - 1}], got {head}")
    S = maps[-1].size(-1)
    grid = torch.zeros(len(steps), S)
    for i, m in enumerate(maps):
        a = m[layer]  # (nh, S_i)
        a = a.mean(0) if head == "mean" else a[int(head)]
        grid[i, :a.numel()] = a
    ids = list(prompt_ids) + ([] if cross else [s.token for s in steps])
    with matplotlib.rc_context(token_fonts()):  # CJK token labels need a CJK font
        fig, ax = plt.subplots(figsize=(min(0.22 * S + 2, 30), min(0.22 * len(steps) + 1.5, 20)))
        ax.imshow(grid.numpy(), cmap="viridis", aspect="auto")
        ax.set_xticks(range(S), [token_text(tok, t) for t in ids[:S]], fontsize=6, rotation=90)
        ax.set_yticks(range(len(steps)), [token_text(tok, s.token) for s in steps], fontsize=6)
        if cross:
            ax.set_xlabel("source tokens")
            ax.set_ylabel("generated target token")
            ax.set_title(f"cross-attention, layer {layer}, head {head}", fontsize=9)
        else:
            ax.set_xlabel("attends to (prompt and generated tokens; the query's own input token is the last "
                          "column it sees)")
            ax.set_ylabel("generated token")
            ax.set_title(f"attention, layer {layer}, head {head}")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
