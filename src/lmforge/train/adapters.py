"""A run's `lora:` section, for every recipe: the Trainer puts the adapters on the model the recipe built or
loaded, so `lora: {r: 8, targets: [qkv, out]}` turns any recipe's full fine-tuning (lm, sft, ...) into LoRA
fine-tuning (Hu et al. 2021; lmforge.lora), with nothing in the recipe.

The run directory then holds a LoRA model (config.json's "wrapper": {"kind": "lora", ...} records the adapted
layers, the base's sha256 and where the base came from); model.safetensors keeps every tensor, so a resume needs
nothing else; `adapter/` holds only the adapters in PEFT's format (lmforge.lora.save_adapter), for the families
with a Hugging Face form.
"""
from __future__ import annotations

from pathlib import Path

import torch

from lmforge.config import LoRAOptions
from lmforge.lora import LoRAModel, apply, save_adapter
from lmforge.models import FAMILIES, load_model, load_state

ADAPTER_DIR = "adapter"


def adapt(model: torch.nn.Module, run_config: dict | None) -> torch.nn.Module:
    """`model` with the run config's LoRA adapters on it, or `model` itself when the run has no `lora` section
    (or the recipe already put adapters on). With lora.base, the base weights are read from that directory
    first (they must fit the model: same tensors and shapes, else a ValueError naming the tensor)."""
    section = (run_config or {}).get("lora")
    if section is None or isinstance(model, LoRAModel):
        return model
    opts = LoRAOptions.from_dict(section)
    if opts.base is not None:
        source = load_model(opts.base, base_only=True)
        load_state(model, source.state_dict(), f"lora.base {opts.base}")
    # where the base came from: lora.base, else the recipe's own pointer (sft's recipe.init, finetune's model.from)
    recipe_section = (run_config or {}).get("recipe") or {}
    model_section = (run_config or {}).get("model") or {}
    pointer = opts.base or (recipe_section.get("init") if isinstance(recipe_section, dict) else None) \
        or model_section.get("from")
    return apply(model, r=opts.r, alpha=opts.alpha, dropout=opts.dropout, targets=opts.targets,
                 base_path=str(pointer) if pointer is not None else None, train_also=opts.train_also)


def save_adapter_of(model: torch.nn.Module, run_dir: Path) -> None:
    """run_dir/adapter/ in PEFT's format, when `model` is a LoRA model of a family with a Hugging Face form."""
    if isinstance(model, LoRAModel) and not model.train_also:
        family = getattr(type(getattr(model.base, "config", None)), "family", None)
        if family in FAMILIES and FAMILIES[family].hf:
            save_adapter(model, Path(run_dir) / ADAPTER_DIR)
