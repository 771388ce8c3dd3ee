"""tokenizer.json files of today's open models: ids, tokens, offsets and text equal to HF `tokenizers`.

Each form is built here with HF `tokenizers` (a BPE trained on the bundled English and Chinese
text, then given the model's normalizer / pre-tokenizer / decoder / template), loaded with
lmforge's load_tokenizer and compared on corpus lines and on edge cases:
- Llama 3 and GLM-4: Split(their regex, Isolated) + ByteLevel(use_regex false), ignore_merges (Llama 3)
- Qwen2: NFC, Split(its regex: one digit per word) + ByteLevel, plain added tokens (<tool_call>)
- Llama 2 / Mistral: Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, byte_fallback, fuse_unk,
  decoder Replace + ByteFallback + Fuse + Strip
- Metaspace pre-tokenizer and decoder, every prepend_scheme, split on and off
The HF comparisons skip without `tokenizers`; the textbook cases and the errors run anyway.
"""
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tok_corpora import sample

from lmforge.tokenizers import AddedToken, BPETokenizer, from_hf_json, load_tokenizer, save_tokenizer
from lmforge.tokenizers.pipeline import BYTE_TO_CHAR, decoder_from_hf

# the pre-tokenizer regexes of Meta-Llama-3 (also GLM-4's) and Qwen2's tokenizer.json files
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]

EDGE = ["🙂👩‍👩‍👧 ok 🙂", "1234567 3.14159 ２０２４年 ⅫⅦ", "a   b\t\t c  ", "\n\n", "line\r\nnext\r\n\r\n",
        "  lead", "trail  ", "\x00\x1b\x7f bell", "𠀀𠀁 rare 龘", "e\u0301 café ﬁne", "İstanbul ǅ ΣΑΣ",
        "I’m he'S it'LL we'VE", "<|im_start|>user\nhi<|im_end|>\n", "a<tool_call>b <tool_call>",
        "<s>Hello</s> <s> x", " <|begin_of_text|> x", "", " ", "▁ already ▁▁ here", "<0x41> literally",
        "tab\tand\u00a0nbsp\u3000ideographic", "零一二三四五"]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "[gMASK]", "<sop>"]


def corpus():
    return sample("kjv", 1200) + sample("zh-prose", 1200) + sample("gettext-en-zh", 400)


def template(*tokens, ids):
    """A TemplateProcessing object: tokens... $A (and tokens... $A tokens... $B)."""
    head = [{"SpecialToken": {"id": t, "type_id": 0}} for t in tokens]
    return {"type": "TemplateProcessing", "single": head + [{"Sequence": {"id": "A", "type_id": 0}}],
            "pair": head + [{"Sequence": {"id": "A", "type_id": 0}}] + head + [{"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in zip(tokens, ids)}}


def byte_level_file(pattern, ignore_merges=False, nfc=False, bos=("<|begin_of_text|>",)):
    """A Llama 3 / Qwen2 / GLM-4 shaped tokenizer.json (as a dict), trained by HF on the corpora."""
    hf = pytest.importorskip("tokenizers")
    tok = hf.Tokenizer(hf.models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = hf.normalizers.NFC() if nfc else None
    tok.pre_tokenizer = hf.pre_tokenizers.Sequence([
        hf.pre_tokenizers.Split(hf.Regex(pattern), behavior="isolated", invert=False),
        hf.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = hf.decoders.ByteLevel()
    tok.train_from_iterator(corpus(), hf.trainers.BpeTrainer(
        vocab_size=3000, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet()))
    tok.add_tokens([hf.AddedToken("<tool_call>", special=False, normalized=False)])
    data = json.loads(tok.to_str())
    byte_pp = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    data["post_processor"] = {"type": "Sequence", "processors": [
        byte_pp, template(*bos, ids=[tok.token_to_id(t) for t in bos])]} if bos else byte_pp
    return data


def sentencepiece_file(pre="llama2", scheme="first", split=True, byte_fallback=True):
    """A Llama 2 / Mistral shaped tokenizer.json: <unk> <s> </s>, the 256 byte tokens, then BPE over
    characters (a small alphabet, so rare characters go through byte fallback); Llama 2's
    normalizer form, or the Metaspace pre-tokenizer form with the given scheme."""
    hf = pytest.importorskip("tokenizers")
    tok = hf.Tokenizer(hf.models.BPE(unk_token="<unk>", byte_fallback=byte_fallback, fuse_unk=True))
    tok.pre_tokenizer = hf.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.train_from_iterator(corpus(), hf.trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS], limit_alphabet=150,
        show_progress=False))
    data = json.loads(tok.to_str())
    data["added_tokens"] = [a for a in data["added_tokens"] if a["content"] not in BYTE_TOKENS]  # model pieces
    llama2_decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    if pre == "llama2":
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        data["pre_tokenizer"] = None
        data["decoder"] = llama2_decoder
    else:  # unsplit: Mistral's newer files (first, split false) keep Llama 2's decoder; split: the Metaspace decoder
        data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}
        data["decoder"] = llama2_decoder if not split else {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme, "split": split}]}
    data["post_processor"] = template("<s>", ids=[1])
    data["added_tokens"].append({"id": data["model"]["vocab"].__len__(), "content": "<tool_call>", "single_word": False,
                                 "lstrip": False, "rstrip": False, "normalized": False, "special": False})
    return data


def assert_same_as_hf(data, texts, detail_every=5):
    """ids of every text, tokens + offsets + decoded text (special tokens kept and skipped) of some."""
    hf = pytest.importorskip("tokenizers")
    ref = hf.Tokenizer.from_str(json.dumps(data))
    ours = from_hf_json(data)
    assert [e.ids for e in ref.encode_batch(texts)] == [ours.encode(t, split_special=True) for t in texts]
    for text in texts[::detail_every] + EDGE:
        e, f = ref.encode(text), ours.encode_full(text, split_special=True)
        assert (f.ids, f.tokens, f.offsets) == (e.ids, e.tokens, e.offsets), text
        for skip in (False, True):
            assert ours.decode(e.ids, skip_special_tokens=skip) == ref.decode(e.ids, skip_special_tokens=skip), text
    pair = ("In the beginning", "起初神创造天地。")
    assert ours.encode(*pair) == ref.encode(*pair).ids
    return ref, ours


# -- byte-level BPE with the open models' regexes --------------------------------------------------
@pytest.mark.parametrize("form", ["llama3", "qwen2", "glm4"])
def test_byte_level_forms_match_hf(form):
    data = {"llama3": lambda: byte_level_file(LLAMA3_PATTERN, ignore_merges=True),
            "qwen2": lambda: byte_level_file(QWEN2_PATTERN, nfc=True, bos=()),
            "glm4": lambda: byte_level_file(LLAMA3_PATTERN, bos=("[gMASK]", "<sop>"))}[form]()
    texts = corpus() + EDGE
    ref, ours = assert_same_as_hf(data, texts)
    assert isinstance(ours, BPETokenizer) and ours.byte_level
    if form != "qwen2":  # (NFC changes some texts)
        assert all(ours.decode(ours.encode(t, add_special_tokens=False)) == t for t in texts)
    if form == "qwen2":  # one digit per word; the plain added token is matched even without split_special
        assert [ours.id_to_token(i) for i in ours.encode("2024")] == ["2", "0", "2", "4"]
        assert ours.encode("a<tool_call>b").count(ours.token_to_id("<tool_call>")) == 1
        assert ours.decode(ours.encode("<tool_call>"), skip_special_tokens=True) == "<tool_call>"  # not special


def test_ignore_merges_keeps_a_vocabulary_word_whole():
    # "abc" is in the vocabulary, but the merges reach it as a + bc, and (a, bc) is no merge
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR.values())}
    for t in ("bc", "ab", "abc"):
        vocab[t] = len(vocab)
    merges = [("b", "c"), ("a", "b"), ("ab", "c")]
    plain, llama3 = BPETokenizer(vocab, merges), BPETokenizer(vocab, merges, ignore_merges=True)
    assert [plain.id_to_token(i) for i in plain.encode("abc")] == ["a", "bc"]
    assert [llama3.id_to_token(i) for i in llama3.encode("abc")] == ["abc"]
    hf = pytest.importorskip("tokenizers")
    for ours in (plain, llama3):
        ref = hf.Tokenizer.from_str(json.dumps(__import__("lmforge.tokenizers", fromlist=["x"]).to_hf_json(ours)))
        for text in ("abc", "abcabc abc", "cab abcd"):
            assert ref.encode(text).ids == ours.encode(text)


# -- SentencePiece-style BPE: byte fallback, Llama 2's normalizer, Metaspace --------------------------
@pytest.mark.parametrize("pre,scheme,split", [("llama2", None, None)] + [
    ("metaspace", s, sp) for s in ("first", "always", "never") for sp in (True, False)])
def test_sentencepiece_forms_match_hf(pre, scheme, split):
    data = sentencepiece_file(pre, scheme, split)
    texts = corpus() + EDGE
    ref, ours = assert_same_as_hf(data, texts)
    assert not ours.byte_level and ours.byte_fallback
    rare = ours.encode_full("龘", add_special_tokens=False).tokens
    assert rare[-3:] == ["<0xE9>", "<0xBE>", "<0x98>"]  # not in the 150-character alphabet: its UTF-8 bytes
    if pre == "llama2" or scheme == "always":  # "▁" in front of every piece, after added tokens too
        # (the decoder drops a leading space, so text that starts with one does not come back)
        assert all(ours.decode(ours.encode(t, add_special_tokens=False)) == t for t in corpus() if t[0] != " ")
        after = ours.encode_full("<s>Hi", split_special=True, add_special_tokens=False).tokens
        assert after[1].startswith("▁")
    if scheme == "first":  # only the start of the input gets a "▁": not the text after <s>
        after = ours.encode_full("<s>Hi", split_special=True, add_special_tokens=False).tokens
        assert after[1] != "▁" and not after[1].startswith("▁")


@pytest.mark.parametrize("fuse_unk,byte_fallback", [(True, False), (False, False), (True, True)])
def test_unknown_characters_match_hf(fuse_unk, byte_fallback):
    """Without byte tokens an unknown character is <unk> (a run fused into one with fuse_unk); with
    byte_fallback but some byte tokens missing it is <unk> too; without unk_token it is dropped."""
    hf = pytest.importorskip("tokenizers")
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate("▁abc")}, "ab": 5, "<0xE4>": 6}
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": fuse_unk, "byte_fallback": byte_fallback, "ignore_merges": False,
             "vocab": vocab, "merges": [["a", "b"]]}
    data = {"version": "1.0", "added_tokens": [], "normalizer": None,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
            "post_processor": None, "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
            "model": model}
    texts = ["abxyc", "xyz ab", "a你b", "ab", "qq q", "", " "]
    ref, ours = hf.Tokenizer.from_str(json.dumps(data)), from_hf_json(data)
    for t in texts:
        e, f = ref.encode(t), ours.encode_full(t)
        assert (f.ids, f.tokens, f.offsets) == (e.ids, e.tokens, e.offsets), t
    no_unk = dict(data, model=dict(model, unk_token=None))
    ref, ours = hf.Tokenizer.from_str(json.dumps(no_unk)), from_hf_json(no_unk)
    assert [ours.encode(t) for t in texts] == [ref.encode(t).ids for t in texts]


def test_byte_fallback_decoder_textbook():
    d = decoder_from_hf({"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    assert d.decode(["▁Hi", "▁", "<0xE4>", "<0xBD>", "<0xA0>", "<0x0A>"]) == "Hi 你\n"
    assert d.decode(["▁a", "<0xE4>", "<0xBD>", "▁b"]) == "a\ufffd\ufffd b"  # cut character: one U+FFFD per byte


# -- added tokens -----------------------------------------------------------------------------------
def test_added_token_options_match_hf():
    hf = pytest.importorskip("tokenizers")
    data = byte_level_file(LLAMA3_PATTERN, bos=())
    n = len(data["model"]["vocab"]) + 1
    for i, (content, opts) in enumerate([("<L>", "lstrip"), ("<R>", "rstrip"), ("<LR>", "lstrip rstrip"),
                                         ("word", "single_word"), ("<special_single>", "single_word")]):
        data["added_tokens"].append({"id": n + i, "content": content, "lstrip": "lstrip" in opts,
                                     "rstrip": "rstrip" in opts, "single_word": "single_word" in opts,
                                     "normalized": False, "special": content.startswith("<s")})
    texts = ["a <L> b", "a  <R>  b", "x \t<LR>\n y", "<L><R><LR>", "word words sword word_ word.",
             " word", "<special_single>x <special_single> y", "<R> <L>", "<|im_start|> <R>  <|im_end|>"]
    ref, ours = hf.Tokenizer.from_str(json.dumps(data)), from_hf_json(data)
    for t in texts:
        e, f = ref.encode(t), ours.encode_full(t, split_special=True)
        assert (f.ids, f.tokens, f.offsets) == (e.ids, e.tokens, e.offsets), t
        assert ours.decode(e.ids, skip_special_tokens=True) == ref.decode(e.ids, skip_special_tokens=True), t


def test_special_tokens_in_user_text_stay_text_unless_asked():
    data = byte_level_file(QWEN2_PATTERN, nfc=True, bos=())
    ours = from_hf_json(data)
    im = ours.token_to_id("<|im_start|>")
    assert im not in ours.encode("<|im_start|>user")
    assert ours.encode("<|im_start|>user", split_special=True)[0] == im
    assert ours.added_tokens == {"<tool_call>": ours.token_to_id("<tool_call>")}
    ours.add_token(AddedToken("<think>"))  # plain: matched without split_special, kept by decode
    assert ours.encode("x<think>y")[1] == ours.token_to_id("<think>")


@pytest.fixture(scope="module")
def three_forms():
    """(HF tokenizer, ours) for the Llama 3, Qwen2 and Llama 2 forms, built once for the fuzz test."""
    hf = pytest.importorskip("tokenizers")
    files = [byte_level_file(LLAMA3_PATTERN, ignore_merges=True), byte_level_file(QWEN2_PATTERN, nfc=True, bos=()),
             sentencepiece_file("llama2")]
    return [(hf.Tokenizer.from_str(json.dumps(d)), from_hf_json(d)) for d in files]


# any code point but surrogates, and pieces the regexes and added tokens treat apart
TEXT = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
                 st.lists(st.sampled_from(["🙂", "汉字", "e\u0301", "\u0000", "\t", "\n", "\r\n", " ", "   ", "'s", "'LL",
                                           "123", "4567", "٣", "²", "Ⅻ", "▁", "<s>", "<|im_start|>", "<tool_call>",
                                           "<0x41>", "\u3000", "\u00a0", "ǅ", "İ", "ﬁ"]), max_size=12).map("".join))


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 150)), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(TEXT)
def test_any_text_matches_hf(three_forms, text):
    for ref, ours in three_forms:
        e = ref.encode(text)
        assert ours.encode(text, split_special=True) == e.ids
        assert ours.decode(e.ids) == ref.decode(e.ids, skip_special_tokens=False)


# -- the other parts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("normalizer,pre_tokenizer", [
    ({"type": "NFKC"}, {"type": "Digits", "individual_digits": True}),
    ({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True,
                                                                                  "strip_right": True}]},
     {"type": "Digits", "individual_digits": False}),
    ({"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "}, None),
    ({"type": "NFKD"}, "Removed"), (None, "MergedWithPrevious"), (None, "MergedWithNext"), (None, "Contiguous"),
    (None, "invert")])
def test_other_normalizers_and_pre_tokenizers_match_hf(normalizer, pre_tokenizer):
    data = byte_level_file(LLAMA3_PATTERN, bos=())
    if isinstance(pre_tokenizer, str):  # a Split on punctuation with this behavior
        split = {"type": "Split", "pattern": {"Regex": r"[\p{P}\s]+"}, "invert": pre_tokenizer == "invert",
                 "behavior": "Isolated" if pre_tokenizer == "invert" else pre_tokenizer}
        steps = [split]
    else:
        steps = [pre_tokenizer] if pre_tokenizer else []
    data["normalizer"] = normalizer
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": steps + data["pre_tokenizer"]["pretokenizers"]}
    assert_same_as_hf(data, corpus()[::3] + EDGE)


def test_files_round_trip_both_ways(tmp_path):
    hf = pytest.importorskip("tokenizers")
    text = "<|begin_of_text|>In the beginning 起初 🙂 2024<tool_call>"
    for name, data in (("llama3", byte_level_file(LLAMA3_PATTERN, ignore_merges=True)),
                       ("llama2", sentencepiece_file("llama2")), ("metaspace", sentencepiece_file("metaspace"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
        ours = load_tokenizer(tmp_path / name)
        saved = save_tokenizer(ours, tmp_path / f"{name}-saved.json")
        back_in_hf, back_in_ours = hf.Tokenizer.from_file(str(saved)), load_tokenizer(saved)
        ref = hf.Tokenizer.from_str(json.dumps(data))
        assert back_in_hf.encode(text).ids == ref.encode(text).ids == back_in_ours.encode(text, split_special=True)
        assert back_in_hf.decode(ref.encode(text).ids) == ref.decode(ref.encode(text).ids)


# -- what is not supported says so ------------------------------------------------------------------
def small_file(**changes):
    vocab = {c: i for i, c in enumerate(BYTE_TO_CHAR.values())}
    data = {"version": "1.0", "added_tokens": [], "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    for k, v in changes.items():
        if k.startswith("model_"):
            data["model"][k[6:]] = v
        else:
            data[k] = v
    return data


@pytest.mark.parametrize("changes,message", [
    (dict(normalizer={"type": "Precompiled", "precompiled_charsmap": ""}), "normalizer of type 'Precompiled'.*NFC"),
    (dict(pre_tokenizer={"type": "UnicodeScripts"}), "pre-tokenizer of type 'UnicodeScripts'.*Metaspace"),
    (dict(decoder={"type": "CTC"}), "decoder of type 'CTC'.*ByteFallback"),
    (dict(pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]}),
     "ByteLevel pre-tokenizer followed by others"),
    (dict(pre_tokenizer={"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"}), "behavior 'Sideways'"),
    (dict(pre_tokenizer={"type": "Split", "pattern": {"Glob": "*"}}), "neither"),
    (dict(pre_tokenizer={"type": "Metaspace", "prepend_scheme": "sometimes"}), "prepend_scheme 'sometimes'"),
    (dict(model_dropout=0.1), "dropout"),
    (dict(model_continuing_subword_prefix="##"), "continuing_subword_prefix"),
    (dict(model_unk_token="<unk>"), "unk_token '<unk>' is not in the vocabulary"),
    (dict(normalizer={"type": "Prepend", "prepend": "▁"},
          added_tokens=[{"id": 256, "content": "<x>", "normalized": True, "special": False}]), "normalized"),
])
def test_unsupported_parts_raise_naming_them(changes, message):
    with pytest.raises(ValueError, match=message):
        from_hf_json(small_file(**changes))


def test_small_file_loads_in_both():
    data = small_file()
    ours = from_hf_json(data)
    assert ours.decode(ours.encode("héllo 🙂")) == "héllo 🙂"
    hf = pytest.importorskip("tokenizers")
    assert hf.Tokenizer.from_str(json.dumps(data)).encode("héllo 🙂").ids == ours.encode("héllo 🙂")


@pytest.mark.parametrize("kind", ["LlamaTokenizerFast", "Qwen2TokenizerFast"])
def test_files_transformers_writes_for_llama_and_qwen2(kind, transformers, tmp_path):
    """transformers builds these models' pipelines itself from a vocab and merges (Llama: Metaspace
    first, unsplit, byte fallback; Qwen2: NFC + its regex); its saved directory loads here with equal
    ids (bos included by the template) and equal decoded text."""
    if kind == "LlamaTokenizerFast":
        data, named = sentencepiece_file("llama2"), dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                                         add_bos_token=True)
    else:
        data, named = byte_level_file(QWEN2_PATTERN, nfc=True, bos=()), dict(eos_token="<|im_end|>",
                                                                             pad_token="<|endoftext|>")
    ref = getattr(transformers, kind)(vocab=data["model"]["vocab"], merges=[tuple(m) for m in data["model"]["merges"]],
                                      **named)
    ref.save_pretrained(tmp_path)
    ours = load_tokenizer(tmp_path)
    for text in corpus()[::6] + EDGE:
        ids = ref(text)["input_ids"]
        assert ours.encode(text, split_special=True) == ids, text
        assert ours.decode(ids) == ref.decode(ids) and ours.decode(ids, skip_special_tokens=True) == \
            ref.decode(ids, skip_special_tokens=True), text
    if kind == "LlamaTokenizerFast":
        assert ours.encode("Hi")[0] == ours.token_to_id("<s>")
