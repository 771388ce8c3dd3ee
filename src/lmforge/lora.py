"""LoRA for lmforge models (Hu et al. 2021): put adapters on chosen linear layers, train only them, merge them
into the weights and out again, save and load them in PEFT's adapter format.

    from lmforge import lora
    model = lora.apply(gpt, r=8, alpha=16, dropout=0.05, targets=["qkv", "out"])  # a LoRAModel around gpt
    ...train: only the adapters have requires_grad...
    lora.save_adapter(model, "runs/x/adapter")        # adapter_config.json + adapter_model.safetensors (PEFT)
    lora.merge(model); lora.unmerge(model)            # W0 + (alpha/r) B A in place, and back
    model = lora.load_adapter(fresh_gpt, "runs/x/adapter")    # or an adapter PEFT trained on the HF export

Targets name our modules as PEFT's target_modules name HF's: a target matches a linear layer whose name is
it or ends in "." + it ("qkv", "attn.out", "ffn.fc1", "blocks.0.attn.qkv"). Our attention fuses q, k and v in
one `qkv` layer; "q", "k" and "v" adapt one slice of it each (own A and B), "qkv" all three with one A:

    target   GPT-2 in PEFT (fused c_attn)            Llama in PEFT (q_proj, k_proj, v_proj)
    qkv      c_attn, rank r                          q_proj, k_proj, v_proj, each rank r, one shared A
    q, v     c_attn, rank 2r, block-diagonal B       q_proj, v_proj, rank r each (the paper's W_q, W_v)
    out      attn.c_proj                             o_proj
    fc1/fc2  mlp.c_fc / mlp.c_proj                   up_proj / down_proj (gate: gate_proj)

Each way is exact (lmforge.convert.peft). The wrapper records its adapters and a fingerprint of the base
weights, so an adapter is never put on a base it was not trained on (ValueError, nothing changed).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from lmforge.io import atomic_write, atomic_write_json, read_json
from lmforge.nn.lora import LoRALinear, Part

SLICES = ("q", "k", "v")  # slices of MultiHeadAttention's fused qkv, rows in its `split` order
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
FINGERPRINT = "lmforge_base_sha256"  # adapter_model.safetensors metadata: the base weights the adapter was made on


class LoRAModel(nn.Module):
    """A model with LoRA adapters inside (its linear layers replaced by LoRALinear, in place), and the record of
    them. It behaves as the model it wraps (forward, the decoding protocol, `config`, ... are the base's) and
    follows the checkpoint wrapper protocol (`base`, `wrapper_config`, `from_record`: lmforge.train.checkpoint),
    so a training run of it saves, resumes and loads with lmforge.load."""

    def __init__(self, base: nn.Module, dropout: float, fingerprint: str, base_path: str | None = None,
                 train_also: tuple[str, ...] = ()):
        super().__init__()
        self.base = base
        self.dropout, self.fingerprint, self.base_path = dropout, fingerprint, base_path
        self.train_also = tuple(train_also)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules (`base`)
        except AttributeError:
            if name == "base":
                raise
            return getattr(self.base, name)

    def forward(self, *args, **kwargs):
        return self.base(*args, **kwargs)

    def layers(self) -> dict[str, LoRALinear]:
        """Our module name (in the base) -> its LoRALinear."""
        return {name: m for name, m in self.base.named_modules() if isinstance(m, LoRALinear)}

    def wrapper_config(self) -> dict:
        return {"kind": "lora", "dropout": self.dropout, "base_sha256": self.fingerprint, "base_path": self.base_path,
                "train_also": list(self.train_also),
                "layers": {name: [list(p) for p in m.parts] for name, m in self.layers().items()}}

    @classmethod
    def from_record(cls, base: nn.Module, record: dict) -> LoRAModel:
        """Rebuild around `base` (adapters freshly initialised; the checkpoint's tensors are loaded after)."""
        layers = {name: [Part(*p) for p in parts] for name, parts in record["layers"].items()}
        return _inject(base, layers, record["dropout"], record["base_sha256"], record.get("base_path"),
                       train_also=tuple(record.get("train_also", ())))


# ---------------------------------------------------------------------------------- apply

def fingerprint(model: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a model's tensors (LoRA tensors excluded): which base an
    adapter belongs to. A merged adapter has changed the weights, so the model must be unmerged."""
    if any(isinstance(m, LoRALinear) and m.merged for m in model.modules()):
        raise ValueError("the model has merged LoRA adapters: unmerge them before fingerprinting its base weights")
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if ".lora_A." in name or ".lora_B." in name:
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{name.removeprefix('base.')}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)}


def _slices(model: nn.Module, name: str) -> dict[str, tuple[int, int]]:
    """A fused attention projection's q/k/v rows: {"q": (0, 64), "k": (64, 80), ...}, or {} for other layers."""
    parent, _, child = name.rpartition(".")
    split = getattr(model.get_submodule(parent), "split", None) if child == "qkv" else None
    if not isinstance(split, tuple) or len(split) != 3:
        return {}
    bounds = [0, split[0], split[0] + split[1], sum(split)]
    return {s: (bounds[i], bounds[i + 1]) for i, s in enumerate(SLICES)}


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def plan(model: nn.Module, r: int, alpha: float, targets: list[str] | tuple[str, ...]) -> dict[str, list[Part]]:
    """Which layers get which parts for `targets` (see the module docstring); ValueError naming the model's
    adaptable layers when a target matches none, or when two targets claim the same rows."""
    if isinstance(targets, str):
        targets = [targets]
    if not targets:
        raise ValueError("LoRA needs at least one target module, e.g. targets=['qkv'] (see lmforge.lora)")
    if r <= 0 or alpha <= 0:
        raise ValueError(f"LoRA rank r and alpha must be positive, got r={r}, alpha={alpha}")
    linears = _linears(model)
    out: dict[str, list[Part]] = {}
    for target in targets:
        found = 0
        for name, layer in linears.items():
            if _matches(name, target):
                out.setdefault(name, []).append(Part("all", 0, layer.out_features, r, alpha / r))
                found += 1
            for s, (start, stop) in _slices(model, name).items():
                if _matches(name[:-len("qkv")] + s, target):
                    out.setdefault(name, []).append(Part(s, start, stop, r, alpha / r))
                    found += 1
        if not found:
            generic = lambda n: re.sub(r"\.[0-9]+\.", ".N.", n)  # noqa: E731 -- blocks.3.attn.qkv -> blocks.N.attn.qkv
            names = sorted({generic(n) for n in linears})
            fused = sorted({generic(n)[:-len("qkv")] + "{q,k,v}" for n in linears if _slices(model, n)})
            raise ValueError(f"LoRA target {target!r} matches no linear layer of this model. Its linear layers "
                             f"(N = layer index): {', '.join(names)}" + (f"; slices of the fused projection: "
                             f"{', '.join(fused)}" if fused else "") +
                             ". A target matches a layer whose name is it or ends in '.' + it, e.g. 'qkv', 'attn.out'")
    for name, parts in out.items():
        rows = sorted((p.start, p.stop, p.name) for p in parts)
        for (a0, a1, an), (b0, b1, bn) in zip(rows, rows[1:]):
            if b0 < a1:
                which = " and ".join(sorted({"all of the layer" if n == "all" else n for n in (an, bn)}))
                raise ValueError(f"LoRA targets overlap on {name}: {which}; adapt either all of a fused qkv or its "
                                 f"slices q, k, v, and name each layer once")
    return out


def _inject(model: nn.Module, layers: dict[str, list[Part]], dropout: float, fp: str, base_path: str | None,
            tensors: dict | None = None, train_also: tuple[str, ...] = ()) -> LoRAModel:
    """Replace each named linear by a LoRALinear with its parts (A, B from `tensors` when given), freeze
    everything else but the modules `train_also` names, and wrap."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
    also = {t: [m for name, m in model.named_modules() if _matches(name, t)] for t in train_also}
    unmatched = [t for t, ms in also.items() if not ms]
    if unmatched:
        raise ValueError(f"LoRA train_also {unmatched[0]!r} matches no module of this model; its top-level modules: "
                         f"{', '.join(name for name, _ in model.named_children())}")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA adapters; load a fresh base model, or merge and unload them "
                         "first (lmforge.lora.unload)")
    linears = _linears(model)
    missing = [n for n in layers if n not in linears]
    if missing:
        raise ValueError(f"LoRA adapters for layers this model does not have: {missing[:5]}")
    built = {name: LoRALinear(linears[name], parts, dropout) for name, parts in layers.items()}  # may raise: before
    if tensors is not None:                                                                 # any change
        with torch.no_grad():
            for name, layer in built.items():
                for p in layer.parts:
                    a, b = tensors[name][p.name]
                    layer.lora_A[p.name].copy_(a)
                    layer.lora_B[p.name].copy_(b)
    model.requires_grad_(False)  # only the adapters train (Hu et al. sec. 4.1: W0 is frozen)
    for name, layer in built.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, layer)
        layer.lora_A.requires_grad_(True)
        layer.lora_B.requires_grad_(True)
    for ms in also.values():  # trained in full beside the adapters: a new head (PEFT's modules_to_save)
        for m in ms:
            m.requires_grad_(True)
    return LoRAModel(model, dropout, fp, base_path, train_also)


def apply(model: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.05,
          targets: list[str] | tuple[str, ...] = ("qkv",), base_path: str | None = None,
          train_also: list[str] | tuple[str, ...] = ()) -> LoRAModel:
    """Adapters of rank r on the layers `targets` names, scale alpha / r, dropout on their input (PEFT's
    lora_dropout); everything else frozen but the modules `train_also` names (e.g. a new value head, which has
    no pretrained weights to keep; PEFT's modules_to_save). Returns the LoRAModel around `model` (changed in
    place). base_path: where the base weights came from (a run directory), recorded as the adapter's base."""
    layers = plan(model, r, alpha, targets)
    return _inject(model, layers, dropout, fingerprint(model), base_path, train_also=tuple(train_also))


def trainable(model: nn.Module) -> tuple[int, int]:
    """(trained parameters, all parameters), each tensor counted once."""
    ps = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)


# ---------------------------------------------------------------------------------- merge

def _lora_layers(model: nn.Module) -> list[LoRALinear]:
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if not layers:
        raise ValueError("the model has no LoRA adapters (lmforge.lora.apply or load_adapter puts them in)")
    return layers


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, W0 <- W0 + (alpha/r) B A (Hu et al. sec. 4.2: no inference latency).
    Logits stay the same within float rounding; `unmerge` takes the adapters out again."""
    for m in _lora_layers(model):
        m.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Subtract what `merge` added: the base weights come back within one float rounding of the merged sum
    (|error| <= half an ulp of the merged weight; not bit-exact in general)."""
    for m in _lora_layers(model):
        m.unmerge()
    return model


def unload(model: LoRAModel) -> nn.Module:
    """The family model inside, with plain linear layers again (merged weights if merged, else the base's)."""
    base = model.base
    for name, m in list(base.named_modules()):
        if isinstance(m, LoRALinear):
            parent, _, child = name.rpartition(".")
            setattr(base.get_submodule(parent) if parent else base, child, m.plain())
    return base.requires_grad_(True)


# ---------------------------------------------------------------------------------- PEFT format

def _family(model: nn.Module) -> tuple[str, object]:
    cfg = getattr(model, "config", None)
    family = getattr(type(cfg), "family", None)
    if family is None:
        raise ValueError(f"a {type(model).__name__} is not an lmforge family model; PEFT adapters are saved and "
                         f"loaded for family models (their Hugging Face form names the adapted modules)")
    return family, cfg


def save_adapter(model: LoRAModel, directory: str | Path) -> Path:
    """Write only the adapters, as PEFT does: adapter_config.json + adapter_model.safetensors, keyed by the
    Hugging Face export of the base (`lmforge convert --to hf`), so
    peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(export), directory) computes what
    `model` computes. The safetensors metadata carries the base weights' sha256 (load_adapter checks it)."""
    from safetensors.torch import save_file

    from lmforge.convert.peft import to_peft

    if not isinstance(model, LoRAModel):
        raise ValueError("save_adapter takes the LoRAModel that lmforge.lora.apply or load_adapter returned")
    if model.train_also:
        raise ValueError(f"the model also trains {', '.join(model.train_also)} in full; a PEFT adapter file holds "
                         f"the LoRA tensors only. Save the run (its model.safetensors has every tensor) instead")
    family, cfg = _family(model.base)
    adapter_config, tensors = to_peft(family, cfg, model.layers(), model.dropout, model.base_path)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(directory / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt",
                                                                                    FINGERPRINT: model.fingerprint}))
    atomic_write_json(directory / CONFIG, adapter_config)
    return directory


def load_adapter(model: nn.Module, directory: str | Path, *, check_base: bool = True) -> LoRAModel:
    """Put the PEFT adapter in `directory` on `model` (a family model without adapters); returns the LoRAModel.

    ValueError, with `model` untouched, when the adapter was made for another base: a tensor's shape or a module
    the model lacks, or (saved by lmforge, check_base=True) base weights whose sha256 differs from this model's."""
    from safetensors import safe_open

    from lmforge.convert.peft import from_peft

    directory = Path(directory)
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise ValueError(f"{directory} has no {name}: not a PEFT adapter directory")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA adapters; load the adapter into a fresh base model")
    family, cfg = _family(model)
    adapter_config = read_json(directory / CONFIG, "; the adapter directory is damaged")
    try:
        with safe_open(str(directory / WEIGHTS), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors' own error for a truncated or garbled file
        raise ValueError(f"{directory / WEIGHTS} is not a readable safetensors file ({e})") from None
    shapes = {name: (m.in_features, m.out_features) for name, m in _linears(model).items()}
    parts, dropout = from_peft(family, cfg, adapter_config, tensors, shapes)
    fp = fingerprint(model)
    saved = metadata.get(FINGERPRINT)
    if check_base and saved is not None and saved != fp:
        base = adapter_config.get("base_model_name_or_path")
        raise ValueError(f"adapter for another base: {directory} was trained on base weights with sha256 "
                         f"{saved[:12]}... ({base or 'base path not recorded'}), this model's are {fp[:12]}...; load "
                         f"the base it was made for (or pass check_base=False to apply it anyway)")
    layers = {name: [Part(*p) for p, _, _ in ps] for name, ps in parts.items()}
    weights = {name: {p[0]: (a, b) for p, a, b in ps} for name, ps in parts.items()}
    return _inject(model, layers, dropout, fp, adapter_config.get("base_model_name_or_path"), weights)
