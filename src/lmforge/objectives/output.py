"""LossOutput: what an objective returns -- the loss to minimise and the numbers worth watching beside it.

    def dpo(model, batch, companions) -> LossOutput:
        ...
        losses = -F.logsigmoid(beta * (policy_logratios - ref_logratios))      # Rafailov et al. 2023, eq. 7
        return LossOutput(losses.mean(), {"margin": (policy_logratios - ref_logratios).mean()})

The Trainer backpropagates `loss` and logs every metric under its own name in metrics.jsonl and the
progress bar (the val loss's as "val_<name>"), averaged like the loss over micro-batches and processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class LossOutput:
    """loss: a scalar tensor (a mean over the batch); metrics: name -> float or 0-d tensor, the same names
    on every call (they are averaged across calls). Metric tensors are detached by whoever logs them."""

    loss: "Tensor"
    metrics: dict[str, Union[float, "Tensor"]] = field(default_factory=dict)
