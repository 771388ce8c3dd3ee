"""Training recipes: thin layers over the model-agnostic Trainer, one file each, and THE registry.

A recipe module has a torch-free run config (a `RunConfig` subclass named `Run`, with its own `data` and
`recipe` sections) and `run(cfg, out, resume) -> dict`, which builds data, tokenizer and model and trains
them with lmforge.train.loop.Trainer. A run YAML names its recipe (`recipe: lm`, or a mapping
`recipe: {name: translation, minutes: 30}`); without a name the model family's default recipe is used
(lmforge.models.FAMILIES: `lm` for decoder-only families, `translation` for encoder-decoders).

What every recipe shares lives here, once: choosing and validating the run config (`run_config`), the
vocabulary/context checks and the seeded model (`build_model`), and `train`, which runs a recipe with
the same Ctrl-C / NaN handling and process-group teardown for all.

    cfg = load_run_config("configs/kjv-char.yaml", ["train.max_steps=100"])
    train(cfg, "runs/quick")
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, ClassVar

from lmforge.config import RunConfig, read_file
from lmforge.io import read_json
from lmforge.models import FAMILIES, config_class, lookup

RECIPES: dict[str, str] = {  # name -> module; later issues add mlm, finetune, span, blank, distill, sft, reward, ...
    "lm": "lmforge.train.recipes.lm",  # next-token prediction on a text corpus (GPT)
    "translation": "lmforge.train.recipes.translation",  # Vaswani et al. 2017: parallel text, encoder-decoders
    "mlm": "lmforge.train.recipes.mlm",  # Devlin et al. 2019: masked LM + next-sentence prediction (BERT)
    "finetune": "lmforge.train.recipes.finetune",  # Devlin et al. 2019 sec. 4: an encoder + a head on labelled data
    "distill": "lmforge.train.recipes.distill",  # Sanh et al. 2019: a half-depth student learns from a frozen teacher
    "blank": "lmforge.train.recipes.blank",  # Du et al. 2022: GLM's autoregressive blank infilling
}


class RecipeRun(RunConfig):
    """A RunConfig bound to the model registry (lmforge.config knows no family). DECODING: the kinds of model
    the recipe can train (lmforge.models.Family.decoding)."""

    family_config = staticmethod(config_class)
    DECODING: ClassVar[tuple[str, ...]] = ("decoder", "encoder-decoder")

    def __post_init__(self):
        super().__post_init__()
        entry = lookup(self.model.get("family", self.DEFAULT_FAMILY))
        if entry.decoding not in self.DECODING:
            fits = [f.name for f in FAMILIES.values() if f.decoding in self.DECODING]
            raise ValueError(f"recipe {self.NAME!r} trains {' or '.join(self.DECODING)} models; family {entry.name!r} "
                             f"is {entry.decoding}. Use one of: {', '.join(fits)} (or the {entry.recipe!r} recipe)")


def recipe(name: str):
    """The recipe module registered as `name`."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}. Known recipes: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name])


def recipe_name(d: Any) -> str:
    """Which recipe a run config's contents ask for: `recipe` (a name, or a mapping with `name`), else the
    model family's default; a config without a family and with a recipe mapping is a translation run
    (the configs written before recipes had names)."""
    if not isinstance(d, dict):
        return "lm"  # its from_dict says what is wrong
    section = d.get("recipe")
    if isinstance(section, str):
        return section
    if isinstance(section, dict) and section.get("name") is not None:
        return section["name"]
    model = d.get("model")
    family = model.get("family") if isinstance(model, dict) else None
    if family is None:
        return "translation" if isinstance(section, dict) else "lm"
    if family not in FAMILIES:
        lookup(family)  # raises: unknown family, with the known ones
    return FAMILIES[family].recipe


def run_config(d: Any) -> RunConfig:
    """The recipe's run config from a mapping (a YAML file's or a run directory's run.json)."""
    return recipe(recipe_name(d)).Run.from_dict(d)


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    return run_config(read_file(path)).with_overrides(list(overrides))


def resolve(config: str | Path | None, overrides: list[str] = (), *, out: str | Path | None = None,
            resume: bool = False) -> tuple[RunConfig, Path]:
    """(run config, run directory) for `lmforge train CONFIG [--set ...] [--out DIR] [--resume]`.

    A new run reads CONFIG and refuses a directory that already holds a checkpoint. A resumed run reads
    the config saved in DIR/run.json (CONFIG, when given, must not differ from it; --set may change it)."""
    if config is None and not (resume and out):
        raise ValueError("give a run config (e.g. configs/kjv-char.yaml), or --resume --out RUN_DIR")
    out = Path(out) if out else Path("runs") / Path(config).stem
    saved = out / "run.json"
    if not resume:
        cfg = load_run_config(config, overrides)
        if (out / "train_state.pt").exists() or (out / ".staging").exists():
            raise ValueError(f"{out} already holds a checkpoint: pass --resume to continue it, "
                             f"or --out to start a new run elsewhere")
        return cfg, out
    if not saved.is_file():
        raise ValueError(f"nothing to resume in {out}: it has no run.json. Start it without --resume")
    cfg = run_config(read_json(saved, "; the run directory is damaged")).with_overrides(list(overrides))
    if config is not None:
        diff = _differences(cfg.to_dict(), load_run_config(config, overrides).to_dict())
        if diff:
            raise ValueError(f"{config} differs from the config saved in {saved} ({'; '.join(diff)}). "
                             f"A resumed run uses its saved config: drop CONFIG, or change values with --set")
    return cfg, out


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{k}.")
        elif x != y:
            out.append(f"{prefix}{k}: saved {x!r}, file {y!r}")
    return out


def build_model(cfg: RunConfig, tokenizer, length: int, length_key: str):
    """The model a run trains: its config (vocab_size from the tokenizer unless given), checked against the
    tokenizer and the longest sequence the data will feed it (`length`, named `length_key` in errors), and
    initialised from train.seed (the same initial weights on every rank and every run)."""
    import torch

    from lmforge.models import build_model as build

    model_cfg = cfg.model_config(vocab_size=tokenizer.vocab_size)
    if model_cfg.vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model.vocab_size is {model_cfg.vocab_size} but the tokenizer has {tokenizer.vocab_size} "
                         f"tokens; leave model.vocab_size out to use the tokenizer's")
    max_len = getattr(model_cfg, "max_len", None)
    if max_len is not None and length > max_len:
        raise ValueError(f"{length_key} ({length}) is longer than the model's context max_len ({max_len}); "
                         f"lower {length_key} or raise model.max_len")
    torch.manual_seed(cfg.train.seed)
    return build(type(model_cfg).family, model_cfg)


def train(cfg: RunConfig, out: str | Path, resume: bool = False) -> int:
    """Run cfg's recipe into `out`; returns a process exit code (0 done, 130 interrupted, 1 stopped on a NaN).

    Ctrl-C or a non-finite loss leaves the last checkpoint intact and says how to continue; the process
    group (torchrun) is torn down whatever happens."""
    import torch

    from lmforge.train.dist import Dist

    out = Path(out)
    main = Dist().is_main
    try:
        recipe(cfg.NAME).run(cfg, out, resume=resume)
    except (KeyboardInterrupt, FloatingPointError) as e:
        if main:
            from lmforge.train.checkpoint import STATE, load_train_state

            saved = load_train_state(out / STATE)["step"] if (out / STATE).exists() else None
            at = f" at step {e.step}" if isinstance(getattr(e, "step", None), int) else ""  # set by Trainer.fit
            why = f"interrupted{at}" if isinstance(e, KeyboardInterrupt) else f"stopped: {e}"
            where = (f"the last checkpoint (step {saved}) is intact; continue with: lmforge train --resume --out {out}"
                     if saved is not None else "no checkpoint was saved yet")
            print(f"\n{why}; {where}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
