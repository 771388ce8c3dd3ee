"""Label-smoothed cross-entropy (Szegedy et al. 2016; Vaswani et al. 2017 sec. 5.4) against a hand computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.objectives import label_smoothed_cross_entropy


def test_label_smoothing_against_hand_computation():
    # V = 2, eps = 0.1, logits (2, 0): -log p = (log(1 + e^-2), 2 + log(1 + e^-2)) = (0.126928, 2.126928)
    # loss = 0.9 * 0.126928 + 0.1 * (0.126928 + 2.126928) / 2 = 0.226928
    loss = label_smoothed_cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), 0.1)
    assert abs(loss.item() - (0.9 * math.log1p(math.exp(-2)) + 0.1 * (2 + 2 * math.log1p(math.exp(-2))) / 2)) < 1e-6
    assert abs(loss.item() - 0.226928) < 1e-6
    # uniform logits: smoothing changes nothing, loss = log V
    assert abs(label_smoothed_cross_entropy(torch.zeros(1, 5), torch.tensor([3])).item() - math.log(5)) < 1e-6
    # eps = 0 is plain cross-entropy; -100 is ignored; same as torch's label_smoothing
    x, y = torch.randn(2, 4, 11), torch.randint(0, 11, (2, 4))
    y[1, 3] = -100
    torch.testing.assert_close(label_smoothed_cross_entropy(x, y, 0.0), F.cross_entropy(x.view(-1, 11), y.view(-1)))
    torch.testing.assert_close(label_smoothed_cross_entropy(x, y, 0.1),
                               F.cross_entropy(x.view(-1, 11), y.view(-1), label_smoothing=0.1))
    with pytest.raises(ValueError, match="epsilon"):
        label_smoothed_cross_entropy(x, y, 1.0)
