"""The recipe registry: a run config names its recipe (or its family's default), existing configs and run
directories keep working, and every recipe shares the same checks and Ctrl-C handling."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmforge.cli import main
from lmforge.train import recipes
from lmforge.train.recipes import RECIPES, load_run_config, recipe_name, run_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, expected", [
    ("kjv-char", "lm"), ("tiny", "lm"), ("nanogpt-cpu", "lm"), ("translate-en-de", "translation"),
    ("translate-en-zh", "translation"), ("translate-en-de-lstm", "translation"), ("translate-en-zh-lstm", "translation"),
    ("finetune-wordnet", "finetune"), ("span-gettext", "span"), ("text2text-gettext", "text2text"),
    ("text2text-gettext-finetune", "text2text")])
def test_bundled_configs_pick_their_recipe(name, expected):
    cfg = load_run_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.NAME == expected
    assert cfg.to_dict()["recipe"]["name"] == expected
    assert run_config(cfg.to_dict()) == cfg  # what run.json holds reads back as the same config


def test_reading_run_configs_imports_no_torch():
    paths = [str(ROOT / "configs" / n) for n in ("kjv-char.yaml", "translate-en-de.yaml", "finetune-wordnet.yaml")]
    code = (f"import sys; from lmforge.train.recipes import load_run_config as l; [l(p) for p in {paths!r}]; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_recipe_is_named_or_the_familys_default():
    assert recipe_name({"model": {"family": "gpt"}}) == "lm"
    assert recipe_name({"model": {"family": "lstm"}}) == "translation"
    assert recipe_name({"recipe": "lm", "model": {"family": "gpt"}}) == "lm"
    assert recipe_name({"recipe": {"name": "translation", "minutes": 1}}) == "translation"
    # run.json files written before recipes had names: an LM run has no recipe section, a translation
    # run a recipe mapping without a name (and maybe no family)
    assert recipe_name({"model": {}, "data": {"corpus": "kjv"}}) == "lm"
    assert recipe_name({"model": {}, "recipe": {"minutes": 1}}) == "translation"
    cfg = run_config({"model": {"family": "transformer", "preset": "transformer-tiny"}, "recipe": {"minutes": 2}})
    assert cfg.NAME == "translation" and cfg.recipe.minutes == 2
    assert run_config({"recipe": "lm", "model": {"preset": "gpt-tiny"}}).model_config().d_model == 64


def test_bad_recipes_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown recipe 'rlhf'. Known recipes: lm, translation"):
        run_config({"recipe": "rlhf"})
    with pytest.raises(ValueError, match="recipe 'translation' trains encoder-decoder models; family 'gpt' is "
                                         "decoder. Use one of: transformer, lstm"):
        run_config({"recipe": "translation", "model": {"family": "gpt"}})
    with pytest.raises(ValueError, match="unknown model family 'bart'. Known families: gpt, transformer, lstm"):
        run_config({"model": {"family": "bart"}})
    with pytest.raises(ValueError, match="unknown key 'minutes' in recipe"):
        load_run_config(ROOT / "configs" / "tiny.yaml", ["recipe.minutes=3"])
    assert set(RECIPES) >= {"lm", "translation"}


def test_resume_reads_a_run_json_written_before_recipes_had_names(tmp_path):
    out = tmp_path / "run"
    quick = ["--set", "train.max_steps=4", "--set", "train.eval_interval=2", "--set", "train.progress=false",
             "--set", "train.save_interval=2"]
    assert main(["train", str(ROOT / "configs" / "tiny.yaml"), "--out", str(out), *quick]) == 0
    saved = json.loads((out / "run.json").read_text())
    assert saved["recipe"] == {"name": "lm"}
    del saved["recipe"]  # the layout of run.json before this change
    (out / "run.json").write_text(json.dumps(saved))
    assert main(["train", "--resume", "--out", str(out), "--set", "train.max_steps=6"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6


@pytest.mark.parametrize("error, code, says", [(KeyboardInterrupt(), 130, "interrupted"),
                                                (FloatingPointError("loss is nan at step 3"), 1, "stopped: loss is nan")])
def test_every_recipe_gets_the_same_interrupt_handling(tmp_path, monkeypatch, capsys, error, code, says):
    for name in RECIPES:
        module = recipes.recipe(name)

        def fail(cfg, out, resume=False, **kw):
            raise error
        monkeypatch.setattr(module, "run", fail)
        cfg = run_config({"recipe": name})
        assert recipes.train(cfg, tmp_path / name) == code
        err = capsys.readouterr().err
        assert says in err and "no checkpoint was saved yet" in err
