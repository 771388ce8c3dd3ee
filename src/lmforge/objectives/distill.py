"""Knowledge distillation (Hinton et al. 2015; DistilBERT: Sanh et al. 2019, sec. 2-3): the three terms and their sum.

DistilBERT's training loss is a weighted sum of

    L_ce   = T^2 * KL(softmax(z_t / T) || softmax(z_s / T))    soft targets: the teacher's whole distribution
    L_task = the student's own loss on the labels                (the masked-LM loss when pretraining; the
                                                                 cross-entropy on the class labels when distilling
                                                                 for one task)
    L_cos  = 1 - cos(h_s, h_t)                                   aligns the directions of the hidden states

    L = alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos,   alpha = (5, 2, 1), T = 2

The weights and T are those of the paper's released training script (huggingface/transformers,
examples/research_projects/distillation: --alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0 --temperature 2.0).
Hinton et al. 2015 (sec. 2) explain the T^2: the gradients of the soft-target term scale as 1/T^2, so
multiplying by T^2 keeps its weight against the hard-label term when T changes. KL rather than the paper's
cross-entropy with soft targets: the two differ by the teacher's entropy, a constant for the student, so the
gradients are equal and the KL is 0 when the student matches the teacher (readable in the logs).

Worked example (T = 1): teacher logits (0, 0) -> p_t = (0.5, 0.5); student logits (log 3, 0) -> p_s = (0.75, 0.25);
KL = 0.5 * log(0.5 / 0.75) + 0.5 * log(0.5 / 0.25) = 0.5 * log(4 / 3) = 0.143841.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lmforge.objectives.output import LossOutput


def _rows(x: Tensor, mask: Tensor | None) -> Tensor:
    """(..., D) -> (N, D) in at least float32 (bf16 logits lose the small differences a KL measures): every
    row, or the rows where mask (...) is true (e.g. the masked-LM positions, or the real tokens of a padded batch)."""
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    if mask is None:
        return x.reshape(-1, x.size(-1))
    if tuple(mask.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"mask has shape {tuple(mask.shape)} but the vectors have shape {tuple(x.shape)}; give one "
                         f"true/false per vector, shape {tuple(x.shape[:-1])}")
    return x[mask.bool()]


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0,
                     mask: Tensor | None = None) -> Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), the mean over rows (Hinton et al. 2015, sec. 2).

    student_logits, teacher_logits (..., V) -> scalar; mask (...): which rows count (all by default).
    Equals torch.nn.KLDivLoss(reduction="batchmean")(log_softmax(s / T), softmax(t / T)) * T^2.
    Example (T = 1): teacher (0, 0), student (log 3, 0) -> 0.5 * log(4 / 3) = 0.143841.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (the paper uses 2), got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ in shape; distillation needs the same classes/vocabulary")
    s = _rows(student_logits, mask) / temperature  # (N, V)
    t = _rows(teacher_logits, mask) / temperature
    if s.size(0) == 0:
        return student_logits.sum() * 0.0  # no row selected: zero, still connected to the graph
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="none", log_target=True)  # (N, V)
    return kl.sum(-1).mean() * temperature ** 2


def cosine_loss(student_hidden: Tensor, teacher_hidden: Tensor, mask: Tensor | None = None) -> Tensor:
    """mean(1 - cos(h_s, h_t)) over vectors (Sanh et al. 2019, sec. 3: "a cosine embedding loss ... to align
    the directions of the student and teacher hidden states vectors").

    student_hidden, teacher_hidden (..., d) -> scalar; mask (...): which vectors count (e.g. real tokens).
    Equals torch.nn.CosineEmbeddingLoss()(s, t, ones) on the selected vectors.
    Example: (1, 0) against (1, 1) -> 1 - 1/sqrt(2) = 0.292893; a vector against twice itself -> 0.
    """
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"student hidden states {tuple(student_hidden.shape)} and teacher hidden states "
                         f"{tuple(teacher_hidden.shape)} differ in shape; the cosine term needs the same width "
                         "(the student keeps the teacher's d_model)")
    s, t = _rows(student_hidden, mask), _rows(teacher_hidden, mask)
    if s.size(0) == 0:
        return student_hidden.sum() * 0.0
    return (1.0 - F.cosine_similarity(s, t, dim=-1)).mean()


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, task_loss: Tensor,
                      student_hidden: Tensor, teacher_hidden: Tensor, *, alpha_ce: float = 5.0,
                      alpha_task: float = 2.0, alpha_cos: float = 1.0, temperature: float = 2.0,
                      logits_mask: Tensor | None = None, hidden_mask: Tensor | None = None) -> LossOutput:
    """alpha_ce * soft_target_loss + alpha_task * task_loss + alpha_cos * cosine_loss (module docstring).

    Defaults (5, 2, 1, T = 2) are DistilBERT's. Terms whose weight is 0 are not computed. Metrics: each term
    unweighted (distill_kl, distill_task, distill_cos), so the logs show what each contributes before weighting.
    """
    for name, a in (("alpha_ce", alpha_ce), ("alpha_task", alpha_task), ("alpha_cos", alpha_cos)):
        if a < 0:
            raise ValueError(f"{name} must be >= 0 (a weight of the loss sum), got {a}")
    if alpha_ce + alpha_task + alpha_cos == 0:
        raise ValueError("alpha_ce, alpha_task and alpha_cos are all 0: nothing to train on; DistilBERT uses 5, 2, 1")
    zero = torch.zeros((), device=task_loss.device)
    kl = soft_target_loss(student_logits, teacher_logits, temperature, logits_mask) if alpha_ce else zero
    cos = cosine_loss(student_hidden, teacher_hidden, hidden_mask) if alpha_cos else zero
    loss = alpha_ce * kl + alpha_task * task_loss + alpha_cos * cos
    return LossOutput(loss, {"distill_kl": kl.detach(), "distill_task": task_loss.detach(), "distill_cos": cos.detach()})
