"""Translation metrics. BLEU (Papineni et al. 2002) and chrF (Popovic 2015) are computed by sacrebleu
(Post 2018), never by hand, and reported with sacrebleu's signature so the number can be reproduced.
Chinese is scored with sacrebleu's `zh` tokenizer (character-level segmentation of CJK), the rest with 13a.

    >>> round(score_translations(["the cat sat on the mat"], ["the cat sat on the mat"], "de")["bleu"], 1)
    100.0
"""
from __future__ import annotations

from collections import Counter

from lmforge.data.translation import placeholders

LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10_000))  # source length in words


def _sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise ValueError("BLEU and chrF need sacrebleu: pip install sacrebleu (or pip install -e '.[dev]')") from None
    return sacrebleu


def score_translations(hyps: list[str], refs: list[str], lang: str) -> dict:
    """Corpus BLEU and chrF of hypotheses against one reference each -> {bleu, chrf, bleu_signature, chrf_signature}."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references: they must pair up one to one")
    if not refs:
        raise ValueError("nothing to score: no sentences")
    sb = _sacrebleu()
    bleu = sb.metrics.BLEU(tokenize="zh" if lang == "zh" else "13a")
    chrf = sb.metrics.CHRF()
    b, c = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {"bleu": b.score, "chrf": c.score, "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


def bleu_by_length(srcs: list[str], hyps: list[str], refs: list[str], lang: str,
                   buckets=LENGTH_BUCKETS) -> list[dict]:
    """Corpus BLEU within each source-length bucket (words): [{bucket: "6-10", n, bleu}] (empty buckets left out)."""
    out = []
    for lo, hi in buckets:
        idx = [i for i, s in enumerate(srcs) if lo <= len(s.split()) <= hi]
        if idx:
            label = f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
            out.append({"bucket": label, "n": len(idx),
                        "bleu": score_translations([hyps[i] for i in idx], [refs[i] for i in idx], lang)["bleu"]})
    return out


def placeholder_accuracy(hyps: list[str], refs: list[str]) -> dict:
    """Among pairs whose reference has printf placeholders, markup or escapes: the fraction of hypotheses
    with exactly the reference's multiset of them. -> {accuracy, n}.

    The reference, not the source, is the standard: a translator may legitimately turn `%s ... %s`
    into `%2$s ... %1$s`. Example: ref "Datei %s nicht gefunden", hyp "%s: nicht gefunden" -> correct.
    """
    n = ok = 0
    for h, r in zip(hyps, refs):
        want = Counter(placeholders(r))
        if want:
            n += 1
            ok += Counter(placeholders(h)) == want
    return {"accuracy": ok / n if n else float("nan"), "n": n}


# ---------------------------------------------------------------------------------- decoding a test set

def translator_path(path):
    """The weights to translate with: a run that averaged its last checkpoints uses whichever weights
    had the lower val loss (recorded in translation.json). Any other directory: itself."""
    import json
    from pathlib import Path
    path = Path(path)
    summary = path / "translation.json"
    if summary.is_file() and json.loads(summary.read_text()).get("best") == "averaged":
        path = path / "averaged"
    return path


def load_translator(path):
    """(model, tokenizer) from a translation run or model directory (the weights of `translator_path`)."""
    import lmforge
    from lmforge.tokenizers import load_tokenizer
    path = translator_path(path)
    model = lmforge.load(path).eval()
    if getattr(model, "decoder_start", None) is None:  # the decoding protocol's mark of an encoder-decoder
        family = getattr(model.config, "family", type(model).__name__)
        raise ValueError(f"{path} holds a {family!r} model, which is not an encoder-decoder; translation needs "
                         "the transformer or lstm family (train one with configs/translate-*.yaml)")
    return model, load_tokenizer(path)


def encode_source(tokenizer, text: str, max_len: int, eos: int | None = None) -> tuple[list[int], bool]:
    """A source sentence as the encoder reads it: its ids, cut to max_len - 1, then </s> (as in training).
    eos: the model's </s> (default the translation recipe's); a tokenizer whose template already ends the
    text with it (T5's) does not get a second one. Returns (ids, whether it was cut)."""
    from lmforge.data.translation import EOS
    eos = EOS if eos is None else eos
    ids = tokenizer.encode(text)
    if ids and ids[-1] == eos:
        ids = ids[:-1]
    return ids[: max_len - 1] + [eos], len(ids) > max_len - 1


def translate(model, tokenizer, texts: list[str], *, beam: int = 4, alpha: float = 0.6, batch_size: int = 32,
              warn=None) -> list[str]:
    """English sentences -> translations. beam 4, alpha 0.6 per Vaswani et al. 2017 sec. 6.1; beam 0 = greedy.

    A source longer than the model's max_len is truncated (its end is dropped) with a warning, so one
    long message does not stop the evaluation of a whole test set.
    """
    c = model.config
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"sentence {i + 1} is empty: give one non-empty sentence per line")
    ids, truncated = [], 0
    for t in texts:
        s, cut = encode_source(tokenizer, t, c.max_len, c.eos_id)
        truncated += cut
        ids.append(s)
    if truncated and warn is not None:
        warn(f"warning: {truncated} source sentence(s) longer than max_len - 1 = {c.max_len - 1} tokens were truncated")
    return decode_sources(model, tokenizer, ids, beam=beam, alpha=alpha, batch_size=batch_size)


def decode_sources(model, tokenizer, ids: list[list[int]], *, beam: int, alpha: float, batch_size: int) -> list[str]:
    """Source id lists (each ending in </s>) -> decoded outputs in their order, greedy (beam 0) or beam search;
    batched by similar length, so there is little padding."""
    import torch

    from lmforge.generate.seq2seq import beam_search, greedy
    c = model.config
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: less padding
    out = [""] * len(ids)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        src = torch.full((len(chunk), max(len(ids[i]) for i in chunk)), c.pad_id, dtype=torch.long)
        for r, i in enumerate(chunk):
            src[r, :len(ids[i])] = torch.tensor(ids[i])
        src = src.to(device)
        hyps = greedy(model, src) if beam == 0 else beam_search(model, src, beam=beam, alpha=alpha)
        for i, h in zip(chunk, hyps):
            out[i] = tokenizer.decode(h, skip_special_tokens=True)
    return out


def evaluate_pairs(model, tokenizer, srcs: list[str], refs: list[str], lang: str, *, beam: int = 4,
                   alpha: float = 0.6, batch_size: int = 32, warn=None) -> dict:
    """Translate `srcs` and score against `refs`: BLEU, chrF, signatures, placeholder accuracy, BLEU by length."""
    import time
    t = time.perf_counter()
    hyps = translate(model, tokenizer, srcs, beam=beam, alpha=alpha, batch_size=batch_size, warn=warn)
    seconds = time.perf_counter() - t
    return {**score_translations(hyps, refs, lang), "placeholders": placeholder_accuracy(hyps, refs),
            "by_length": bleu_by_length(srcs, hyps, refs, lang), "n": len(srcs), "beam": beam,
            "decode_seconds": round(seconds, 1), "hypotheses": hyps}


def plot_cross_attention(model, tokenizer, src_text: str, tgt_text: str, path, layer: int = -1) -> None:
    """PNG heatmap of one decoder layer's cross-attention (mean over heads): target tokens (rows) x source tokens.

    The model reads src_text and is teacher-forced with tgt_text (normally its own translation).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from lmforge.data.translation import BOS, EOS
    from lmforge.io import atomic_write
    from lmforge.plots import token_fonts
    s = tokenizer.encode(src_text)[: model.config.max_len - 1] + [EOS]
    t = [BOS] + tokenizer.encode(tgt_text)[: model.config.max_len - 2]
    with torch.no_grad():
        out = model(torch.tensor([s]), torch.tensor([t]), need_weights=True)
    probs = out.cross_attentions[layer][0].mean(0).float().numpy()  # (T, S)

    def label(i):
        return tokenizer.decode([i]).replace("\n", "\\n") or "·"
    with matplotlib.rc_context(token_fonts()):  # Chinese tokens need a CJK font
        fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(s) + 2), max(3, 0.4 * len(t) + 1.5)), dpi=110)
        ax.imshow(probs, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(s)), [label(i) for i in s], rotation=70, fontsize=8)
        ax.set_yticks(range(len(t)), ["<s>"] + [label(i) for i in t[1:]], fontsize=8)
        ax.set_xlabel("source tokens")
        ax.set_ylabel("target tokens (predicting the next)")
        which = "last decoder layer" if layer == -1 else f"decoder layer {layer}"
        ax.set_title(f"{getattr(model.config, 'family', '')} cross-attention, {which}, mean over heads", fontsize=9)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
