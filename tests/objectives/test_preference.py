"""Preference losses (Bradley-Terry reward model; DPO, Rafailov et al. 2023 eq. 7): the equations written out,
worked examples, and TRL 1.16's DPOTrainer on the same tensors (its own loss code, on tiny random GPT-2s)."""
import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.objectives.preference import bradley_terry, dpo, sequence_logps


def test_bradley_terry_worked_examples_and_formula():
    out = bradley_terry(torch.zeros(3), torch.zeros(3))
    assert abs(out.loss.item() - math.log(2)) < 1e-6 and out.metrics["accuracy"] == 0.0  # a tie is not a win
    torch.manual_seed(0)
    rc, rr = torch.randn(8), torch.randn(8)
    out = bradley_terry(rc, rr)
    by_hand = -torch.log(1 / (1 + torch.exp(-(rc - rr)))).mean()  # -log sigmoid(r_w - r_l), Ouyang et al. eq. 1
    torch.testing.assert_close(out.loss, by_hand)
    assert out.metrics["accuracy"].item() == (rc > rr).float().mean().item()
    torch.testing.assert_close(out.metrics["margin"], (rc - rr).mean())
    # a margin of -200 is a finite loss of 200 (log(sigmoid()) would give inf) and a gradient of -1 on r_chosen
    r = torch.tensor([-100.0], requires_grad=True)
    loss = bradley_terry(r, torch.tensor([100.0])).loss
    loss.backward()
    assert loss.item() == pytest.approx(200.0) and r.grad.item() == pytest.approx(-1.0)


def test_dpo_worked_example_and_equation_7():
    out = dpo(torch.tensor([-3.0]), torch.tensor([-9.0]), torch.tensor([-5.0]), torch.tensor([-7.0]), beta=0.1)
    # log-ratios: chosen -3 - (-5) = +2, rejected -9 - (-7) = -2 -> -log sigmoid(0.1 * 4)
    assert out.loss.item() == pytest.approx(0.513015, abs=1e-6)
    assert out.metrics["reward_chosen"].item() == pytest.approx(0.2) and out.metrics["margin"].item() == pytest.approx(0.4)
    assert out.metrics["logp_gap"].item() == pytest.approx(6.0)
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16) * 5 for _ in range(4))
    beta = 0.5
    u = beta * ((pc - rc) - (pr - rr))
    torch.testing.assert_close(dpo(pc, pr, rc, rr, beta).loss, -torch.log(torch.sigmoid(u)).mean())
    # the policy equal to the reference: every implicit reward 0, loss log 2 whatever beta
    assert dpo(pc, pr, pc, pr, 3.0).loss.item() == pytest.approx(math.log(2))
    # eq. 8: the gradient on log pi(y_w) is -beta * sigmoid(-u) / B (and the opposite on log pi(y_l))
    pc1 = pc.clone().requires_grad_(True)
    dpo(pc1, pr, rc, rr, beta).loss.backward()
    torch.testing.assert_close(pc1.grad, -beta * torch.sigmoid(-u) / 16)


def test_bad_shapes_and_beta_are_refused():
    with pytest.raises(ValueError, match="beta must be positive"):
        dpo(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=0.0)
    with pytest.raises(ValueError, match="one number per pair"):
        bradley_terry(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="same pairs"):
        dpo(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="first token"):
        sequence_logps(torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3))


def test_sequence_logps_sums_the_completion_tokens_only():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    logp = F.log_softmax(logits, -1)
    by_hand = torch.stack([sum(logp[b, t - 1, ids[b, t]] for t in range(1, 5) if mask[b, t]) for b in range(2)])
    torch.testing.assert_close(sequence_logps(logits, ids, mask), by_hand)


def test_dpo_matches_trl_dpo_trainer_on_the_same_models_and_tokens(tmp_path):
    """TRL 1.16 DPOTrainer._compute_loss (sigmoid loss, reference on the fly) on a batch of 3 pairs of different
    lengths, right-padded, against ours: the same GPT-2 weights loaded as lmforge GPTs, log-probs summed over the
    completion tokens (sequence_logps), dpo(). The loss and TRL's logged log-probs and implicit rewards agree."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("trl")
    import lmforge
    from trl_helpers import PAD, dpo_trainer, gpt2_config

    torch.manual_seed(0)
    policy = transformers.GPT2LMHeadModel(gpt2_config()).eval()
    ref = transformers.GPT2LMHeadModel(gpt2_config()).eval()
    policy.save_pretrained(tmp_path / "policy")
    ref.save_pretrained(tmp_path / "ref")
    beta = 0.3
    trainer = dpo_trainer(policy, ref, beta)
    # rows 0-2 chosen, 3-5 rejected (TRL's layout); prompts of 3, 2 and 4 tokens, completions of different lengths
    lengths = [(3, 5), (2, 2), (4, 4), (3, 2), (2, 6), (4, 1)]
    T = max(p + c for p, c in lengths)
    ids = torch.full((6, T), PAD)
    attention, completion = torch.zeros(6, T, dtype=torch.long), torch.zeros(6, T, dtype=torch.long)
    g = torch.Generator().manual_seed(1)
    for b, (p, c) in enumerate(lengths):
        ids[b, :p + c] = torch.randint(0, PAD, (p + c,), generator=g)
        attention[b, :p + c] = 1
        completion[b, p:p + c] = 1
    trl_loss = trainer.compute_loss(trainer.model, {"input_ids": ids, "attention_mask": attention,
                                                    "completion_mask": completion})
    m = trainer._metrics["train" if trainer.model.training else "eval"]

    ours_policy, ours_ref = lmforge.load(tmp_path / "policy").eval(), lmforge.load(tmp_path / "ref").eval()
    with torch.no_grad():
        logps = sequence_logps(ours_policy(ids).logits, ids, completion)
        ref_logps = sequence_logps(ours_ref(ids).logits, ids, completion)
    out = dpo(logps[:3], logps[3:], ref_logps[:3], ref_logps[3:], beta=beta)
    torch.testing.assert_close(out.loss, trl_loss.detach(), atol=1e-5, rtol=1e-5)
    assert logps[:3].mean().item() == pytest.approx(m["logps/chosen"][-1], abs=1e-4)
    assert logps[3:].mean().item() == pytest.approx(m["logps/rejected"][-1], abs=1e-4)
    assert out.metrics["reward_chosen"].item() == pytest.approx(m["rewards/chosen"][-1], abs=1e-4)
    assert out.metrics["margin"].item() == pytest.approx(m["rewards/margins"][-1], abs=1e-4)
    assert out.metrics["accuracy"].item() == pytest.approx(m["rewards/accuracies"][-1])
