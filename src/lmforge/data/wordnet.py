"""Labelled tasks built from WordNet 3.0 (Miller 1995; Fellbaum 1998): human-written glosses, the 45
lexicographer files ("supersenses") they were filed under, and example sentences that use the defined word.

The shipped file (data/corpora/wordnet.jsonl.xz, built by scripts/build_wordnet_tasks.py from the Debian
package `wordnet-base`; licence in data/corpora/WORDNET-LICENSE) holds one record per synset:

    {"id": "00002724-v", "lex": 29, "lemmas": ["choke"],
     "definition": "breathe with great difficulty, as when experiencing a strong emotion",
     "examples": [["She choked with emotion when she spoke about her deceased husband", 4, 10]]}

where an example's two numbers are the character span of the defined word in it (inflections included;
null when none of the synset's lemmas could be found). Three tasks are read from it, split by synset
(`split_of`: a hash of the synset id, ~80/10/10), so no gloss or example is in two splits:

- "supersense": definition -> one of LEXNAMES (45 classes; noun.animal, verb.motion, ...)
- "qa":         question = the definition, context = one example, answer = the span of the defined word
- "tags":       the same examples as word tokens tagged B-TERM / I-TERM / O

    >>> examples, labels = load_task("qa", "train")
    >>> ex = examples[0]; ex["context"][ex["start"]:ex["end"]] == ex["answer"]
    True
"""
from __future__ import annotations

import hashlib
import json
import lzma
import re
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).parent / "corpora" / "wordnet.jsonl.xz"
TASKS = ("supersense", "qa", "tags")
SPLITS = ("train", "val", "test")
TAGS = ("O", "B-TERM", "I-TERM")

# lexnames(5WN): the lexicographer file numbers 00-44, in order.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute",
    "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon", "noun.plant",
    "noun.possession", "noun.process", "noun.quantity", "noun.relation", "noun.shape", "noun.state",
    "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl",
)

# wndb(5WN): data.<file> holds the synsets of one part of speech; the id suffix is the file's letter
# (adjective satellites "s" live in data.adj and get "a", so an offset + letter names one line).
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}


def split_of(synset_id: str) -> str:
    """The fixed split of a synset: the first 8 bytes of sha1(id) mod 10 -> 8 val, 9 test, else train.

    A hash, not the file order, so that related synsets (neighbours in a lexicographer file) scatter.
    """
    bucket = int.from_bytes(hashlib.sha1(synset_id.encode()).digest()[:8], "big") % 10
    return "val" if bucket == 8 else "test" if bucket == 9 else "train"


# ---------------------------------------------------------------------------------- reading the database

_QUOTED = re.compile(r'"([^"]*)"')
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # wninput(5WN): syntactic markers on adjectives, e.g. "elect(ip)"


def split_gloss(gloss: str) -> tuple[str, list[str]]:
    """A gloss is a definition then quoted example sentences -> (definition, examples).

    Example: 'breathe hard; "She choked with emotion"' -> ('breathe hard', ['She choked with emotion'])
    The definition is the text before the first double quote (glosses mark examples only with double quotes;
    quoted terms inside definitions use `backquotes'), without the separator that precedes the examples.
    """
    first = gloss.find('"')
    definition = (gloss if first < 0 else gloss[:first]).strip().rstrip(";:,").strip()
    examples = [e.strip() for e in _QUOTED.findall(gloss[first:])] if first >= 0 else []
    return definition, [e for e in examples if e]


def parse_data_line(line: str, pos: str) -> dict:
    """One synset line of data.<pos> (wndb(5WN) 'Data File Format') -> {id, lex, lemmas, definition, examples}.

    synset_offset lex_filenum ss_type w_cnt(hex) [word lex_id(hex)]... p_cnt [ptr]... [frames] | gloss
    """
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lex, n_words = fields[0], int(fields[1]), int(fields[3], 16)
    words = fields[4:4 + 2 * n_words:2]
    lemmas = []
    for w in words:
        w = _ADJ_MARKER.sub("", w).replace("_", " ")
        if w not in lemmas:
            lemmas.append(w)
    definition, examples = split_gloss(gloss.strip())
    return {"id": f"{offset}-{pos}", "lex": lex, "lemmas": lemmas, "definition": definition, "examples": examples}


def read_exceptions(path) -> dict[str, set[str]]:
    """An exception list (*.exc: 'inflected base [base...]' per line) -> {base: {inflected, ...}}, spaces for _.

    Example line: 'geese goose' -> {'goose': {'geese'}}
    """
    out: dict[str, set[str]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        words = [w.replace("_", " ") for w in line.split()]
        for base in words[1:]:
            out.setdefault(base, set()).add(words[0])
    return out


# ---------------------------------------------------------------------------------- inflection

_VOWELS = set("aeiou")


def _doubles(w: str) -> bool:
    """Consonant-vowel-consonant ending whose last consonant may double before -ed/-ing/-er (stop -> stopped).

    Whether it does depends on stress (visit -> visited), which the database does not record: callers use
    both spellings as candidates, and the one that is not a word never occurs in the text.
    """
    return (len(w) >= 3 and w[-1] not in _VOWELS and w[-1] not in "wxy" and w[-2] in _VOWELS
            and w[-3] not in _VOWELS and w[-1].isalpha() and w[-3].isalpha())


def _s_form(w: str) -> set[str]:
    """Plural noun / third person singular verb: -s, -es after sibilants and o, consonant+y -> -ies."""
    if re.search(r"(s|x|z|ch|sh)$", w):
        return {w + "es"}
    if len(w) > 1 and w[-1] == "y" and w[-2] not in _VOWELS:
        return {w[:-1] + "ies"}
    return {w + "s", w + "es"} if w.endswith("o") else {w + "s"}


def _verb_forms(w: str) -> set[str]:
    """Regular English verb inflection: -s/-es/-ies, -ed/-d/-ied, -ing (with e-drop, ie -> ying) and the
    doubled final consonant of a CVC ending (stop -> stopped, stopping)."""
    forms = set(_s_form(w))
    if w.endswith("e"):
        forms |= {w + "d", w + "ing"}           # "see" -> "seeing", "dye" -> "dyeing"
        forms.add(w[:-2] + "ying" if w.endswith("ie") else w[:-1] + "ing")  # "die" -> "dying", "make" -> "making"
    elif len(w) > 1 and w[-1] == "y" and w[-2] not in _VOWELS:
        forms |= {w[:-1] + "ied", w + "ing"}    # "carry" -> "carried", "carrying"
    else:
        forms |= {w + "ed", w + "ing"}
    if _doubles(w):
        forms |= {w + w[-1] + "ed", w + w[-1] + "ing"}
    return forms


def _adj_forms(w: str) -> set[str]:
    """Comparative and superlative: -er/-est, -r/-st after e, consonant+y -> -ier/-iest, doubled CVC."""
    if w.endswith("e"):
        return {w + "r", w + "st"}
    if len(w) > 1 and w[-1] == "y" and w[-2] not in _VOWELS:
        return {w[:-1] + "ier", w[:-1] + "iest"}
    forms = {w + "er", w + "est"}
    if _doubles(w):
        forms |= {w + w[-1] + "er", w + w[-1] + "est"}
    return forms


def surface_forms(lemma: str, pos: str, exceptions: dict[str, set[str]] | None = None) -> set[str]:
    """The lemma and its inflected forms. Multiword lemmas inflect their head: the last word of a noun
    ("living things"), the first of a verb ("took a breath"); adjectives of one word get -er/-est.
    Irregular forms come from the exception lists (morph(3WN) reads the same *.exc files backwards).

    Example: surface_forms("stop", "v") -> {"stop", "stops", "stopped", "stopping", "stoped", "stoping"}
    """
    if pos not in POS_FILES:
        raise ValueError(f"unknown part of speech {pos!r}: use one of {', '.join(POS_FILES)}")
    exceptions = exceptions or {}
    words = lemma.split(" ")
    forms = {lemma} | exceptions.get(lemma, set())
    if pos == "n":  # the head is usually last ("living things"), but first before "of" ("bills of attainder")
        for i in {0, len(words) - 1}:
            inflected = _s_form(words[i]) | exceptions.get(words[i], set())
            forms |= {" ".join(words[:i] + [f] + words[i + 1:]) for f in inflected}
    elif pos == "v":
        head = words[0]
        inflected = _verb_forms(head) | exceptions.get(head, set())
        forms |= {" ".join([f] + words[1:]) for f in inflected}
    elif pos == "a" and len(words) == 1:
        forms |= _adj_forms(lemma)
    # Compounds are spelled open, hyphenated or both ("double quick", "double-quick").
    return forms | {f.replace(" ", "-") for f in forms} | {f.replace("-", " ") for f in forms}


def find_term(text: str, lemmas: list[str], pos: str, exceptions: dict[str, set[str]] | None = None):
    """The first (start, end) character span in `text` of any surface form of any lemma, or None.

    Whole words only (no letter or digit on either side); at one position the longest form wins
    ("living things" over "living"). Lemmas with a capital letter (names, acronyms: "US", "A") match
    case-sensitively; the rest ignore case, so a sentence-initial "Dogs" is found.

    Example: find_term("She choked with emotion", ["choke"], "v") -> (4, 10)
    """
    best = None
    for sensitive in (True, False):
        forms = set()
        for lemma in lemmas:
            if (lemma != lemma.lower()) == sensitive:
                forms |= surface_forms(lemma, pos, exceptions)
        if not forms:
            continue
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f)))
        m = re.search(rf"(?<!\w)(?:{alternatives})(?!\w)", text, 0 if sensitive else re.IGNORECASE)
        if m and (best is None or (m.start(), -m.end()) < (best[0], -best[1])):
            best = (m.start(), m.end())
    return best


def build(wordnet_dir) -> list[dict]:
    """Every synset of a WordNet 3.0 database directory (data.noun, ..., *.exc), with each example's span.

    Records as in the module docstring; examples whose defined word was not found keep [text, None, None].
    """
    wordnet_dir = Path(wordnet_dir)
    missing = [f"data.{name}" for name in POS_FILES.values() if not (wordnet_dir / f"data.{name}").is_file()]
    if missing:
        raise ValueError(f"{wordnet_dir} is not a WordNet database directory: {', '.join(missing)} missing "
                         "(on Debian: apt-get install wordnet-base, then use /usr/share/wordnet)")
    records = []
    for pos, name in POS_FILES.items():
        exc_path = wordnet_dir / f"{name}.exc"
        exceptions = read_exceptions(exc_path) if exc_path.is_file() else {}
        with open(wordnet_dir / f"data.{name}", encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):  # the licence header: lines start with two spaces and a number
                    continue
                rec = parse_data_line(line, pos)
                rec["examples"] = [[e, *(find_term(e, rec["lemmas"], pos, exceptions) or (None, None))]
                                   for e in rec["examples"]]
                records.append(rec)
    return records


# ---------------------------------------------------------------------------------- the tasks

_WORD = re.compile(r"\w+|[^\w\s]")


def word_tokens(text: str) -> list[tuple[str, int, int]]:
    """Words and single punctuation marks with their character offsets.

    Example: "Don't stop." -> [("Don", 0, 3), ("'", 3, 4), ("t", 4, 5), ("stop", 6, 10), (".", 10, 11)]
    """
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def bio_tags(offsets: list[tuple[int, int]], start: int, end: int) -> list[str]:
    """BIO tags (Ramshaw & Marcus 1995) for one span over tokens given as (start, end) offsets:
    the first token inside [start, end) is B-TERM, the others inside I-TERM, the rest O.

    Example: offsets of "She choked with emotion", span (4, 10) -> ["O", "B-TERM", "O", "O"]
    """
    tags, inside = [], False
    for s, e in offsets:
        if start <= s and e <= end:
            tags.append("I-TERM" if inside else "B-TERM")
            inside = True
        else:
            tags.append("O")
    return tags


@lru_cache(maxsize=1)
def synsets() -> tuple[dict, ...]:
    """Every WordNet 3.0 synset record (117,659), from the shipped file."""
    with lzma.open(DATA_FILE, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


def load_task(name: str, split: str) -> tuple[list[dict], tuple[str, ...]]:
    """(examples, label names) of one task and split.

    supersense: {id, text (the definition), label (index into LEXNAMES), lemmas}
    qa:         {id, synset, question (the definition), context, answer, start, end}; context[start:end] == answer
    tags:       {id, synset, question, context, tokens, offsets (into context), tags (B-TERM/I-TERM/O)}, one per qa example
    Label names: LEXNAMES for supersense, TAGS for tags, () for qa.
    """
    if name not in TASKS:
        raise ValueError(f"unknown WordNet task {name!r}: choose one of {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    out = []
    for rec in synsets():
        if split_of(rec["id"]) != split or not rec["definition"]:
            continue
        if name == "supersense":
            out.append({"id": rec["id"], "text": rec["definition"], "label": rec["lex"], "lemmas": rec["lemmas"]})
            continue
        for i, (context, start, end) in enumerate(rec["examples"]):
            if start is None:
                continue
            ex = {"id": f"{rec['id']}-{i}", "synset": rec["id"], "question": rec["definition"]}
            if name == "qa":
                ex.update(context=context, answer=context[start:end], start=start, end=end)
            else:
                toks = word_tokens(context)
                offsets = [(s, e) for _, s, e in toks]
                ex.update(context=context, tokens=[t for t, _, _ in toks], offsets=offsets,
                          tags=bio_tags(offsets, start, end))
            out.append(ex)
    return out, (LEXNAMES if name == "supersense" else TAGS if name == "tags" else ())


def synonyms(lowercase: bool = True) -> dict[str, set[str]]:
    """{word: other one-word lemmas that share a synset with it}, over all synsets.

    Example: "car" -> {"auto", "automobile", "machine", "motorcar", "railcar", "gondola", ...}
    """
    out: dict[str, set[str]] = {}
    for rec in synsets():
        words = {w.lower() if lowercase else w for w in rec["lemmas"] if " " not in w}
        for w in words:
            out.setdefault(w, set()).update(words - {w})
    return out
