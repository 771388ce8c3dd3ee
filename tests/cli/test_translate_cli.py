"""lmforge translate / lmforge eval bleu on the memorised tiny run, and their errors."""
import io
import json

from lmforge.cli import main


def test_translate_arguments_stdin_and_heatmap(memo_run, tmp_path, capsys, monkeypatch):
    """The CLI prints what the library decodes (beam 4; --greedy), one line per source; the memorised
    model's translations are the references up to a character or two (exact memorisation: BLEU test)."""
    from difflib import SequenceMatcher

    from lmforge.eval.translation import evaluate_pairs, load_translator
    run, pairs, _, _ = memo_run
    model, tok = load_translator(run)
    srcs, refs = [p.src for p in pairs[:4]], [p.tgt for p in pairs[:4]]
    beam = evaluate_pairs(model, tok, srcs[:2], refs[:2], "de", beam=4)["hypotheses"]
    greedy = evaluate_pairs(model, tok, srcs[2:], refs[2:], "de", beam=0)["hypotheses"]
    png = tmp_path / "att.png"
    assert main(["translate", str(run), srcs[0], srcs[1], "--heatmap", str(png)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == beam
    assert png.read_bytes()[:4] == b"\x89PNG" and "heatmap saved" in out.err
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{srcs[2]}\n{srcs[3]}\n"))
    assert main(["translate", str(run), "--greedy"]) == 0
    assert capsys.readouterr().out.splitlines() == greedy
    assert all(SequenceMatcher(None, h, r).ratio() > 0.8 for h, r in zip(beam + greedy, refs))


def test_eval_bleu_on_a_tsv(memo_run, capsys):
    run, _, _, tsv = memo_run
    assert main(["eval", "bleu", str(run), "--data", str(tsv), "--by-length"]) == 0
    out = capsys.readouterr().out
    assert "pairs: 34 (en -> de), beam 4" in out and "tok:13a" in out and "chrF" in out
    assert "placeholder accuracy" in out and "words:" in out
    assert float(out.split("BLEU")[1].split()[0]) > 80  # 32 memorised + 2 unseen val pairs


def test_long_source_is_truncated_with_a_warning(memo_run, capsys):
    run, _, _, _ = memo_run
    assert main(["translate", str(run), "word " * 200]) == 0
    assert "truncated" in capsys.readouterr().err


def test_errors_are_one_clear_line(memo_run, tmp_path, capsys, monkeypatch):
    from lmforge.models import build_model, save_model
    run, _, _, _ = memo_run
    save_model(build_model("gpt", "gpt-tiny"), tmp_path / "gpt")
    cases = [
        (["translate", str(tmp_path / "gpt"), "hello"], "not an encoder-decoder"),
        (["translate", str(run), "hello", "--beam", "0"], "--beam must be >= 1"),
        (["eval", "bleu", str(run), "--data", str(tmp_path / "missing.tsv")], "does not exist"),
    ]
    (tmp_path / "bad.tsv").write_text("domain\ten\n")
    cases.append((["eval", "bleu", str(run), "--data", str(tmp_path / "bad.tsv")], "header must be"))
    (tmp_path / "fr.tsv").write_text("domain\ten\tfr\nx\ta\tb\n")
    cases.append((["eval", "bleu", str(run), "--data", str(tmp_path / "fr.tsv")], "unknown language column"))
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n\nworld\n"))
    assert main(["translate", str(run)]) == 2
    assert "stdin line 2 is empty" in capsys.readouterr().err


def test_lmforge_train_runs_translation_configs(memo_run, tmp_path):
    """`lmforge train` on an encoder-decoder config goes to the translation recipe, and --resume continues it."""
    import yaml
    from tr_helpers import memo_config

    _, _, _, tsv = memo_run
    config = tmp_path / "memo.yaml"
    config.write_text(yaml.safe_dump(memo_config(tsv, steps=20).to_dict()))
    out = tmp_path / "run"
    assert main(["train", str(config), "--out", str(out)]) == 0
    assert (out / "translation.json").is_file() and (out / "train_state.pt").is_file()
    assert main(["train", "--resume", "--out", str(out), "--set", "train.max_steps=30"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 30


def test_generate_on_a_translation_run_shows_steps_and_cross_attention(memo_run, tmp_path, capsys):
    """`lmforge generate RUN --prompt SOURCE`: the prompt is the source; --show probs prints one row per
    target token, the Steps the library yields; --attention draws the cross-attention, source tokens
    against target tokens; plain text is the translation, as `lmforge translate --greedy` gives it."""
    import matplotlib.image
    import pytest

    from lmforge.cli.generate import token_text
    from lmforge.eval.translation import encode_source, load_translator, translate
    from lmforge.generate import generate
    run, pairs, _, _ = memo_run
    model, tok = load_translator(run)
    png, trace = tmp_path / "cross.png", tmp_path / "t.jsonl"
    for text in ("Open the file", pairs[5].src):
        argv = ["generate", str(run), "--prompt", text, "--show", "probs", "--temperature", "0.8", "--seed", "0",
                "--max-new-tokens", "12", "--attention", str(png), "--trace", str(trace)]
        assert main(argv) == 0
        out = capsys.readouterr().out
        src, _ = encode_source(tok, text, model.config.max_len)
        steps = list(generate(model, src, max_new_tokens=12, temperature=0.8, seed=0, need_weights=True,
                              eos_token_id=model.config.eos_id))
        assert out.startswith(f"source: {text!r} ({len(src)} tokens)")
        rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
        assert len(rows) == len(steps) == len(trace.read_text().splitlines())
        for cols, s in zip(rows, steps):
            assert [int(cols[0]), cols[1], int(cols[4])] == [s.index, token_text(tok, s.token), s.rank]
            assert float(cols[2]) == pytest.approx(s.prob, abs=1e-3)
            assert float(cols[3]) == pytest.approx(s.raw_prob, abs=1e-3)
            assert float(cols[5]) == pytest.approx(s.entropy, abs=1e-2)
            assert s.cross_attention.shape == (2, 2, len(src))  # (decoder layers, heads, source tokens)
        image = matplotlib.image.imread(png)  # one row per target token, one column per source token
        height, width = (round(110 * min(0.22 * n + m, cap)) for n, m, cap in ((len(steps), 1.5, 20), (len(src), 2, 30)))
        assert abs(image.shape[0] - height) <= 1 and abs(image.shape[1] - width) <= 1
        assert image[..., :3].std() > 0.05  # a heatmap, not a blank canvas
    assert main(["generate", str(run), "--prompt", pairs[5].src, "--temperature", "0"]) == 0
    assert capsys.readouterr().out.splitlines() == translate(model, tok, [pairs[5].src], beam=0)
