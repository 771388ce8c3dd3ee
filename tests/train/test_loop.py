"""The Trainer on a real (tiny) GPT and real text: it learns, accumulation is exact, outputs are written."""
import json

import numpy as np
import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.data.sampler import RandomWindows
from lmforge.models import build_model
from lmforge.train.loop import Trainer
from lmforge.tokenizers import CharTokenizer
from lmforge.data.corpora import splits


@pytest.fixture(scope="module")
def kjv():
    s = splits("kjv")
    tok = CharTokenizer.train(s["train"] + s["val"] + s["test"])
    return tok, np.array(tok.encode(s["train"][:300_000]), dtype=np.uint16), np.array(tok.encode(s["val"][:30_000]), dtype=np.uint16)


def tiny(vocab, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    return build_model("gpt", {"vocab_size": vocab, "max_len": 32, "d_model": 32, "n_heads": 2, "n_layers": 2, "dropout": dropout})


def test_training_lowers_val_loss_and_writes_a_run_directory(kjv, tmp_path):
    tok, train, val = kjv
    cfg = TrainConfig(max_steps=80, batch_size=16, lr=3e-3, warmup_steps=5, eval_interval=40, eval_steps=4,
                      save_interval=40, log_interval=10, dtype="fp32", progress=False)
    model = tiny(tok.vocab_size, dropout=0.1)
    trainer = Trainer(model, cfg, RandomWindows(train, 32, 16, seed=1), RandomWindows(val, 32, 16, seed=2),
                      out_dir=tmp_path, tokenizer=tok, log=lambda s: None)
    before = trainer.evaluate()
    assert before == pytest.approx(np.log(tok.vocab_size), abs=0.3)  # untrained: about uniform over the vocabulary
    last = trainer.fit()
    assert last["step"] == 80 and last["val_loss"] < before - 1.0  # ~4.3 -> below 3.3: it learned letter statistics
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert [r["step"] for r in rows if "val_loss" in r] == [40, 80]
    assert [r["tokens"] for r in rows] == [r["step"] * 16 * 32 for r in rows]  # batch x block per step
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "tokenizer.json").is_file()


class Halves:
    """Batch i of `inner` served as two micro-batches 2i, 2i+1: the same data, split for accumulation."""

    def __init__(self, inner):
        self.inner, self.block_size = inner, inner.block_size

    def get(self, index):
        x, y = self.inner.get(index // 2)
        h = x.shape[0] // 2
        part = slice(0, h) if index % 2 == 0 else slice(h, None)
        return x[part], y[part]


def test_gradient_accumulation_equals_the_large_batch(kjv):
    tok, train, _ = kjv
    # eps >> |grad| makes Adam's update lr * g / (|g| + eps) ~ lr * g / eps: proportional to the gradient, so a
    # wrongly scaled accumulation shows (plain Adam is invariant to gradient scale and would hide it)
    base = dict(max_steps=5, lr=1.0, eps=10.0, weight_decay=0.0, grad_clip=0.0, warmup_steps=0, dtype="fp32",
                progress=False, eval_interval=0, save_interval=0)
    big = Trainer(tiny(tok.vocab_size), TrainConfig(batch_size=8, **base), RandomWindows(train, 32, 8, seed=3), log=lambda s: None)
    acc = Trainer(tiny(tok.vocab_size), TrainConfig(batch_size=4, grad_accum=2, **base),
                  Halves(RandomWindows(train, 32, 8, seed=3)), log=lambda s: None)
    start = {k: v.clone() for k, v in big.model.state_dict().items()}
    big.fit()
    acc.fit()
    assert big.position == 5 and acc.position == 10
    assert max((big.model.state_dict()[k] - v).abs().max() for k, v in start.items()) > 1e-3  # it did move
    for (name, a), b in zip(big.model.state_dict().items(), acc.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_autocast_trains(kjv):
    tok, train, val = kjv
    cfg = TrainConfig(max_steps=30, batch_size=16, lr=3e-3, warmup_steps=2, eval_interval=30, eval_steps=2,
                      dtype="bf16", progress=False, save_interval=0)
    t = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 16, seed=1), RandomWindows(val, 32, 16, seed=2),
                log=lambda s: None)
    assert t.bf16 and t.model.tok_emb.weight.dtype == torch.float32  # autocast: fp32 master weights
    assert t.fit()["val_loss"] < 3.6


def test_custom_objective_and_callbacks(kjv):
    """The trainer knows no model: any loss_fn(model, batch) works, and callbacks see every metrics row."""
    tok, train, _ = kjv
    seen = []

    def last_token_only(model, batch):  # a different objective: predict only the final position
        x, y = batch
        logits = model(x).logits[:, -1]  # (B, V)
        return torch.nn.functional.cross_entropy(logits, y[:, -1])

    cfg = TrainConfig(max_steps=6, batch_size=4, log_interval=2, dtype="fp32", progress=False, eval_interval=0, save_interval=0)
    t = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 4, seed=0), loss_fn=last_token_only,
                callbacks=[lambda trainer, row: seen.append((trainer.step, row["step"]))], log=lambda s: None)
    t.fit()
    assert seen == [(2, 2), (4, 4), (6, 6)]


def test_resume_keeps_the_dtype_that_auto_chose(kjv, tmp_path, monkeypatch):
    """`auto` times bf16 against fp32; a resumed run must not re-decide (a different choice breaks bit-exactness)
    nor spend the time to re-measure."""
    tok, train, _ = kjv
    cfg = TrainConfig(max_steps=4, batch_size=4, dtype="auto", progress=False, eval_interval=0, save_interval=2)
    first = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 4, seed=0), out_dir=tmp_path, log=lambda s: None)
    first.fit()
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert state["dtype"] == ("bf16" if first.bf16 else "fp32")
    state["dtype"] = "fp32" if first.bf16 else "bf16"  # as if the first run had decided the other way
    torch.save(state, tmp_path / "train_state.pt")
    monkeypatch.setattr("lmforge.train.loop.choose_dtype", lambda *a: pytest.fail("a resumed auto run re-timed"))
    again = Trainer(tiny(tok.vocab_size), cfg.replace(max_steps=6), RandomWindows(train, 32, 4, seed=0),
                    out_dir=tmp_path, log=lambda s: None)
    again.fit(resume=True)
    assert again.bf16 == (state["dtype"] == "bf16") and again.step == 6
    assert again.metrics[-1]["tokens"] == 6 * 4 * 32  # the count goes on from the checkpoint


def test_dtype_probe_is_a_training_step_that_leaves_no_trace(kjv, tmp_path):
    """`dtype: auto` times forward + backward on batch 0; the probe must not leave gradients, touch the
    RNG, or change the weights, or a run with `auto` would not match the same run with its chosen dtype."""
    tok, train, val = kjv
    cfg = TrainConfig(max_steps=1, batch_size=4, dtype="fp32", progress=False, eval_interval=0, save_interval=0)
    t = Trainer(tiny(tok.vocab_size, dropout=0.1), cfg, RandomWindows(train, 32, 4, seed=1),
                RandomWindows(val, 32, 4, seed=2), out_dir=tmp_path, tokenizer=tok, log=lambda s: None)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    rng = torch.get_rng_state()
    calls = []
    t.model.tok_emb.weight.register_hook(lambda grad: calls.append("backward"))
    t._probe()()
    assert calls == ["backward"]
    assert all(p.grad is None for p in t.model.parameters()) and t.model.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in t.model.state_dict().items())


def test_loss_metrics_land_in_every_row_averaged_like_the_loss(kjv, tmp_path):
    """A loss_fn returning LossOutput(loss, metrics): each metric is logged under its name (train: mean over the
    step's micro-batches; val: mean over the eval batches, as "val_<name>"), in metrics.jsonl and the callbacks'
    rows. The metric here is a function of the data alone, so the expected means are computed independently."""
    from lmforge.objectives import LossOutput
    tok, train, val = kjv
    batches, vals = RandomWindows(train, 32, 4, seed=5), RandomWindows(val, 32, 4, seed=6)

    def with_metrics(model, batch):
        x, y = batch
        return LossOutput(model(x, targets=y).loss, {"margin": x.float().mean(), "rows": float(x.shape[0])})

    cfg = TrainConfig(max_steps=4, batch_size=4, grad_accum=2, log_interval=2, eval_interval=4, eval_steps=3,
                      dtype="fp32", progress=False, save_interval=0)
    seen = []
    t = Trainer(tiny(tok.vocab_size), cfg, batches, vals, out_dir=tmp_path, tokenizer=tok, loss_fn=with_metrics,
                callbacks=[lambda trainer, row: seen.append(row)], log=lambda s: None)
    t.fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == seen and [r["step"] for r in rows] == [2, 4]
    for r in rows:  # step s ran micro-batches 2(s-1) and 2(s-1)+1
        s = r["step"]
        expect = np.mean([batches.get(i)[0].float().mean().item() for i in (2 * s - 2, 2 * s - 1)])
        assert r["margin"] == pytest.approx(expect, rel=1e-5) and r["rows"] == 4.0
    expect_val = np.mean([vals.get(i)[0].float().mean().item() for i in range(3)])
    assert "val_margin" not in rows[0] and rows[1]["val_margin"] == pytest.approx(expect_val, rel=1e-5)
    assert rows[1]["val_rows"] == 4.0 and rows[1]["val_loss"] == pytest.approx(t.evaluate(), abs=1e-6)


def test_a_metric_may_not_take_a_column_of_the_trainer(kjv):
    from lmforge.objectives import LossOutput
    tok, train, _ = kjv
    cfg = TrainConfig(max_steps=1, batch_size=2, dtype="fp32", progress=False, eval_interval=0, save_interval=0)
    bad = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 2, seed=0), log=lambda s: None,
                  loss_fn=lambda m, b: LossOutput(m(b[0], targets=b[1]).loss, {"lr": 1.0}))
    with pytest.raises(ValueError, match="'lr' would overwrite"):
        bad.fit()


def test_a_callback_stops_the_run_with_a_checkpoint_and_max_steps_untouched(kjv, tmp_path):
    tok, train, _ = kjv
    cfg = TrainConfig(max_steps=10, batch_size=4, log_interval=1, dtype="fp32", progress=False, eval_interval=0,
                      save_interval=0)

    def stop_at_3(trainer, row):
        if row["step"] == 3:
            trainer.request_stop("enough")

    t = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 4, seed=0), out_dir=tmp_path, log=lambda s: None,
                callbacks=[stop_at_3])
    last = t.fit()
    assert t.step == 3 and last["step"] == 3 and t.stop_reason == "enough" and cfg.max_steps == 10
    assert torch.load(tmp_path / "train_state.pt", weights_only=True)["step"] == 3  # saved although save_interval=0
    again = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 4, seed=0), out_dir=tmp_path,
                    log=lambda s: None)
    again.fit(resume=True)  # no stop asked this time: it goes on to max_steps
    assert again.step == 10 and again.stop_reason is None and [r["step"] for r in again.metrics] == list(range(1, 11))


def test_dpo_with_a_frozen_reference_companion(kjv, tmp_path):
    """A DPO-like objective (Rafailov et al. 2023, eq. 7) reads a frozen reference model: the reference's weights do
    not move, it is not in the optimizer, and the checkpoint holds only the trained model's tensors."""
    import copy

    import torch.nn.functional as F
    from safetensors.torch import load_file

    from lmforge.objectives import LossOutput
    tok, train, _ = kjv
    policy = tiny(tok.vocab_size, dropout=0.1)
    ref = copy.deepcopy(policy)
    ref.train()  # the Trainer, not the caller, puts it in eval mode
    before = {k: v.clone() for k, v in ref.state_dict().items()}

    def logprob(model, x, y):  # sum of log p(y_t | x_<=t) per sequence, (B,)
        return torch.log_softmax(model(x).logits.float(), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)

    def dpo(model, batch, companions, beta=0.1):
        x, chosen = batch
        rejected = chosen.roll(1, dims=-1)  # the same text, shifted: a worse continuation
        pi = logprob(model, x, chosen) - logprob(model, x, rejected)
        with torch.no_grad():
            rf = logprob(companions["ref"], x, chosen) - logprob(companions["ref"], x, rejected)
        losses = -F.logsigmoid(beta * (pi - rf))
        return LossOutput(losses.mean(), {"margin": (pi - rf).mean()})

    cfg = TrainConfig(max_steps=6, batch_size=4, lr=3e-3, warmup_steps=0, log_interval=3, dtype="fp32",
                      progress=False, eval_interval=0, save_interval=0)
    t = Trainer(policy, cfg, RandomWindows(train, 32, 4, seed=0), out_dir=tmp_path, loss_fn=dpo,
                companions={"ref": ref}, log=lambda s: None)
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    trained = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert trained == {id(p) for p in policy.parameters()}
    t.fit()
    assert all(torch.equal(v, before[k]) for k, v in ref.state_dict().items())  # the reference never moved
    assert t.metrics[-1]["margin"] > 0  # the policy learned to prefer the chosen continuation over the reference
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) <= set(policy.state_dict()) and not any(k.startswith("ref") for k in saved)
    assert all(torch.equal(saved[k], policy.state_dict()[k]) for k in saved)
    with pytest.raises(ValueError, match="shares parameters with the trained model"):
        Trainer(policy, cfg, RandomWindows(train, 32, 4, seed=0), loss_fn=dpo, companions={"ref": policy},
                log=lambda s: None)


def test_an_interrupt_carries_the_step_it_stopped_at(kjv):
    """Ctrl-C inside fit() propagates with `.step` (steps completed), so the recipe runner can say where it stopped."""
    tok, train, _ = kjv

    def ctrl_c_at_2(trainer, row):
        if row["step"] == 2:
            raise KeyboardInterrupt

    cfg = TrainConfig(max_steps=5, batch_size=2, log_interval=1, dtype="fp32", progress=False, eval_interval=0,
                      save_interval=0)
    t = Trainer(tiny(tok.vocab_size), cfg, RandomWindows(train, 32, 2, seed=0), callbacks=[ctrl_c_at_2],
                log=lambda s: None)
    with pytest.raises(KeyboardInterrupt) as e:
        t.fit()
    assert e.value.step == 2
