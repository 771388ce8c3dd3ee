"""The `distill` recipe: DistilBERT's knowledge distillation (Sanh et al. 2019), for one task.

A student with half the teacher's layers, initialised from the teacher by "taking one layer out of two"
(sec. 3, "Student initialization"), learns from a frozen teacher (the Trainer's companion) with the loss of
lmforge.objectives.distill:

    5 * T^2 * KL(teacher / T || student / T) + 2 * (student's own loss on the labels) + 1 * (1 - cos(h_s, h_t))

at T = 2 (the paper's script; every weight configurable).

Task-specific, not general, distillation. DistilBERT itself was distilled during pretraining: the soft
targets are the teacher's masked-LM distributions over the vocabulary, the student's own loss is the
masked-LM loss. Our teacher, all-MiniLM-L6-v2, ships without a masked-LM head (a sentence encoder), so there is
no vocabulary distribution to distil. Instead the teacher is first fine-tuned on a labelled task (the
`finetune` recipe: WordNet supersense classification, gloss -> one of 45 lexicographer files), and the student
is distilled on that task: the KL is over the teacher's class logits, the student's own loss is the
cross-entropy on the labels (in place of the masked-LM loss), the cosine is between the last hidden states
at [CLS] (`recipe.cosine: cls`, what the classifier reads) or at every real token (`tokens`, as the paper).
Sanh et al. (sec. 4.2) tried this too: distilling again during fine-tuning ("a second step of distillation").

    lmforge train configs/distill-supersense.yaml --set recipe.teacher=runs/supersense-minilm

Run directory: the Trainer's files, plus distill.json (the layer map, teacher and student test accuracy).
The config classes import no torch.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lmforge.config import Config, check
from lmforge.io import atomic_write_json
from lmforge.train.recipes import RecipeRun

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass
class DistillDataConfig(Config):
    """The labelled task both models are scored on: gloss -> supersense (lmforge.data.wordnet, fixed splits)."""

    task: typing.Literal["supersense"] = "supersense"
    max_len: int = 64  # tokens per text, [CLS] and [SEP] included (99.9% of WordNet glosses fit in 64 WordPieces)
    train_examples: int = 0  # the first N of the shuffled training split (0 = all): keeps a CPU run short
    eval_examples: int = 0  # a seeded subset of the val split (val loss) and the test split (final accuracies); 0 = all

    def __post_init__(self):
        n = "DistillDataConfig"
        check(self.max_len >= 2, n, f"max_len must hold [CLS] and [SEP] (>= 2), got {self.max_len}")
        for k in ("train_examples", "eval_examples"):
            check(getattr(self, k) >= 0, n, f"{k} must be >= 0 (0 = all), got {getattr(self, k)}")


@dataclasses.dataclass
class DistillOptions(Config):
    """The teacher and the loss weights. Defaults: Sanh et al. 2019's released script (--alpha_ce 5.0
    --alpha_mlm 2.0 --alpha_cos 1.0 --temperature 2.0)."""

    teacher: str = ""  # a fine-tuned classifier: an lmforge run/model directory or a Hugging Face directory
    alpha_ce: float = 5.0  # soft targets: T^2 * KL(teacher || student)
    alpha_task: float = 2.0  # the student's own loss on the labels (the paper's alpha_mlm)
    alpha_cos: float = 1.0  # 1 - cosine of the last hidden states
    temperature: float = 2.0
    cosine: typing.Literal["cls", "tokens"] = "cls"  # which hidden states the cosine aligns
    layers: tuple[int, ...] = ()  # teacher layer copied into each student layer; () = every other (0, 2, 4, ...)

    def __post_init__(self):
        n = "DistillOptions"
        for k in ("alpha_ce", "alpha_task", "alpha_cos"):
            check(getattr(self, k) >= 0, n, f"{k} must be >= 0, got {getattr(self, k)}")
        check(self.alpha_ce + self.alpha_task + self.alpha_cos > 0, n,
              "alpha_ce, alpha_task and alpha_cos are all 0: nothing to train on (DistilBERT: 5, 2, 1)")
        check(self.temperature > 0, n, f"temperature must be positive (DistilBERT: 2), got {self.temperature}")
        check(all(isinstance(i, int) and i >= 0 for i in self.layers), n,
              f"layers must be teacher layer indices (0, 1, ...), got {list(self.layers)}")


@dataclasses.dataclass
class Run(RecipeRun):
    """A distillation run (configs/distill-supersense.yaml): sections model (the student: family and any field
    to change; the rest is the teacher's), data, train, recipe (the teacher and the loss).

    Example (YAML):
        recipe: {name: distill, teacher: runs/supersense-minilm}
        model: {family: distilbert}          # n_layers: half the teacher's unless given
        data: {task: supersense, train_examples: 20000}
        train: {max_steps: 600, batch_size: 32, lr: 5e-5}
    """

    data: DistillDataConfig = dataclasses.field(default_factory=DistillDataConfig)
    recipe: DistillOptions = dataclasses.field(default_factory=DistillOptions)

    DECODING: ClassVar[tuple[str, ...]] = ("encoder",)
    NAME: ClassVar[str] = "distill"
    DEFAULT_FAMILY: ClassVar[str] = "distilbert"


# ----------------------------------------------------------------------------------------- the student

def student_layers(n_teacher: int, n_student: int | None = None) -> list[int]:
    """The teacher layer each student layer starts from: one out of two (Sanh et al. 2019, sec. 3), or, for
    another depth, layers evenly spaced from the first.

    Example: student_layers(6) -> [0, 2, 4]; student_layers(12) -> [0, 2, 4, 6, 8, 10]; student_layers(6, 2) -> [0, 3]
    """
    n_student = n_teacher // 2 if n_student is None else n_student
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"the student needs between 1 and the teacher's {n_teacher} layers, got {n_student}"
                         + (" (a 1-layer teacher has no half: set model.n_layers)" if n_teacher == 1 else ""))
    return [i * n_teacher // n_student for i in range(n_student)]


def init_from_teacher(student: "torch.nn.Module", teacher: "torch.nn.Module", layers: list[int]) -> dict[str, str]:
    """Copy the teacher's weights into the student; returns {student tensor: where it came from}.

    Student layer j <- teacher layer layers[j] (every tensor of the block). Every other tensor with the same
    name and shape is copied as it is: the embeddings and their LayerNorm, a masked-LM head, a classifier.
    A BERT teacher's segment embedding has no place in a DistilBERT student (no segments, sec. 3): the
    teacher adds segment 0's vector to every token of a single text, so it is folded into the student's
    position table (pos + seg[0]), and the student's embeddings equal the teacher's on single texts.
    A DistilBERT classifier reads [CLS] through its own dense layer and a ReLU where BERT's reads the pooler
    (a dense layer and a tanh): its pre_classifier starts as the teacher's pooler and its classifier as the
    teacher's, a better start than random (ReLU and tanh agree near 0 and on the sign of positive inputs).
    Tensors the teacher lacks keep their initialisation.

    Example, a 6-layer teacher and a 3-layer student with layers [0, 2, 4]:
    {"blocks.1.attn.qkv.weight": "blocks.2.attn.qkv.weight", "emb.pos.weight": "emb.pos.weight + emb.seg.weight[0]", ...}
    """
    import torch

    t_state, s_state = teacher.state_dict(), student.state_dict()
    n_teacher = 1 + max((int(k.split(".")[1]) for k in t_state if k.startswith("blocks.")), default=-1)
    n_student = 1 + max((int(k.split(".")[1]) for k in s_state if k.startswith("blocks.")), default=-1)
    if len(layers) != n_student:
        raise ValueError(f"layers names {len(layers)} teacher layers ({list(layers)}) for a student of {n_student}: "
                         "give one teacher layer per student layer")
    bad = [i for i in layers if not 0 <= i < n_teacher]
    if bad:
        raise ValueError(f"layers {bad} are not layers of the teacher, which has {n_teacher} (0..{n_teacher - 1})")
    fold = "emb.seg.weight" in t_state and "emb.seg.weight" not in s_state
    copied, new = {}, {}
    for name, tensor in s_state.items():
        if name.startswith("blocks."):
            _, j, rest = name.split(".", 2)
            source = f"blocks.{layers[int(j)]}.{rest}"
        elif name.startswith("pre_classifier.") and name not in t_state:
            source = name.replace("pre_classifier.", "pool.", 1)  # BERT's pooler: the dense layer on [CLS]
        else:
            source = name
        if source not in t_state:
            continue
        value = t_state[source]
        if name == "emb.pos.weight" and fold:
            value, source = value + t_state["emb.seg.weight"][0], "emb.pos.weight + emb.seg.weight[0]"
        if tuple(value.shape) != tuple(tensor.shape):
            raise ValueError(f"student tensor {name!r} has shape {tuple(tensor.shape)} but the teacher's {source!r} "
                             f"has {tuple(value.shape)}: the student keeps the teacher's width, vocabulary, "
                             "positions and labels (change only n_layers and dropout)")
        new[name], copied[name] = value, source
    with torch.no_grad():
        student.load_state_dict({**s_state, **new}, strict=True)
    return copied


def student_config(cfg: Run, teacher_config, layers: list[int] | None = None):
    """The student's Config: the teacher's fields that the student's family has (width, heads, vocabulary,
    positions, head and labels), len(layers) or half the teacher's layers, then what the run's model
    section sets."""
    cls = cfg.family_config(cfg.model.get("family", cfg.DEFAULT_FAMILY))
    fields = {k: v for k, v in teacher_config.to_dict().items() if k in cls.allowed_keys()}
    fields["n_layers"] = len(layers) if layers else teacher_config.n_layers // 2
    if "preset" in cfg.model:
        raise ValueError("model.preset: a distilled student takes its shape from the teacher; set model.n_layers "
                         "(and dropout) instead of a preset")
    fields.update({k: v for k, v in cfg.model.items() if k != "family"})
    return cls.from_dict(fields)


# ----------------------------------------------------------------------------------------- data

class LabelledBatches:
    """Batches of (ids (B, T), attention_mask (B, T), labels (B,)) from encoded texts, right-padded to the
    longest text of the batch. Batch i is a pure function of (seed, i): epoch i // batches_per_epoch is a
    permutation drawn from numpy.random.default_rng([seed, epoch]) (resume needs one integer).
    shuffle=False reads the examples in order, the last batch short (evaluation)."""

    def __init__(self, examples: list[tuple[list[int], int]], batch_size: int, pad_id: int, seed: int = 0,
                 shuffle: bool = True):
        if not examples:
            raise ValueError("no examples to batch: the split is empty (check data.train_examples)")
        self.examples, self.batch_size, self.pad_id = examples, batch_size, pad_id
        self.seed, self.shuffle = seed, shuffle
        self.per_epoch = len(examples) // batch_size if shuffle else -(-len(examples) // batch_size)
        if self.per_epoch == 0:
            raise ValueError(f"{len(examples)} examples are fewer than one batch of {batch_size}: lower "
                             "train.batch_size or use more examples")

    def __len__(self) -> int:
        return self.per_epoch

    def rows(self, index: int) -> list[int]:
        import numpy as np

        epoch, i = divmod(index, self.per_epoch)
        if not self.shuffle:
            return list(range(i * self.batch_size, min((i + 1) * self.batch_size, len(self.examples))))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        return order[i * self.batch_size:(i + 1) * self.batch_size].tolist()

    def get(self, index: int):
        import torch

        rows = [self.examples[r] for r in self.rows(index)]
        T = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for b, (row, _) in enumerate(rows):
            ids[b, :len(row)] = torch.tensor(row)
            mask[b, :len(row)] = 1
        return ids, mask, torch.tensor([label for _, label in rows])

    def batch_tokens(self, batch) -> int:
        return int(batch[1].sum())  # real tokens, not padding


def encode_texts(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    """Ids of each text with the tokenizer's template ([CLS] text [SEP]), cut to max_len tokens; the
    tokenizer file's own padding is switched off (LabelledBatches pads each batch to its longest text)."""
    from lmforge.tokenizers.base import Truncation

    tokenizer.padding = None
    tokenizer.truncation = Truncation(max_length=max_len)
    return [tokenizer.encode(t) for t in texts]


def pad_id(tokenizer) -> int:
    pad = tokenizer.padding.pad_id if tokenizer.padding is not None else tokenizer.token_to_id("[PAD]")
    return 0 if pad is None else pad


def task_examples(tokenizer, split: str, max_len: int, limit: int = 0, seed: int = 0):
    """(examples [(ids, label)], label names) of the supersense task's split; `limit` > 0 keeps the first
    `limit` of a seeded shuffle (a subset drawn from every lexicographer file, not the first files)."""
    import numpy as np

    from lmforge.data.wordnet import load_task

    data, labels = load_task("supersense", split)
    if limit and limit < len(data):
        keep = np.random.default_rng([seed, 7]).permutation(len(data))[:limit]
        data = [data[i] for i in sorted(keep)]
    ids = encode_texts(tokenizer, [ex["text"] for ex in data], max_len)
    return [(x, ex["label"]) for x, ex in zip(ids, data)], labels


# ----------------------------------------------------------------------------------------- loss and scoring

def class_logits(out) -> "torch.Tensor":
    """A classifier's (B, n_labels) scores from its ModelOutput (a `classify` head puts them in sequence_logits)."""
    if out.sequence_logits is None:
        raise ValueError("the model has no classification head (head='classify'): the distill recipe needs a "
                         "fine-tuned classifier as teacher, e.g. a run of the finetune recipe")
    return out.sequence_logits


def distill_loss(options: DistillOptions):
    """loss_fn(student, batch, companions) for the Trainer: the teacher (companions["teacher"]) runs without
    gradients, the student's own loss is its cross-entropy on the labels; metrics: each term and the accuracy."""
    import torch
    import torch.nn.functional as F

    from lmforge.objectives import distillation_loss

    def loss_fn(student, batch, companions):
        ids, mask, labels = batch
        with torch.no_grad():
            t = companions["teacher"](ids, mask)
        s = student(ids, mask)
        s_logits, t_logits = class_logits(s), class_logits(t)
        if options.cosine == "cls":  # the [CLS] vector the classifier reads: (B, d)
            hs, ht, hidden_mask = s.hidden_states[:, 0], t.hidden_states[:, 0], None
        else:  # every real token: (B, T, d), padding left out
            hs, ht, hidden_mask = s.hidden_states, t.hidden_states, mask.bool()
        out = distillation_loss(s_logits, t_logits, F.cross_entropy(s_logits.float(), labels), hs, ht,
                                alpha_ce=options.alpha_ce, alpha_task=options.alpha_task,
                                alpha_cos=options.alpha_cos, temperature=options.temperature,
                                hidden_mask=hidden_mask)
        out.metrics["accuracy"] = (s_logits.argmax(-1) == labels).float().mean()
        return out
    return loss_fn


def accuracy(model, batches: LabelledBatches) -> float:
    """Share of examples whose highest-scoring class is the label, the model in eval mode, no gradients."""
    import torch

    was_training, right, seen = model.training, 0, 0
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(len(batches)):
            ids, mask, labels = (t.to(device) for t in batches.get(i))
            right += int((class_logits(model(ids, mask)).argmax(-1) == labels).sum())
            seen += len(labels)
    model.train(was_training)
    return right / seen


# ----------------------------------------------------------------------------------------- the run

def load_teacher(path: str):
    """(teacher model, tokenizer) from recipe.teacher: a fine-tuned classifier's directory."""
    import lmforge
    from lmforge.models import lookup
    from lmforge.tokenizers import load_tokenizer

    if not path:
        raise ValueError("recipe.teacher is empty: give the directory of a fine-tuned classifier (e.g. "
                         "--set recipe.teacher=runs/supersense-minilm, a run of the finetune recipe)")
    if not Path(path).is_dir():
        raise ValueError(f"recipe.teacher {path!r} is not a directory; give a fine-tuned classifier's run directory")
    teacher = lmforge.load(path)
    family = getattr(type(getattr(teacher, "config", None)), "family", None)
    if family is None or lookup(family).decoding != "encoder" or getattr(teacher.config, "head", None) != "classify":
        raise ValueError(f"recipe.teacher {path} holds a {family or type(teacher).__name__} model with head "
                         f"{getattr(getattr(teacher, 'config', None), 'head', None)!r}; the distill recipe needs an "
                         "encoder (bert, distilbert) with a classification head (head='classify'): fine-tune one "
                         "first with the finetune recipe")
    return teacher, load_tokenizer(path)


def run(cfg: Run, out: Path, resume: bool = False, log=print) -> dict:
    """Load the teacher, build and initialise the student, distil on the task's training split; then score
    both on the test split. Returns the summary also written to out/distill.json."""
    import torch

    from lmforge.models import build_model
    from lmforge.train.dist import Dist
    from lmforge.train.loop import Trainer

    dist, t, d, o = Dist(), cfg.train, cfg.data, cfg.recipe
    teacher, tokenizer = load_teacher(o.teacher)
    n_student = cfg.model_config().n_layers if "n_layers" in cfg.model else None  # coerced (--set gives strings)
    layers = list(o.layers) or student_layers(teacher.config.n_layers, n_student)
    scfg = student_config(cfg, teacher.config, layers)
    if d.max_len > teacher.config.max_len:
        raise ValueError(f"data.max_len ({d.max_len}) is longer than the teacher's max_len ({teacher.config.max_len})")
    torch.manual_seed(t.seed)
    student = build_model(type(scfg).family, scfg)
    layer_map = init_from_teacher(student, teacher, layers)
    train_ex, labels = task_examples(tokenizer, "train", d.max_len, d.train_examples, t.seed)
    if tuple(getattr(teacher.config, "labels", ())) != tuple(labels):
        raise ValueError(f"the teacher's labels ({len(teacher.config.labels)}: {list(teacher.config.labels)[:3]}...) "
                         f"are not the {d.task} task's {len(labels)} labels in the same order; fine-tune the "
                         f"teacher on {d.task}")
    val_ex, _ = task_examples(tokenizer, "val", d.max_len, d.eval_examples, t.seed)
    pad = pad_id(tokenizer)
    train_batches = LabelledBatches(train_ex, t.batch_size, pad, seed=t.seed)
    val_batches = LabelledBatches(val_ex, t.batch_size, pad, seed=t.seed + 1)
    if dist.is_main:
        log(f"teacher: {o.teacher} ({teacher.config.family}, {teacher.config.n_layers} layers); student: "
            f"{scfg.family}, {scfg.n_layers} layers from teacher layers {layers}, "
            f"{sum(p.numel() for p in student.parameters()) / 1e6:.2f}M parameters; data: {d.task}, "
            f"{len(train_ex):,} train / {len(val_ex):,} val texts ({len(train_batches)} batches an epoch)")
    trainer = Trainer(student, t, train_batches, val_batches, out_dir=out, tokenizer=tokenizer,
                      run_config=cfg.to_dict(), loss_fn=distill_loss(o), companions={"teacher": teacher}, log=log)
    last = trainer.fit(resume=resume)
    summary = {"teacher": o.teacher, "layers": layers, "layer_map": layer_map, "last": last}
    if dist.is_main:
        test_ex, _ = task_examples(tokenizer, "test", d.max_len, d.eval_examples, t.seed)
        test = LabelledBatches(test_ex, 64, pad, shuffle=False)
        summary["test_examples"] = len(test_ex)
        summary["teacher_accuracy"] = accuracy(trainer.companions["teacher"], test)
        summary["student_accuracy"] = accuracy(trainer.model, test)
        # the share of the teacher's accuracy kept (Sanh et al. 2019: 97% on GLUE); None if the teacher scores 0
        summary["kept"] = (summary["student_accuracy"] / summary["teacher_accuracy"]
                           if summary["teacher_accuracy"] else None)
        atomic_write_json(out / "distill.json", summary)
        log(f"done: step {trainer.step}; test accuracy ({len(test_ex):,} texts): teacher "
            f"{summary['teacher_accuracy']:.4f}, student {summary['student_accuracy']:.4f}"
            + (f" ({summary['kept']:.1%} of the teacher's)" if summary["kept"] is not None else "")
            + f". Run directory: {out}")
    return summary
