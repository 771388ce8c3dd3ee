"""BERT's pretraining loss (Devlin et al. 2019, sec. 3.1 and A.2): the mean masked-LM cross-entropy over the
chosen positions plus the mean next-sentence cross-entropy ("the sum of the mean masked LM likelihood and
the mean next sentence prediction likelihood"), with accuracies logged beside them."""
from __future__ import annotations

import torch.nn.functional as F

from lmforge.objectives.output import LossOutput

IGNORE = -100


def bert_pretraining_loss(model, batch) -> LossOutput:
    """batch = (ids, attention_mask, token_type_ids, mlm_labels, nsp_labels); nsp_labels (B,) may be empty
    (MLM only, no next-sentence head)."""
    ids, attention_mask, token_type_ids, labels, nsp_labels = batch
    scored = labels != IGNORE
    # logits at the scored positions only, (N, vocab): the same loss for a ~7x smaller output product
    out = model(ids, attention_mask=attention_mask, token_type_ids=token_type_ids, predict=scored)
    mlm = F.cross_entropy(out.logits, labels[scored])
    metrics = {"mlm_loss": mlm.detach(), "mlm_acc": (out.logits.argmax(-1) == labels[scored]).float().mean()}
    if nsp_labels.numel() == 0:
        return LossOutput(mlm, metrics)
    nsp = F.cross_entropy(out.sequence_logits, nsp_labels)
    metrics.update(nsp_loss=nsp.detach(), nsp_acc=(out.sequence_logits.argmax(-1) == nsp_labels).float().mean())
    return LossOutput(mlm + nsp, metrics)
