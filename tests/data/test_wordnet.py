"""WordNet tasks: inflection and span finding on textbook cases, the wndb line format, a build from a tiny
database written here, and the shipped data (splits disjoint by synset, stable counts, spans, BIO = spans)."""
import json
import lzma
import os
from pathlib import Path

import pytest

from lmforge.data import wordnet as wn

# Two real data lines (WordNet 3.0, data.verb and data.noun; licence in data/corpora/WORDNET-LICENSE).
CHOKE = ("00002724 29 v 01 choke 0 002 @ 00001740 v 0000 + 14058252 n 0101 01 + 02 00 | breathe with great "
         'difficulty, as when experiencing a strong emotion; "She choked with emotion when she spoke about her '
         'deceased husband"  \n')
CONGENER = ("00003993 03 n 01 congener 0 001 @ 00003553 n 0000 | a whole (a thing or person) of the same kind or "
            'category as another; "lard was also used, though its congener, butter, was more frequently employed";'
            ' "the American shopkeeper differs from his European congener"  \n')


def test_regular_inflection_textbook_cases():
    v = lambda w: wn.surface_forms(w, "v")
    assert {"stops", "stopped", "stopping"} <= v("stop")          # consonant doubling
    assert {"makes", "made", "making"} - v("make") == {"made"}      # e-drop; "made" is irregular (verb.exc)
    assert {"carries", "carried", "carrying"} <= v("carry")        # consonant + y
    assert {"dies", "died", "dying"} <= v("die") and "seeing" in v("see")
    assert {"watches", "watched", "watching"} <= v("watch")
    n = lambda w: wn.surface_forms(w, "n")
    assert {"boxes", "cities", "days", "churches"} <= n("box") | n("city") | n("day") | n("church")
    assert "citys" not in n("city")
    assert "bills of attainder" in n("bill of attainder") and "living things" in n("living thing")
    a = lambda w: wn.surface_forms(w, "a")
    assert {"bigger", "biggest", "happier", "larger", "taller"} <= a("big") | a("happy") | a("large") | a("tall")
    assert wn.surface_forms("quickly", "r") == {"quickly"}
    assert {"double-quick", "double quick"} <= wn.surface_forms("double quick", "r")
    with pytest.raises(ValueError, match="part of speech"):
        wn.surface_forms("x", "q")


def test_exception_lists_give_irregular_forms(tmp_path):
    (tmp_path / "verb.exc").write_text("made make\ntook take\ntaken take\n")
    (tmp_path / "noun.exc").write_text("geese goose\nattorneys_general attorney_general\n")
    verbs, nouns = wn.read_exceptions(tmp_path / "verb.exc"), wn.read_exceptions(tmp_path / "noun.exc")
    assert verbs["take"] == {"took", "taken"} and nouns["attorney general"] == {"attorneys general"}
    assert "made" in wn.surface_forms("make", "v", verbs)
    assert "took a breath" in wn.surface_forms("take a breath", "v", verbs)  # multiword verbs inflect the first word
    assert "geese" in wn.surface_forms("goose", "n", nouns)
    assert wn.find_term("Two geese flew over", ["goose"], "n", nouns) == (4, 9)


def test_find_term_spans():
    assert wn.find_term("She choked with emotion", ["choke"], "v") == (4, 10)
    assert wn.find_term("Dogs bark", ["dog"], "n") == (0, 4)                 # case ignored for lower-case lemmas
    assert wn.find_term("a living thing", ["living thing", "living"], "n") == (2, 14)  # longest at a position
    assert wn.find_term("the choker", ["choke"], "v") is None                 # whole words only
    assert wn.find_term("a vitamin A pill", ["A"], "n") == (10, 11)           # capitalised lemmas: case kept
    assert wn.find_term("now double-quick", ["double quick"], "r") == (4, 16)


def test_gloss_and_data_line_format():
    assert wn.split_gloss('breathe hard; "She choked"; "he chokes"') == ("breathe hard", ["She choked", "he chokes"])
    assert wn.split_gloss("no examples here") == ("no examples here", [])
    assert wn.split_gloss('causing pain;"quinine is bitter";') == ("causing pain", ["quinine is bitter"])
    rec = wn.parse_data_line(CHOKE, "v")
    assert rec == {"id": "00002724-v", "lex": 29, "lemmas": ["choke"],
                   "definition": "breathe with great difficulty, as when experiencing a strong emotion",
                   "examples": ["She choked with emotion when she spoke about her deceased husband"]}
    adj = wn.parse_data_line("00001740 00 a 02 able 0 elect(ip) 0 000 | having the means", "a")
    assert adj["lemmas"] == ["able", "elect"]  # syntactic markers removed
    assert wn.LEXNAMES[29] == "verb.body" and len(wn.LEXNAMES) == 45


def test_build_from_a_tiny_database(tmp_path):
    header = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
    (tmp_path / "data.verb").write_text(header + CHOKE)
    (tmp_path / "data.noun").write_text(header + CONGENER)
    (tmp_path / "data.adj").write_text(header)
    (tmp_path / "data.adv").write_text(header)
    recs = wn.build(tmp_path)
    assert [r["id"] for r in recs] == ["00003993-n", "00002724-v"]
    ex = recs[0]["examples"]
    assert [e[0][e[1]:e[2]] for e in ex] == ["congener", "congener"] and ex[0][1] == 31
    assert recs[1]["examples"][0][1:] == [4, 10]
    with pytest.raises(ValueError, match="not a WordNet database"):
        wn.build(tmp_path / "nowhere")


def test_tokens_and_bio():
    toks = wn.word_tokens("Don't stop.")
    assert toks == [("Don", 0, 3), ("'", 3, 4), ("t", 4, 5), ("stop", 6, 10), (".", 10, 11)]
    offs = [(s, e) for _, s, e in wn.word_tokens("they took a breath now")]
    assert wn.bio_tags(offs, 5, 19) == ["O", "B-TERM", "I-TERM", "I-TERM", "O"]


def test_splits_are_fixed_and_disjoint_by_synset():
    assert wn.split_of("00002724-v") == wn.split_of("00002724-v")
    ids = {s: {ex["id"] for ex in wn.load_task("supersense", s)[0]} for s in wn.SPLITS}
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    for task in ("qa", "tags"):
        synsets = {s: {ex["synset"] for ex in wn.load_task(task, s)[0]} for s in wn.SPLITS}
        assert not (synsets["train"] & synsets["val"] or synsets["train"] & synsets["test"]
                    or synsets["val"] & synsets["test"])
        assert synsets["test"] <= ids["test"]


def test_shipped_counts_are_stable():
    # Changing these numbers changes every reported score: rebuild deliberately and say so.
    assert len(wn.synsets()) == 117659
    counts = {t: [len(wn.load_task(t, s)[0]) for s in wn.SPLITS] for t in wn.TASKS}
    assert counts == {"supersense": [94268, 11762, 11629], "qa": [38378, 4605, 4567], "tags": [38378, 4605, 4567]}
    n_examples = sum(len(r["examples"]) for r in wn.synsets())
    assert n_examples == 48339  # 47550 of them (98.4%) have the defined word found
    _, labels = wn.load_task("supersense", "train")
    assert labels == wn.LEXNAMES
    assert {ex["label"] for ex in wn.load_task("supersense", "train")[0]} == set(range(45))


def test_spans_point_at_the_word_and_bio_matches_them():
    qa, _ = wn.load_task("qa", "val")
    tags, labels = wn.load_task("tags", "val")
    assert labels == wn.TAGS and len(qa) == len(tags)
    for q, t in zip(qa, tags):
        assert q["id"] == t["id"] and q["context"][q["start"]:q["end"]] == q["answer"]
        inside = [i for i, tag in enumerate(t["tags"]) if tag != "O"]
        assert t["tags"][inside[0]] == "B-TERM" and all(t["tags"][i] == "I-TERM" for i in inside[1:])
        assert inside == list(range(inside[0], inside[-1] + 1))  # one contiguous term
        assert t["offsets"][inside[0]][0] == q["start"] and t["offsets"][inside[-1]][1] == q["end"]


def test_answers_are_inflections_of_a_lemma():
    by_id = {r["id"]: r for r in wn.synsets()}
    qa, _ = wn.load_task("qa", "test")
    regular = sum(q["answer"].lower() in {f.lower() for lemma in by_id[q["synset"]]["lemmas"]
                                          for f in wn.surface_forms(lemma, q["synset"][-1])} for q in qa)
    # The rest are irregular forms from the exception lists ("took", "geese"), which are not shipped; the slow
    # test below rebuilds the file from the database and compares every span.
    assert regular / len(qa) > 0.97


def test_bad_task_or_split():
    with pytest.raises(ValueError, match="unknown WordNet task"):
        wn.load_task("ner", "train")
    with pytest.raises(ValueError, match="unknown split"):
        wn.load_task("qa", "dev")


WORDNET_DIR = Path(os.environ.get("WORDNET_DIR", "/usr/share/wordnet"))


@pytest.mark.slow
@pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="needs a WordNet 3.0 database (wordnet-base)")
def test_shipped_file_is_what_the_build_gives():
    with lzma.open(wn.DATA_FILE, "rt", encoding="utf-8") as f:
        shipped = [json.loads(line) for line in f]
    assert wn.build(WORDNET_DIR) == shipped
