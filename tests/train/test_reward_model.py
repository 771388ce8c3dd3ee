"""The reward model (a scalar head on the last real token): padding on either side gives the same reward, a
checkpoint loads back as the reward model, and TRL 1.16's RewardTrainer (on a GPT2ForSequenceClassification
with the same weights) computes the same Bradley-Terry loss and accuracy."""
import pytest
import torch

from lmforge.models import build_model
from lmforge.train.reward_model import RewardModel, last_positions, load_reward_model

CFG = {"vocab_size": 31, "max_len": 32, "d_model": 32, "n_heads": 2, "n_layers": 2, "dropout": 0.0}


def test_last_positions_and_bad_masks():
    assert last_positions(torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 0]])).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="at least one real token"):
        last_positions(torch.tensor([[1, 1], [0, 0]]))


def test_the_reward_reads_the_last_real_token_whatever_the_padding():
    torch.manual_seed(0)
    rm = RewardModel(build_model("gpt", CFG)).eval()
    rows = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    alone = torch.stack([rm.score(torch.tensor([r])) for r in rows]).squeeze(1)  # (3,)
    right = torch.full((3, 4), 0)
    left = torch.full((3, 4), 0)
    right_mask, left_mask = torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long)
    for b, r in enumerate(rows):
        right[b, :len(r)], right_mask[b, :len(r)] = torch.tensor(r), 1
        left[b, 4 - len(r):], left_mask[b, 4 - len(r):] = torch.tensor(r), 1
    torch.testing.assert_close(rm.score(right, right_mask), alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rm.score(left, left_mask), alone, atol=1e-5, rtol=1e-5)
    # the reward depends on the last token's whole context: change the first token, the reward moves
    assert rm.score(torch.tensor([[1, 6, 7, 8]])).item() != pytest.approx(alone[0].item(), abs=1e-6)
    with pytest.raises(ValueError, match="decoder-only"):
        RewardModel(build_model("bert", "bert-tiny"))


def test_a_reward_checkpoint_loads_back_as_the_reward_model(tmp_path):
    from lmforge.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    rm = RewardModel(build_model("gpt", CFG))
    with torch.no_grad():
        rm.head.bias.fill_(0.25)
    save_checkpoint(tmp_path / "rm", rm, {"step": 1})
    again = load_reward_model(tmp_path / "rm")
    ids = torch.randint(0, 31, (2, 6))
    assert isinstance(again, RewardModel) and not again.training
    assert not any(p.requires_grad for p in again.parameters())
    torch.testing.assert_close(again.score(ids), rm.eval().score(ids))
    import lmforge
    base = lmforge.load(tmp_path / "rm", base_only=True)  # the language model inside
    assert torch.equal(base.tok_emb.weight, rm.base.tok_emb.weight)
    save_checkpoint(tmp_path / "lm", build_model("gpt", CFG), {"step": 1})
    with pytest.raises(ValueError, match="holds a GPT, not a reward model"):
        load_reward_model(tmp_path / "lm")
    with pytest.raises(ValueError, match="not a run directory"):
        load_reward_model(tmp_path / "nothing")


def test_bradley_terry_on_our_reward_model_matches_trl_reward_trainer(tmp_path):
    """RewardTrainer.compute_loss on GPT2ForSequenceClassification (its score: the last non-pad token's hidden state
    times a bias-free linear layer) == bradley_terry on our RewardModel holding the same weights (head bias 0),
    on 3 right-padded pairs of different lengths."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("trl")
    import lmforge
    from lmforge.objectives.preference import bradley_terry
    from trl_helpers import PAD, gpt2_config, reward_trainer

    torch.manual_seed(0)
    seq = transformers.GPT2ForSequenceClassification(gpt2_config(num_labels=1)).eval()
    with torch.no_grad():
        seq.score.weight.normal_(0, 1.0)  # rewards of order 1: the loss moves away from log 2
    lm = transformers.GPT2LMHeadModel(gpt2_config())
    lm.transformer.load_state_dict(seq.transformer.state_dict())
    lm.save_pretrained(tmp_path / "lm")
    rm = RewardModel(lmforge.load(tmp_path / "lm")).eval()
    with torch.no_grad():
        rm.head.weight.copy_(seq.score.weight)
    trainer = reward_trainer(seq)
    lengths = [5, 3, 7, 2, 6, 4]  # rows 0-2 chosen, 3-5 rejected (TRL's layout)
    ids, mask = torch.full((6, 7), PAD), torch.zeros(6, 7, dtype=torch.long)
    g = torch.Generator().manual_seed(1)
    for b, n in enumerate(lengths):
        ids[b, :n], mask[b, :n] = torch.randint(0, PAD, (n,), generator=g), 1
    trl_loss = trainer.compute_loss(trainer.model, {"input_ids": ids, "attention_mask": mask})
    m = trainer._metrics["train" if trainer.model.training else "eval"]
    with torch.no_grad():
        r = rm(ids, mask)
    out = bradley_terry(r[:3], r[3:])
    torch.testing.assert_close(out.loss, trl_loss.detach(), atol=1e-5, rtol=1e-5)
    assert out.metrics["accuracy"].item() == pytest.approx(m["accuracy"][-1])
    assert out.metrics["margin"].item() == pytest.approx(m["margin"][-1], abs=1e-5)
    assert abs(out.loss.item() - 0.693147) > 0.05  # not the trivial all-zero rewards
