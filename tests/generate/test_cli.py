"""lmforge sample / generate on a real run directory (tiny random GPT + character tokenizer)."""
import json
import shutil

import pytest

from lmforge.cli import main
from lmforge.tokenizers import load_tokenizer


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sample_prints_prompt_and_continuation_reproducibly(tiny_run, capsys):
    code, a, _ = cli(capsys, "sample", str(tiny_run), "--prompt", "In the beginning", "--max-new-tokens", "20", "--seed", "1")
    assert code == 0 and a.startswith("In the beginning") and len(a.rstrip("\n")) > len("In the beginning")
    _, b, _ = cli(capsys, "sample", str(tiny_run), "--prompt", "In the beginning", "--max-new-tokens", "20", "--seed", "1")
    _, c, _ = cli(capsys, "sample", str(tiny_run), "--prompt", "In the beginning", "--max-new-tokens", "20", "--seed", "2")
    assert a == b and a != c


def test_sample_reads_a_hugging_face_directory(tiny_run, tmp_path, capsys):
    import lmforge
    from lmforge.convert.hf import save_hf
    save_hf(lmforge.load(tiny_run), tmp_path / "hf")
    shutil.copy(tiny_run / "tokenizer.json", tmp_path / "hf" / "tokenizer.json")
    args = ["--prompt", "And God", "--max-new-tokens", "15", "--temperature", "0"]
    assert cli(capsys, "sample", str(tmp_path / "hf"), *args)[1] == cli(capsys, "sample", str(tiny_run), *args)[1]


def test_generate_show_probs_trace_and_plots(tiny_run, tmp_path, capsys):
    trace, plot, attn = tmp_path / "t.jsonl", tmp_path / "p.png", tmp_path / "a.png"
    code, out, err = cli(capsys, "generate", str(tiny_run), "--prompt", "And God said", "--max-new-tokens", "8",
                         "--temperature", "0.8", "--top-k", "5", "--seed", "0", "--show", "probs",
                         "--trace", str(trace), "--plot", str(plot), "--attention", str(attn), "--head", "1")
    assert code == 0, err
    vocab = load_tokenizer(tiny_run).vocab_size
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(records) == 8 and [r["index"] for r in records] == list(range(8))
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 8
    for row, r in zip(rows, records):
        cols = row.split()
        assert float(cols[2]) == pytest.approx(r["prob"], abs=1e-3) and int(cols[4]) == r["rank"]
        assert r["removed"] == {"top_k": vocab - 5}
        assert r["rank"] <= 5 and r["token"] in [a["token"] for a in r["alternatives"] if a["removed_by"] is None]
        assert sum(a["prob"] for a in r["alternatives"]) == pytest.approx(1.0, abs=1e-4)  # top-5 = all that is left
    text = "".join(r["text"] for r in records)
    assert repr(text) in out
    for png in (plot, attn):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.parametrize("argv, message", [
    (["--top-p", "1.5"], r"top_p must be in (0, 1]"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
    (["--top-k", "-3"], "top_k must be an integer >= 0"),
    (["--prompt", ""], "--prompt is empty"),
    (["--prompt", "a" * 80], "prompt is 80 tokens but the model's context (max_len) is 64"),
    (["--attention", "x.png", "--layer", "7"], "--layer must be in [-2, 1]"),
])
def test_bad_input_gives_one_clear_line(tiny_run, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, "generate", str(tiny_run), "--prompt", "And", "--max-new-tokens", "3", *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_stop_string_cuts_the_text(tiny_run, capsys):
    _, full, _ = cli(capsys, "generate", str(tiny_run), "--prompt", "And", "--max-new-tokens", "30", "--temperature", "0")
    gen = full[len("And"):].rstrip("\n")
    stop = gen[10:12]
    _, out, _ = cli(capsys, "generate", str(tiny_run), "--prompt", "And", "--max-new-tokens", "30", "--temperature", "0",
                    "--stop", stop)
    assert out.rstrip("\n") == "And" + gen[:gen.index(stop)]


def test_sample_slides_past_the_context_or_says_where_it_stopped(tiny_run, capsys):
    import lmforge
    max_len = lmforge.load(tiny_run).config.max_len
    code, out, err = cli(capsys, "sample", str(tiny_run), "--prompt", "In", "--max-new-tokens", str(max_len + 50),
                         "--temperature", "0")  # greedy: this random model never picks <|endoftext|> here
    assert code == 0 and f"exceed the model's context of {max_len} tokens" in err
    assert len(out.rstrip("\n")) == 2 + max_len + 50  # character tokens: the prompt and every new token
    code, out, err = cli(capsys, "sample", str(tiny_run), "--prompt", "In", "--max-new-tokens", str(max_len + 50),
                         "--temperature", "0", "--no-slide")
    assert code == 0 and f"filled the model's context of {max_len} tokens" in err
    assert f"stopped after {max_len - 2} of {max_len + 50} new tokens" in err  # "In" is 2 char tokens
    _, _, err = cli(capsys, "sample", str(tiny_run), "--prompt", "In", "--max-new-tokens", "5")
    assert err == ""
