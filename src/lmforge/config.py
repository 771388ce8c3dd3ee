"""Typed, serialisable configs. No torch import: a config can be read, validated and printed anywhere.

Every config is a dataclass derived from `Config`, validated in `__post_init__`, with named presets:

    >>> from lmforge.config import GPTConfig
    >>> GPTConfig.preset("gpt-tiny").d_model
    64
    >>> GPTConfig.from_dict({"d_modle": 64})
    Traceback (most recent call last):
    ...
    ValueError: GPTConfig: unknown key 'd_modle'. Allowed keys: ...
"""
from __future__ import annotations

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
        raise ValueError(errors[0])
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


def _check(cond: bool, owner: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{owner}: {msg}")


Activation = typing.Literal["relu", "gelu", "gelu_tanh", "swiglu", "geglu"]


@dataclasses.dataclass
class GPTConfig(Config):
    """GPT-1/GPT-2-style decoder: learned positions, pre-norm blocks + final LayerNorm, GELU MLP, tied head."""

    vocab_size: int = 50257  # GPT-2 BPE: 50,000 merges + 256 bytes + <|endoftext|>
    max_len: int = 1024  # context length (GPT-2: 1024)
    d_model: int = 768
    n_heads: int = 12
    n_layers: int = 12
    d_ff: int = 0  # 0 means 4 * d_model (GPT-2)
    dropout: float = 0.0  # GPT-2 used 0.1 for pretraining; 0 is better for small/short runs (nanoGPT)
    bias: bool = True  # GPT-2 has biases in linears and LayerNorms
    norm_eps: float = 1e-5  # GPT-2 layer_norm_epsilon
    activation: Activation = "gelu_tanh"  # GPT-2 uses the tanh approximation of GELU
    tie_embeddings: bool = True  # output projection shares the token embedding (GPT-2)

    family: ClassVar[str] = "gpt"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt-tiny": dict(vocab_size=256, max_len=128, d_model=64, n_heads=4, n_layers=2),
        # nanoGPT's CPU recipe for shakespeare-char: 4 layers, 4 heads, width 128, block 64
        "gpt-mini": dict(vocab_size=256, max_len=64, d_model=128, n_heads=4, n_layers=4),
        "gpt-small-char": dict(vocab_size=256, max_len=256, d_model=384, n_heads=6, n_layers=6),
        "gpt1": dict(vocab_size=40478, max_len=512, d_model=768, n_heads=12, n_layers=12, activation="gelu"),
        "gpt2": dict(),  # 124M
        "gpt2-medium": dict(d_model=1024, n_heads=16, n_layers=24),
        "gpt2-large": dict(d_model=1280, n_heads=20, n_layers=36),
        "gpt2-xl": dict(d_model=1600, n_heads=25, n_layers=48),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers"):
            _check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        _check(self.d_model % self.n_heads == 0, n, f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        _check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        _check(self.d_ff >= 0, n, f"d_ff must be >= 0 (0 means 4*d_model), got {self.d_ff}")
        if self.d_ff == 0:
            self.d_ff = 4 * self.d_model


# --------------------------------------------------------------------------------------------
# Training runs: what to train on (DataConfig), how (TrainConfig), and a RunConfig tying them to
# a model. A run preset in configs/*.yaml is exactly a RunConfig: sections `model`, `data`, `train`.
# --------------------------------------------------------------------------------------------

Schedule = typing.Literal["cosine", "inverse_sqrt", "constant"]


@dataclasses.dataclass
class DataConfig(Config):
    """Where the tokens come from. `corpus` is a bundled name (see lmforge.data.corpora) or a UTF-8 .txt path."""

    corpus: str = "kjv"
    tokenizer: typing.Literal["char"] = "char"  # the other tokenizers arrive with their own issue
    block_size: int = 256  # tokens per training window (T); nanoGPT shakespeare_char uses 256

    def __post_init__(self):
        _check(self.block_size > 0, "DataConfig", f"block_size must be positive, got {self.block_size}")
        _check(bool(self.corpus), "DataConfig", "corpus must name a bundled corpus or a text file")


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
    compile: bool = False  # torch.compile the model (slow to start; pays off on long runs)
    progress: bool = True  # tqdm progress bar on stderr

    def __post_init__(self):
        n = "TrainConfig"
        for k in ("max_steps", "batch_size", "grad_accum", "eval_steps", "log_interval"):
            _check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        for k in ("warmup_steps", "eval_interval", "save_interval", "weight_decay", "grad_clip", "min_lr"):
            _check(getattr(self, k) >= 0, n, f"{k} must be >= 0, got {getattr(self, k)}")
        _check(self.lr > 0, n, f"lr must be positive, got {self.lr}")
        _check(self.min_lr <= self.lr, n, f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, n, f"betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        _check(self.schedule != "inverse_sqrt" or self.warmup_steps > 0, n,
               "schedule 'inverse_sqrt' needs warmup_steps > 0 (the peak is at the end of warmup)")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), n,
               f"device must be auto, cpu or cuda[:N], got {self.device!r}")


def model_config_class(family: str) -> type[Config]:
    """The Config subclass whose `family` is `family` (e.g. "gpt" -> GPTConfig)."""
    found = {}
    stack = list(Config.__subclasses__())
    while stack:
        c = stack.pop()
        stack.extend(c.__subclasses__())
        if isinstance(getattr(c, "family", None), str):
            found[c.family] = c
    if family not in found:
        raise ValueError(f"model: unknown family {family!r}. Available: {', '.join(sorted(found))}")
    return found[family]


@dataclasses.dataclass
class RunConfig(Config):
    """One training run: `model` (family, optional preset, field overrides), `data`, `train`.

    Example (YAML):
        model: {family: gpt, preset: gpt-mini, dropout: 0.0}
        data: {corpus: kjv, block_size: 64}
        train: {max_steps: 2000, batch_size: 12, lr: 1e-3}

    `model.vocab_size` is normally left out: it is taken from the tokenizer.
    """

    model: dict[str, Any] = dataclasses.field(default_factory=lambda: {"family": "gpt"})
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    SECTIONS: ClassVar[tuple[str, ...]] = ("model", "data", "train")
    DEFAULT_FAMILY: ClassVar[str] = "gpt"

    @classmethod
    def _sections(cls, d: Any) -> dict[str, dict]:
        """Check the top level (a mapping of known sections, each a mapping); every section, {} if absent,
        the model section with its family filled in."""
        name = cls.__name__
        if not isinstance(d, dict):
            raise ValueError(f"{name}: expected a mapping with sections {', '.join(cls.SECTIONS)}, got {type(d).__name__}")
        for key in d:
            if key not in cls.SECTIONS:
                raise ValueError(f"{name}: unknown section {key!r}. Allowed sections: {', '.join(cls.SECTIONS)}")
            if d[key] is not None and not isinstance(d[key], dict):
                raise ValueError(f"{name}: section {key!r} must be a mapping of keys to values, got {d[key]!r}")
        out = {key: dict(d.get(key) or {}) for key in cls.SECTIONS}
        out["model"].setdefault("family", cls.DEFAULT_FAMILY)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, ignore: tuple[str, ...] = ()):
        s = cls._sections(d)
        return cls(model=s["model"], data=DataConfig.from_dict(s["data"]), train=TrainConfig.from_dict(s["train"]))

    def __post_init__(self):
        self.model_config()  # validate family, preset and keys now, not at step 0 of training

    def model_config(self, vocab_size: int | None = None) -> Config:
        """The model's Config: preset, then explicit fields; `vocab_size` fills in when not given explicitly."""
        fields = dict(self.model)
        cls = model_config_class(fields.pop("family", "gpt"))
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
            if section != "model":
                allowed = type(getattr(self, section)).allowed_keys()
                if key not in allowed:
                    raise ValueError(f"--set {a!r}: unknown key {key!r} in {section}. Allowed keys: {', '.join(allowed)}")
            import yaml
            try:
                value = yaml.safe_load(raw) if raw.strip() else ""
            except yaml.YAMLError:
                value = raw
            d[section][key] = value
        return type(self).from_dict(d)  # a subclass (e.g. TranslationRunConfig) keeps its sections


# --------------------------------------------------------------------------------------------
# Translation (issue 6): the 2017 encoder-decoder Transformer, the LSTM baseline it replaced,
# and the run config of the translation recipe (lmforge.train.recipes.translation).
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TransformerConfig(Config):
    """Encoder-decoder Transformer, "Attention Is All You Need" (Vaswani et al. 2017).

    Defaults are the paper's base model (Table 3, row "base"). Token ids 0/1/2 are the recipe's
    <pad>/<s>/</s> (lmforge.data.translation.SPECIALS).
    """

    vocab_size: int = 37000  # sec. 5.1: shared source-target BPE vocabulary of about 37000 tokens (EN-DE)
    max_len: int = 256  # rows of the sinusoid table; the paper fixes none (sinusoids extrapolate, sec. 3.5)
    d_model: int = 512  # sec. 3.1: d_model = 512
    n_heads: int = 8  # sec. 3.2.2: h = 8 parallel heads, d_k = d_v = d_model / h = 64
    n_layers: int = 6  # sec. 3.1: N = 6 identical layers in the encoder
    n_dec_layers: int = 0  # sec. 3.1: N = 6 in the decoder too; 0 means "same as n_layers"
    d_ff: int = 2048  # sec. 3.3: inner layer of the feed-forward network, d_ff = 2048
    dropout: float = 0.1  # sec. 5.4: P_drop = 0.1 on sub-layer outputs and on embeddings + positions
    bias: bool = True  # eq. 2 has biases b1, b2; the projections of sec. 3.2.2 are plain matrices (we keep biases, as tensor2tensor)
    norm_eps: float = 1e-5  # the paper gives none; PyTorch's nn.Transformer default
    pad_id: int = 0  # padding: masked as an attention key, ignored by the loss
    bos_id: int = 1  # first decoder input ("shifted right", sec. 3.1)
    eos_id: int = 2  # end of sequence: appended to every source and target

    family: ClassVar[str] = "transformer"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "transformer-base": dict(),  # Table 3 "base": 65M parameters with the 37k vocabulary
        "transformer-big": dict(d_model=1024, n_heads=16, d_ff=4096, dropout=0.3),  # Table 3 "big" (EN-DE P_drop 0.3)
        # sized for a 2-core CPU: width and depth halved (the table's rows (A)-(C) show the trade-off)
        "transformer-small": dict(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024),
        "transformer-tiny": dict(vocab_size=512, max_len=128, d_model=64, n_heads=2, n_layers=1, d_ff=128),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff"):
            _check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        _check(self.n_dec_layers >= 0, n, f"n_dec_layers must be >= 0 (0 means n_layers), got {self.n_dec_layers}")
        _check(self.d_model % self.n_heads == 0, n, f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        _check(self.d_model % 2 == 0, n, f"d_model must be even for sinusoidal positions, got {self.d_model}")
        _check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        _check(len({self.pad_id, self.bos_id, self.eos_id}) == 3, n, "pad_id, bos_id and eos_id must differ")
        for k in ("pad_id", "bos_id", "eos_id"):
            _check(0 <= getattr(self, k) < self.vocab_size, n, f"{k} must be a token id below vocab_size")
        if self.n_dec_layers == 0:
            self.n_dec_layers = self.n_layers


@dataclasses.dataclass
class LSTMConfig(Config):
    """The RNN baseline: bidirectional-LSTM encoder, LSTM decoder, Luong et al. 2015 global attention.

    Luong, Pham & Manning 2015, "Effective Approaches to Attention-based NMT": "general" score
    h_t^T W_a h_s (sec. 3.1) and the attentional hidden state h~_t = tanh(W_c [c_t; h_t]) (eq. 5).
    The encoder is bidirectional as in Bahdanau et al. 2015, each direction d_model / 2 wide, so
    their final states concatenated start the decoder (OpenNMT's "brnn" encoder, Klein et al. 2017).
    """

    vocab_size: int = 37000  # same shared vocabulary as the Transformer it is compared with
    max_len: int = 256  # longest source/target accepted (an LSTM has no position table; kept for the same checks)
    d_model: int = 1000  # Luong et al. 2015 sec. 4.1: 1000-dimensional embeddings and cells
    n_layers: int = 4  # Luong et al. 2015 sec. 4.1: stacking LSTMs with 4 layers (encoder and decoder)
    dropout: float = 0.2  # Luong et al. 2015 sec. 4.1: dropout 0.2 for their dropout models (Zaremba et al. 2014)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    family: ClassVar[str] = "lstm"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "lstm-luong": dict(vocab_size=50000),  # Luong et al. 2015: 50k vocabulary per language, 4 x 1000
        # sized like transformer-small: same width and vocabulary, two layers per side
        "lstm-small": dict(vocab_size=8000, d_model=256, n_layers=2, dropout=0.1),
        "lstm-tiny": dict(vocab_size=512, max_len=128, d_model=64, n_layers=1, dropout=0.1),
    }

    def __post_init__(self):
        n = type(self).__name__
        for k in ("vocab_size", "max_len", "d_model", "n_layers"):
            _check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        _check(self.d_model % 2 == 0, n, f"d_model must be even (each encoder direction is d_model / 2), got {self.d_model}")
        _check(0.0 <= self.dropout < 1.0, n, f"dropout must be in [0, 1), got {self.dropout}")
        _check(len({self.pad_id, self.bos_id, self.eos_id}) == 3, n, "pad_id, bos_id and eos_id must differ")


@dataclasses.dataclass
class TranslationDataConfig(Config):
    """Parallel data for the translation recipe: a bundled gettext pair or a TSV (domain, en, de|zh)."""

    pair: str = "en-de"  # bundled: en-de, en-zh; or a path to a .tsv / .tsv.xz file with the same columns
    vocab_size: int = 8000  # joint BPE vocabulary trained on the training split (paper: 37000 on 4.5M pairs)
    max_tokens: int = 2048  # tokens per batch, source + target (sec. 5.1: ~25000 of each on 8 GPUs)
    max_len: int = 128  # training pairs longer than this (in tokens, either side) are skipped

    def __post_init__(self):
        n = "TranslationDataConfig"
        _check(bool(self.pair), n, "pair must be en-de, en-zh or a TSV path")
        for k in ("vocab_size", "max_tokens", "max_len"):
            _check(getattr(self, k) > 0, n, f"{k} must be positive, got {getattr(self, k)}")
        _check(self.max_tokens >= 2 * self.max_len, n,
               f"max_tokens ({self.max_tokens}) must hold at least one pair of max_len ({self.max_len}) tokens per side")


@dataclasses.dataclass
class TranslationConfig(Config):
    """What the translation recipe adds to the Trainer: loss, wall-clock budget, checkpoint averaging."""

    label_smoothing: float = 0.1  # sec. 5.4: epsilon_ls = 0.1 ("hurts perplexity ... improves accuracy and BLEU")
    minutes: float = 0.0  # wall-clock training budget; 0 = train to train.max_steps
    average_last: int = 5  # sec. 6.1: base models average the last 5 checkpoints
    snapshot_interval: int = 100  # steps between the snapshots averaged (paper: every 10 minutes)

    def __post_init__(self):
        n = "TranslationConfig"
        _check(0.0 <= self.label_smoothing < 1.0, n, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check(self.minutes >= 0, n, f"minutes must be >= 0, got {self.minutes}")
        _check(self.average_last >= 1, n, f"average_last must be >= 1 (1 = no averaging), got {self.average_last}")
        _check(self.snapshot_interval > 0, n, f"snapshot_interval must be positive, got {self.snapshot_interval}")


@dataclasses.dataclass
class TranslationRunConfig(RunConfig):
    """A translation run (configs/translate-*.yaml): sections model, data, train, recipe.

    Example (YAML):
        model: {family: transformer, preset: transformer-small}
        data: {pair: en-de, vocab_size: 8000, max_tokens: 2048}
        train: {schedule: inverse_sqrt, warmup_steps: 400, lr: 1e-3, beta2: 0.98, eps: 1e-9, weight_decay: 0}
        recipe: {minutes: 30, average_last: 5}
    """

    data: TranslationDataConfig = dataclasses.field(default_factory=TranslationDataConfig)
    recipe: TranslationConfig = dataclasses.field(default_factory=TranslationConfig)

    SECTIONS: ClassVar[tuple[str, ...]] = ("model", "data", "train", "recipe")
    DEFAULT_FAMILY: ClassVar[str] = "transformer"

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, ignore: tuple[str, ...] = ()):
        s = cls._sections(d)
        return cls(model=s["model"], data=TranslationDataConfig.from_dict(s["data"]),
                   train=TrainConfig.from_dict(s["train"]), recipe=TranslationConfig.from_dict(s["recipe"]))
