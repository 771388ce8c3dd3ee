"""Typed, serialisable configs: the machinery every config uses, and the run config. No torch import.

Every config is a dataclass derived from `Config`, validated in `__post_init__`, with named presets.
Each model family keeps its config beside its model (lmforge.models.<family>.config); each training
recipe keeps its own sections beside its code (lmforge.train.recipes.<name>):

    >>> from lmforge.models.gpt.config import GPTConfig
    >>> GPTConfig.preset("gpt-tiny").d_model
    64
    >>> GPTConfig.from_dict({"d_modle": 64})
    Traceback (most recent call last):
    ...
    ValueError: GPTConfig: unknown key 'd_modle'. Allowed keys: ...
"""

import dataclasses
import typing
from pathlib import Path
from typing import Any, ClassVar


def read_file(path: str | Path) -> dict:
    """A config file's contents: YAML, or JSON (YAML is a superset of JSON, so run.json files load too)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from None


class Config:
    """Base for all configs: to_dict / from_dict / from_file / preset, with clear errors."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def allowed_keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, ignore: tuple[str, ...] = ()):
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__}: expected a mapping of keys to values, got {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        allowed = cls.allowed_keys()
        kwargs = {}
        for key, value in d.items():
            if key in ignore:
                continue
            if key not in allowed:
                raise ValueError(f"{cls.__name__}: unknown key {key!r}. Allowed keys: {', '.join(allowed)}")
            kwargs[key] = _coerce(cls.__name__, key, value, hints[key])
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path):
        return cls.from_dict(read_file(path))

    @classmethod
    def preset(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            raise ValueError(f"{cls.__name__}: unknown preset {name!r}. Available: {', '.join(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    def replace(self, **changes):
        return type(self).from_dict({**self.to_dict(), **changes})


def _coerce(owner: str, key: str, value: Any, hint: Any) -> Any:
    """Check `value` against the annotation `hint`; allow int -> float and str from `--set k=v`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(owner, key, value, a)
            except ValueError as e:
                errors.append(str(e))
        # one alternative (X | None): its message; several: each one's, so the user sees every accepted form
        raise ValueError(errors[0] if len(errors) == 1 else "; or ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{owner}: {key}={value!r} is not allowed. Allowed values: {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{owner}: {key} must be a list, got {value!r}")
        return origin(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{owner}: {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"{owner}: {key} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError(f"{owner}: {key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"{owner}: {key} must be a number, got {value!r}")
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{owner}: {key} must be a string, got {value!r}")
        return value
    return value


def check(cond: bool, owner: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{owner}: {msg}")


def check_stack(cfg, owner: str) -> None:
    """The checks every Transformer stack's config shares: positive sizes, heads that divide d_model, a dropout
    in [0, 1), d_ff >= 0 (0: 4 * d_model, filled in by the family)."""
    for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers"):
        check(getattr(cfg, k) > 0, owner, f"{k} must be positive, got {getattr(cfg, k)}")
    check(cfg.d_model % cfg.n_heads == 0, owner,
          f"d_model ({cfg.d_model}) must be divisible by n_heads ({cfg.n_heads})")
    check(0.0 <= cfg.dropout < 1.0, owner, f"dropout must be in [0, 1), got {cfg.dropout}")
    check(cfg.d_ff >= 0, owner, f"d_ff must be >= 0 (0 means 4*d_model), got {cfg.d_ff}")


def check_labels(head: str, labels: tuple[str, ...], owner: str) -> None:
    """The class names of an encoder's fine-tuning head: a classify or tag head has two or more distinct names
    (one output per name, in order); every other head has none (a qa head's two outputs are start and end)."""
    if head in ("classify", "tag"):
        check(len(labels) >= 2, owner, f"head={head!r} needs labels: the names of its classes in index order, "
                                       f"at least 2 (got {len(labels)})")
        check(all(isinstance(x, str) and x for x in labels), owner, "labels must be non-empty strings")
        check(len(set(labels)) == len(labels), owner,
              f"labels must be distinct; repeated: {sorted({x for x in labels if labels.count(x) > 1})}")
    else:
        check(not labels, owner, f"labels name the classes of a classify or tag head; head={head!r} takes none")


Activation = typing.Literal["relu", "gelu", "gelu_tanh", "swiglu", "geglu", "geglu_tanh"]


# --------------------------------------------------------------------------------------------
# Training runs. A run preset in configs/*.yaml is a RunConfig: `recipe` (which training recipe and
# its options), `model` (family, optional preset, field overrides), `data` (the recipe's data section)
# and `train` (TrainConfig, the same for every recipe).
# --------------------------------------------------------------------------------------------

Schedule = typing.Literal["cosine", "inverse_sqrt", "constant"]


@dataclasses.dataclass
class TrainConfig(Config):
    """Optimisation and bookkeeping. Defaults follow nanoGPT's config/train_shakespeare_char.py.

    The global batch is batch_size * grad_accum * (number of processes) windows of block_size tokens.
    """

    max_steps: int = 5000  # optimizer steps (nanoGPT max_iters)
    batch_size: int = 64  # windows per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate; "with baby networks can afford to go a bit higher" (nanoGPT)
    min_lr: float = 1e-4  # cosine floor: lr / 10 per Chinchilla (nanoGPT)
    warmup_steps: int = 100
    schedule: Schedule = "cosine"  # cosine: nanoGPT; inverse_sqrt: Vaswani et al. 2017 eq. 3
    weight_decay: float = 0.1  # applied to 2-D+ weights only (matmuls, embeddings), as in nanoGPT/minGPT
    beta1: float = 0.9
    beta2: float = 0.99  # 0.99 because tokens per step are few (nanoGPT shakespeare_char); GPT-2 recipe: 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    eval_interval: int = 250  # steps between val-loss evaluations (and at the end)
    eval_steps: int = 20  # val batches per evaluation; the same batches every time
    save_interval: int = 250  # steps between checkpoints (and at the end); 0 saves only at the end
    log_interval: int = 10  # steps between rows in metrics.jsonl
    seed: int = 1337
    dtype: typing.Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast only where it is faster
    device: str = "auto"  # auto: cuda if available, else cpu
    # torch.compile the model: false (eager), true, or auto (time both at the start, keep the faster, cache the
    # choice per CPU and torch; lmforge.train.compiling). Compiling takes seconds to minutes up front
    compile: bool | typing.Literal["auto"] = False
    # over torchrun's processes: ddp = a whole copy of the model in each; fsdp = each holds 1/N of every weight,
    # gradient and optimizer state (FSDP2; lmforge.train.dist). Checkpoints are the same full files either way.
    parallel: typing.Literal["ddp", "fsdp"] = "ddp"
    progress: bool = True  # tqdm progress bar on stderr

    def __post_init__(self):
        n = "TrainConfig"
        for k in ("max_steps", "batch_size", "grad_accum", "eval_steps", "log_interval"):
            check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        for k in ("warmup_steps", "eval_interval", "save_interval", "weight_decay", "grad_clip", "min_lr"):
            check(getattr(self, k) >= 0, n, f"{k} must be >= 0, got {getattr(self, k)}")
        check(self.lr > 0, n, f"lr must be positive, got {self.lr}")
        check(self.min_lr <= self.lr, n, f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, n, f"betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        check(self.schedule != "inverse_sqrt" or self.warmup_steps > 0, n,
               "schedule 'inverse_sqrt' needs warmup_steps > 0 (the peak is at the end of warmup)")
        check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), n,
               f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        check(isinstance(self.compile, bool) or self.compile == "auto", n,
              f"compile must be true, false or auto, got {self.compile!r}: true compiles the model with "
              "torch.compile, false trains eager, auto times both on this machine and keeps the faster")


@dataclasses.dataclass
class RecipeOptions(Config):
    """The options a recipe adds to the Trainer (the `recipe` section). A recipe without options uses this."""


@dataclasses.dataclass
class LoRAOptions(Config):
    """A run's `lora:` section: train low-rank adapters on the model the recipe builds or loads, not its weights
    (Hu et al. 2021; lmforge.lora). Any recipe: the Trainer applies it. Absent (or null): full fine-tuning.

        lora: {r: 8, alpha: 16, dropout: 0.05, targets: [qkv, out], base: runs/base}
    """

    r: int = 8  # rank of each adapter; PEFT's default. Hu et al. Table 6: r = 1..8 on W_q, W_v already suffices
    alpha: float = 16.0  # scale alpha / r (paper sec. 4.1); 16 with r = 8 (scale 2) is the usual PEFT pairing
    dropout: float = 0.05  # on the adapters' input (PEFT's lora_dropout); Hu et al. used 0.1 for GPT-2 (Table 11)
    # our module names, matched as PEFT matches target_modules (the name, or its end after a "."): qkv (the fused
    # q/k/v, one A), q / k / v (its slices), out, fc1, fc2, gate (lmforge.lora)
    targets: list[str] = dataclasses.field(default_factory=lambda: ["qkv"])
    base: str | None = None  # a run/model directory whose weights the adapters train on (None: the recipe's own)
    # modules trained in full beside the adapters, by the same name rule: a new head (value, reward) that has no
    # pretrained weights to keep (PEFT's modules_to_save)
    train_also: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        n = "lora"
        check(self.r > 0, n, f"r must be positive, got {self.r}")
        check(self.alpha > 0, n, f"alpha must be positive, got {self.alpha}")
        check(0 <= self.dropout < 1, n, f"dropout must be in [0, 1), got {self.dropout}")
        check(bool(self.targets) and all(isinstance(t, str) and t for t in self.targets), n,
              f"targets must name at least one module, e.g. [qkv, out]; got {self.targets!r}")


@dataclasses.dataclass
class RunConfig(Config):
    """One training run: sections `recipe`, `model`, `data`, `train`, and optionally `lora` (LoRAOptions).

    Example (YAML):
        recipe: lm                                   # or a mapping: {name: translation, minutes: 30}
        model: {family: gpt, preset: gpt-mini, dropout: 0.0}
        data: {corpus: kjv, block_size: 64}
        train: {max_steps: 2000, batch_size: 12, lr: 1e-3}

    This class is the shape; each recipe subclasses it with its own `data` and `recipe` classes and the
    model families it can train (lmforge.train.recipes, which also picks the recipe from a YAML's
    contents). `model.vocab_size` is normally left out: it is taken from the tokenizer.
    """

    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: Config = dataclasses.field(default_factory=RecipeOptions)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    recipe: Config = dataclasses.field(default_factory=RecipeOptions)
    lora: LoRAOptions | None = None  # adapters instead of full fine-tuning (LoRAOptions); None: train every weight

    NAME: ClassVar[str] = ""  # the recipe's name in the registry (lmforge.train.recipes.RECIPES)
    SECTIONS: ClassVar[tuple[str, ...]] = ("model", "data", "train", "recipe", "lora")
    DEFAULT_FAMILY: ClassVar[str] = "gpt"

    @staticmethod
    def family_config(family: str) -> type[Config]:
        """The Config class of a model family; bound to the model registry by lmforge.train.recipes (this
        module knows no family)."""
        raise NotImplementedError

    @classmethod
    def _sections(cls, d: Any) -> dict[str, dict]:
        """Check the top level (a mapping of known sections, each a mapping; `recipe` may be just the name);
        every section, {} if absent; the model section with its family filled in; the recipe's name checked."""
        name = cls.__name__
        if not isinstance(d, dict):
            raise ValueError(f"{name}: expected a mapping with sections {', '.join(cls.SECTIONS)}, got {type(d).__name__}")
        for key in d:
            if key not in cls.SECTIONS:
                raise ValueError(f"{name}: unknown section {key!r}. Allowed sections: {', '.join(cls.SECTIONS)}")
            if key == "recipe" and isinstance(d[key], str):
                continue
            if d[key] is not None and not isinstance(d[key], dict):
                raise ValueError(f"{name}: section {key!r} must be a mapping of keys to values, got {d[key]!r}")
        out = {key: dict(d.get(key) or {}) if not isinstance(d.get(key), str) else {"name": d[key]}
               for key in cls.SECTIONS}
        out["model"].setdefault("family", cls.DEFAULT_FAMILY)
        recipe = out["recipe"].pop("name", cls.NAME)
        if recipe != cls.NAME:
            raise ValueError(f"{name}: recipe {recipe!r} given to the {cls.NAME!r} recipe's config")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, ignore: tuple[str, ...] = ()):
        s = cls._sections(d)
        hints = typing.get_type_hints(cls)
        lora = LoRAOptions.from_dict(s["lora"]) if d.get("lora") is not None else None  # `lora: {}`: the defaults
        return cls(model=s["model"], data=hints["data"].from_dict(s["data"]), train=TrainConfig.from_dict(s["train"]),
                   recipe=hints["recipe"].from_dict(s["recipe"]), lora=lora)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["recipe"] = {"name": self.NAME, **d["recipe"]}
        return d

    def __post_init__(self):
        self.model_config()  # validate family, preset and keys now, not at step 0 of training

    def model_config(self, vocab_size: int | None = None) -> Config:
        """The model's Config: preset, then explicit fields; `vocab_size` fills in when not given explicitly."""
        fields = dict(self.model)
        cls = self.family_config(fields.pop("family", self.DEFAULT_FAMILY))
        preset = fields.pop("preset", None)
        base = {}
        if preset is not None:
            if preset not in cls.PRESETS:
                raise ValueError(f"model: unknown preset {preset!r} for family {cls.family!r}. Available: {', '.join(cls.PRESETS)}")
            base = dict(cls.PRESETS[preset])
        if vocab_size is not None and "vocab_size" not in fields:
            base["vocab_size"] = vocab_size
        try:
            return cls.from_dict({**base, **fields})
        except ValueError as e:
            allowed = ["family", "preset", *cls.allowed_keys()]
            msg = str(e)
            if "unknown key" in msg:
                msg = msg.split(". Allowed keys:")[0] + f". Allowed keys in model: {', '.join(allowed)}"
            raise ValueError(f"model: {msg}") from None

    def with_overrides(self, assignments: list[str]) -> "RunConfig":
        """Apply `--set section.key=value` strings. Values are parsed as YAML scalars (3e-4, true, 12)."""
        d = self.to_dict()
        for a in assignments:
            if "=" not in a:
                raise ValueError(f"--set {a!r}: expected section.key=value, e.g. train.lr=3e-4")
            dotted, raw = a.split("=", 1)
            section, _, key = dotted.strip().partition(".")
            if section not in self.SECTIONS or not key:
                raise ValueError(f"--set {a!r}: the key must be section.key with section one of "
                                 f"{', '.join(self.SECTIONS)} (e.g. train.lr=3e-4)")
            if section == "lora" and d["lora"] is None:
                d["lora"] = {}  # --set lora.r=8 turns LoRA on, with the other defaults
            if section != "model":
                allowed = (LoRAOptions if section == "lora" else type(getattr(self, section))).allowed_keys()
                if key not in allowed:
                    raise ValueError(f"--set {a!r}: unknown key {key!r} in {section}. Allowed keys: {', '.join(allowed)}")
            import yaml
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            d[section][key] = value
        return type(self).from_dict(d)  # the recipe's subclass keeps its sections
