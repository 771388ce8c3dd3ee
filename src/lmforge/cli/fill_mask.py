"""lmforge fill-mask DIR "The [MASK] is shining." [--top-k 5] [--attention PNG --layer all --head all]

What a masked-LM encoder (BERT, DistilBERT with their masked-LM head: BertForMaskedLM, BertForPreTraining,
DistilBertForMaskedLM) predicts at each [MASK]: the top-k tokens of the distribution over the whole
vocabulary, with their probabilities (Devlin et al. 2019, sec. 3.1, "Task #1: Masked LM"). `--attention`
draws the self-attention maps of any encoder, per layer and head, for the input (no [MASK] needed).
all-MiniLM-L6-v2 ships without a masked-LM head (it is a BertModel), so it can draw attention but not fill.
"""
from __future__ import annotations

import copy
import sys


def add_arguments(p):
    p.add_argument("model", help="an encoder directory with tokenizer.json (BERT / DistilBERT)")
    p.add_argument("text", help='text with one or more [MASK] tokens, e.g. "The [MASK] is shining."')
    p.add_argument("--top-k", type=int, default=5, help="tokens to show per [MASK] (default 5)")
    p.add_argument("--attention", metavar="PNG", help="draw the self-attention maps (query tokens x key tokens)")
    p.add_argument("--layer", default="all", help="layer for --attention: an index or 'all' (default)")
    p.add_argument("--head", default="all", help="head for --attention: an index, 'mean' or 'all' (default)")


def predict(model, tok, text: str, top_k: int):
    """(tokens, [(position, [(token, probability), ...]) per [MASK]], attentions per layer (nh, T, T))."""
    import torch

    mask_token = next((t for t in ("[MASK]", "<mask>") if t in tok.special_tokens), None)
    tok = copy.copy(tok)
    tok.padding = None  # one text: no padding (MiniLM's file pads every text to 128)
    enc = tok.encode_full(text, split_special=True)  # "[MASK]" written in the text is the mask token
    ids = torch.tensor([enc.ids])
    types = torch.tensor([enc.type_ids]) if getattr(model.emb, "seg", None) is not None else None
    with torch.inference_mode():
        out = model.eval()(ids, None, types, need_weights=True)
    masks = [i for i, t in enumerate(enc.ids) if mask_token is not None and t == tok.special_tokens[mask_token]]
    filled = []
    if masks:
        probs = out.logits[0, masks].float().softmax(-1)  # (n_masks, vocab)
        best = probs.topk(min(top_k, probs.size(-1)))
        for pos, p, i in zip(masks, best.values.tolist(), best.indices.tolist()):
            filled.append((pos, [(tok.id_to_token(j), q) for j, q in zip(i, p)]))
    return enc.tokens, filled, [a[0] for a in out.attentions]


def run(args) -> int:
    import lmforge
    from lmforge.models import FAMILIES
    from lmforge.tokenizers import load_tokenizer

    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    tok = load_tokenizer(args.model)
    model = lmforge.load(args.model)
    family = FAMILIES.get(getattr(model.config, "family", None))
    if family is None or family.decoding != "encoder":
        raise ValueError(f"{args.model} holds a {getattr(model.config, 'family', '?')} model; fill-mask reads an "
                         "encoder (bert, distilbert)")
    has_head = getattr(model, "mlm", None) is not None
    if not has_head and not args.attention:
        raise ValueError(f"{args.model} has no masked-LM head (its config.json is a plain encoder, e.g. BertModel: "
                         "all-MiniLM-L6-v2 ships without one), so it cannot fill [MASK]. Use a BertForMaskedLM, "
                         "BertForPreTraining or DistilBertForMaskedLM directory, or draw its attention with "
                         "--attention PNG")
    tokens, filled, attentions = predict(model, tok, args.text, args.top_k)
    if has_head and not filled:
        raise ValueError(f"the text has no [MASK] token; write [MASK] where a word should be predicted, e.g. "
                         f"\"The [MASK] is shining.\"")
    for n, (pos, top) in enumerate(filled, 1):
        print(f"[MASK] {n} (token {pos}):")
        for token, p in top:
            print(f"  {p:8.4f}  {token}")
    if args.attention:
        plot_attention_grid(tokens, attentions, args.attention, args.layer, args.head)
        print(f"wrote {args.attention}", file=sys.stderr)
    return 0


def plot_attention_grid(tokens: list[str], attentions, path: str, layer: str, head: str) -> None:
    """One heatmap per (layer, head) chosen: rows are the query tokens, columns the tokens they attend to."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmforge.io import atomic_write
    from lmforge.plots import token_fonts

    n_layers, n_heads = len(attentions), attentions[0].size(0)
    layers = list(range(n_layers)) if layer == "all" else [_index(layer, n_layers, "--layer")]
    heads = ["mean"] if head == "mean" else list(range(n_heads)) if head == "all" else [_index(head, n_heads, "--head")]
    T = len(tokens)
    size = max(1.6, 0.16 * T + 0.6)
    with matplotlib.rc_context(token_fonts()):
        fig, axes = plt.subplots(len(layers), len(heads), squeeze=False,
                                 figsize=(min(size * len(heads) + 1, 60), min(size * len(layers) + 1, 60)))
        for r, li in enumerate(layers):
            for c, h in enumerate(heads):
                a = attentions[li].mean(0) if h == "mean" else attentions[li][h]  # (T, T)
                ax = axes[r][c]
                ax.imshow(a.float().numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
                ax.set_xticks(range(T), tokens if r == len(layers) - 1 else [""] * T, rotation=90, fontsize=6)
                ax.set_yticks(range(T), tokens if c == 0 else [""] * T, fontsize=6)
                ax.set_title(f"layer {li}, head {h}", fontsize=7)
        fig.suptitle("self-attention: rows attend to columns", fontsize=9)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _index(value: str, n: int, flag: str) -> int:
    if not value.lstrip("-").isdigit() or not -n <= int(value) < n:
        raise ValueError(f"{flag} must be 'all'{', mean' if flag == '--head' else ''} or an index in [{-n}, {n - 1}], "
                         f"got {value!r}")
    return int(value) % n
