"""LoRA adapters <-> PEFT's adapter directory (adapter_config.json + adapter_model.safetensors).

PEFT names an adapter tensor after the module it adapts in the Hugging Face model, e.g.
`base_model.model.transformer.h.0.attn.c_attn.lora_A.weight` (GPT-2) or
`base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight` (Llama), A (r, in) and B (out, r) in
nn.Linear's layout for every module kind (GPT-2's Conv1D included; PEFT's fan_in_fan_out only changes how it
merges). Each family with a Hugging Face adapter says where its linear layers' rows live there
(`linear_rows` in models/<family>/hf.py); this module maps the adapters, exactly, with nothing else:

- one of our parts covering several HF modules (all of Llama's fused qkv, one A) -> one PEFT adapter per HF
  module, each with that A and its rows of B: B A restricted to those rows is the same product;
- several of our parts on one HF module (q and v slices of GPT-2's fused c_attn) -> one PEFT adapter of rank
  r_q + r_v: A stacked [A_q; A_v], B block-diagonal in the rows of q and v and zero elsewhere, so
  B A = the two slices' updates side by side; its rank goes in PEFT's rank_pattern.

Reading a PEFT adapter gives one part per HF module (Llama's q_proj -> our part "q" of qkv).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import torch

from lmforge.models import lookup

PREFIX = "base_model.model."  # PeftModel's name for the model it wraps, in every saved key


def _rows(family: str, config):
    hf = lookup(family).hf_adapter()
    if hf is None or not hasattr(hf, "linear_rows"):
        raise ValueError(f"family {family!r} has no Hugging Face counterpart, so its adapters have no PEFT form")
    return hf, list(hf.linear_rows(config))


def _alpha(scale: float, r: int) -> float | int:
    alpha = scale * r
    return int(alpha) if float(alpha).is_integer() else alpha


def _shortest_suffixes(chosen: list[str], every: list[str]) -> list[str]:
    """PEFT target_modules for the HF modules `chosen` out of `every`: for each, its shortest dotted suffix that
    matches only chosen modules (PEFT matches a name equal to the target or ending in "." + target).
    Example: chosen = every c_attn of GPT-2 -> ["c_attn"]; only the attention's c_proj -> ["attn.c_proj"]."""
    chosen_set, out = set(chosen), []
    for name in chosen:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if all(m in chosen_set for m in every if m == suffix or m.endswith("." + suffix)):
                break
        if suffix not in out:
            out.append(suffix)
    return sorted(out)


def to_peft(family: str, config, layers: dict, dropout: float, base_name: str | None = None) -> tuple[dict, dict]:
    """(adapter_config, tensors) in PEFT's format for `layers`: our module name -> LoRALinear."""
    hf, rows = _rows(family, config)
    where = defaultdict(list)  # our module -> [(HF module, first row, end row)]
    for ours, hf_name, start, stop, _ in rows:
        where[ours].append((hf_name, start, stop))
    pieces = defaultdict(list)  # HF module -> [(first row in it, A, B rows, rank, scale)]
    for name, layer in layers.items():
        if name not in where:
            raise ValueError(f"the adapter on {name!r} has no place in the Hugging Face {family} model (adaptable "
                             f"there: {', '.join(sorted({re.sub(r'[.][0-9]+[.]', '.N.', k) for k in where}))})")
        for p in layer.parts:
            a, b = layer.lora_A[p.name].detach(), layer.lora_B[p.name].detach()
            covered = 0
            for hf_name, start, stop in where[name]:
                lo, hi = max(start, p.start), min(stop, p.stop)
                if lo < hi:
                    pieces[hf_name].append((lo - start, a, b[lo - p.start:hi - p.start], p.r, p.scale))
                    covered += hi - lo
            if covered != p.stop - p.start:
                raise ValueError(f"the adapter {p.name!r} on {name!r} covers rows the Hugging Face model does not hold")
    sizes = {hf_name: stop - start for _, hf_name, start, stop, _ in rows}
    tensors, ranks = {}, {}
    for hf_name, ps in pieces.items():
        if len(ps) == 1 and ps[0][0] == 0 and ps[0][2].shape[0] == sizes[hf_name]:
            _, a, b, r, scale = ps[0]
        else:  # several slices of one HF matrix: a block-diagonal adapter of the summed rank (module docstring)
            r, scale = sum(p[3] for p in ps), ps[0][4]
            a = torch.cat([p[1] for p in ps])
            b = a.new_zeros(sizes[hf_name], r)
            col = 0
            for first, _, rows_b, rank, s in ps:
                b[first:first + rows_b.shape[0], col:col + rank] = rows_b * (s / scale) if s != scale else rows_b
                col += rank
        tensors[f"{PREFIX}{hf_name}.lora_A.weight"] = a.clone()  # one A shared by q, k, v: a copy each
        tensors[f"{PREFIX}{hf_name}.lora_B.weight"] = b.clone()
        ranks[hf_name] = (r, _alpha(scale, r))
    if not ranks:
        raise ValueError("the model has no LoRA adapters to save")
    (r, alpha), _ = Counter(ranks.values()).most_common(1)[0]
    every = list(dict.fromkeys(hf_name for _, hf_name, *_ in rows))
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
        "r": r, "lora_alpha": alpha, "lora_dropout": dropout,
        "target_modules": _shortest_suffixes(list(ranks), every),
        # the modules whose rank or alpha differ from the most common, by exact name (PEFT matches these keys
        # as regular expressions against the end of a module's name)
        "rank_pattern": {re.escape(k): v[0] for k, v in ranks.items() if v[0] != r},
        "alpha_pattern": {re.escape(k): v[1] for k, v in ranks.items() if v[1] != alpha},
        "fan_in_fan_out": getattr(hf, "FAN_IN_FAN_OUT", False), "bias": "none", "use_rslora": False,
        "use_dora": False, "modules_to_save": None, "init_lora_weights": True, "inference_mode": True,
        "layers_to_transform": None, "layers_pattern": None,
    }
    return adapter_config, tensors


def _pattern(patterns: dict, name: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: the first key that matches the end of the module name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def from_peft(family: str, config, adapter_config: dict, tensors: dict, shapes: dict) -> tuple[dict, float]:
    """Our parts from a PEFT adapter: ({our module: [(part tuple, A, B)]}, dropout). `shapes`: our module ->
    (in_features, out_features), to check every tensor against the model before anything is changed."""
    what = "adapter_config.json"
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{what}: peft_type {adapter_config.get('peft_type')!r} is not LORA; only LoRA adapters load")
    unsupported = [k for k, ok in (("use_dora", not adapter_config.get("use_dora")),
                                   ("bias", adapter_config.get("bias", "none") == "none"),
                                   ("modules_to_save", not adapter_config.get("modules_to_save")))
                   if not ok]
    if unsupported:
        raise ValueError(f"{what} uses {', '.join(unsupported)}, which lmforge's LoRA does not implement "
                         f"(plain LoRA only: use_dora false, bias 'none', no modules_to_save)")
    _, rows = _rows(family, config)
    place = {hf_name: (ours, start, stop, part) for ours, hf_name, start, stop, part in rows}
    modules = defaultdict(dict)
    for key, t in tensors.items():
        m = re.fullmatch(re.escape(PREFIX) + r"(.+)\.lora_([AB])\.weight", key)
        if m is None:
            raise ValueError(f"adapter tensor {key!r} is not a LoRA A or B matrix of a linear layer "
                             f"(expected {PREFIX}<module>.lora_A.weight / .lora_B.weight)")
        modules[m.group(1)][m.group(2)] = t
    r0, alpha0 = adapter_config.get("r", 8), adapter_config.get("lora_alpha", 8)
    rslora = bool(adapter_config.get("use_rslora"))
    out = defaultdict(list)
    for hf_name, ab in sorted(modules.items()):
        if hf_name not in place:
            raise ValueError(f"the adapter adapts {hf_name!r}, which this {family} model's Hugging Face form does not "
                             f"have: the adapter was made for another base model")
        if set(ab) != {"A", "B"}:
            raise ValueError(f"the adapter has lora_{'B' if 'A' in ab else 'A'} but not lora_{'A' if 'A' in ab else 'B'} "
                             f"for {hf_name!r}: the file is incomplete")
        ours, start, stop, part = place[hf_name]
        a, b = ab["A"], ab["B"]
        r = a.shape[0]
        d_in = shapes[ours][0]
        if a.dim() != 2 or b.dim() != 2 or tuple(a.shape) != (r, d_in) or tuple(b.shape) != (stop - start, r):
            raise ValueError(f"adapter for another base: {hf_name}'s lora_A is {tuple(a.shape)} and lora_B "
                             f"{tuple(b.shape)}, but this model needs ({r}, {d_in}) and ({stop - start}, {r})")
        if r != _pattern(adapter_config.get("rank_pattern"), hf_name, r0):
            raise ValueError(f"{hf_name}'s lora_A has rank {r}, but adapter_config.json says "
                             f"{_pattern(adapter_config.get('rank_pattern'), hf_name, r0)}")
        alpha = _pattern(adapter_config.get("alpha_pattern"), hf_name, alpha0)
        scale = alpha / r ** 0.5 if rslora else alpha / r  # rsLoRA (Kalajdzievski 2023): alpha / sqrt(r)
        name = part if stop - start < shapes[ours][1] else "all"
        out[ours].append(((name, start, stop, r, float(scale)), a, b))
    if not out:
        raise ValueError("the adapter file holds no LoRA tensors")
    return dict(out), float(adapter_config.get("lora_dropout", 0.0))
