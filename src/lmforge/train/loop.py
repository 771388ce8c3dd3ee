"""A training loop that knows no model (minGPT: "nothing in this file really has anything to do with GPT").

The model only has to follow the package protocol: `model(x, targets=y).loss` is a scalar mean
cross-entropy, and the model is a family model (`model.config` names its family) or a wrapper around
one (see lmforge.train.checkpoint.config_record), so a checkpoint can say what to rebuild. Other
objectives pass `loss_fn(model, batch)`, returning a scalar loss or a LossOutput(loss, metrics) whose
metrics are logged beside the loss. Batches come from any object with `get(index) -> tuple of tensors`
whose result depends only on the index (lmforge.data.sampler.RandomWindows): the data position is one
integer in the train state.

    trainer = Trainer(model, TrainConfig(max_steps=100), train_batches, val_batches, out_dir="runs/x")
    trainer.fit()              # or trainer.fit(resume=True) after a crash: same final weights, bit for bit

Post-training objectives read frozen companion models (a DPO reference, a reward model):
`Trainer(policy, ..., companions={"ref": ref}, loss_fn=dpo)` calls `dpo(model, batch, companions)`;
companions are never trained, saved or wrapped in DDP. A callback may end the run early with
`trainer.request_stop(reason)`. Precision (lmforge.train.precision) and processes
(lmforge.train.dist: DDP or FSDP, `train.parallel`) are decided in their own modules; only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from lmforge.config import TrainConfig
from lmforge.kernels import accelerate
from lmforge.objectives import LossOutput
from lmforge.train import checkpoint as ckpt
from lmforge.train import dist as parallel
from lmforge.train.adapters import adapt, save_adapter_of
from lmforge.train.compiling import CompileFailed, choose_compile, failed
from lmforge.train.compiling import warm_up as compiling_warm_up
from lmforge.train.dist import Dist, resolve_device
from lmforge.train.optim import Schedule, build_optimizer
from lmforge.train.precision import choose_dtype, shapes_key

# the Trainer's own keys in a metrics row: a loss_fn metric may not take one (nor the "val_" prefix of eval metrics)
ROW_KEYS = ("step", "loss", "lr", "tokens", "step_s", "elapsed_s")


def next_token_loss(model: torch.nn.Module, batch: tuple) -> torch.Tensor:
    """The default objective: batch = (ids, targets), the model computes its own mean cross-entropy."""
    x, y = batch
    return model(x, targets=y).loss


def batch_tokens(source, batch: tuple) -> int:
    """Tokens in one training batch: the source's own count where it has one (`batch_tokens(batch)`, e.g.
    real tokens without padding), else every position of the input tensor, batch[0]."""
    count = getattr(source, "batch_tokens", None)
    return int(count(batch)) if count is not None else batch[0].numel()


def as_loss_output(result: Any) -> LossOutput:
    """A loss_fn's result as a LossOutput: a plain scalar tensor is a loss without metrics."""
    if isinstance(result, LossOutput):
        out = result
    elif isinstance(result, torch.Tensor):
        out = LossOutput(result)
    else:
        raise ValueError(f"loss_fn returned a {type(result).__name__}; return a scalar loss tensor or "
                         f"LossOutput(loss, metrics) (lmforge.objectives)")
    for name in out.metrics:
        if name in ROW_KEYS or name.startswith("val_"):
            raise ValueError(f"loss_fn metric {name!r} would overwrite the Trainer's own column; metric names "
                             f"may not be one of {', '.join(ROW_KEYS)} nor start with 'val_' (eval metrics get it)")
    return out


class Means:
    """Running means of metrics over calls (the micro-batches of a step, or the eval batches). Added after
    the loss's .item() has waited for the device, so reading a metric costs a copy, not another sync."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, metrics: Mapping[str, Any]) -> None:
        if self.n and metrics.keys() != self.sums.keys():
            raise ValueError(f"loss_fn returned metrics {sorted(metrics)} after {sorted(self.sums)}: "
                             f"return the same metric names on every call (they are averaged)")
        for name, v in metrics.items():
            if isinstance(v, torch.Tensor):
                if v.numel() != 1:
                    raise ValueError(f"metric {name!r} has shape {tuple(v.shape)}; a metric is one number "
                                     f"(a float or a 0-d tensor, e.g. x.mean())")
                v = v.detach()
            self.sums[name] = self.sums.get(name, 0.0) + float(v)
        self.n += 1

    def means(self) -> dict[str, float]:
        return {name: total / self.n for name, total in self.sums.items()}


def _round(x: float) -> float:
    """6 significant digits: a metric's scale is unknown (a PPO KL of 3e-7 must not print as 0)."""
    return float(f"{x:.6g}")


class Trainer:
    """Gradient accumulation, clipping, bf16 autocast, optional torch.compile, DDP or FSDP, periodic eval,
    metrics.jsonl + loss.png, atomic checkpoints and bit-exact resume; loss metrics, stop requests and
    frozen companion models for post-training.

    With train.parallel=fsdp the model is sharded in place (lmforge.train.dist.shard): after training,
    `trainer.model` holds shards and its forward is a collective (every rank calls it); the checkpoint on
    disk is the full model, which lmforge.load reads as any other.

    What it does to `model` (and the companions): moves it to the device; on CPU also
    lmforge.kernels.accelerate(model), so fp32 products compute their forward with oneDNN where that timed
    faster than torch's default BLAS on this machine (1.17-1.50x for GPT-2's matrices on a Zen 4; gradients
    exactly F.linear's) and evaluation's few-row products take the decoding paths timed fastest. The change is to the linear layers' class only (same Parameters, same
    state-dict keys, outputs within float rounding): lmforge.kernels.restore(model) undoes it,
    lmforge.kernels.set_large_onednn(False) turns the path off."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, train_batches, val_batches=None,
                 out_dir: str | Path | None = None, *, tokenizer=None, run_config: dict | None = None,
                 loss_fn: Callable[..., torch.Tensor | LossOutput] | None = None,
                 callbacks: tuple[Callable[["Trainer", dict], None], ...] = (),
                 companions: Mapping[str, torch.nn.Module] | None = None,
                 log: Callable[[str], None] | None = None):
        """loss_fn: loss_fn(model, batch) -> scalar tensor or LossOutput; with companions, it is called
        as loss_fn(model, batch, companions). Default: the model's own next-token loss.
        callbacks: called as cb(trainer, row) after each metrics row (rank 0 only), e.g. to print a sample;
        one may end training with trainer.request_stop(reason).
        companions: name -> frozen model the loss reads (a reference or reward model). The Trainer moves
        each to the device, puts it in eval mode and turns off its gradients; it is never in the optimizer,
        DDP/FSDP or a checkpoint."""
        self.cfg, self.train_batches, self.val_batches = config, train_batches, val_batches
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tokenizer, self.run_config = tokenizer, run_config
        self.log = log or (lambda msg: print(msg, flush=True))  # flushed: a watcher may act on each line
        self.dist = Dist()
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.sharded = config.parallel == "fsdp"
        self.dist.init(self.device, group=self.sharded)
        model = adapt(model, run_config)  # the run's `lora:` section: adapters, the rest frozen (train.adapters)
        self.model = model.to(self.device)  # the unwrapped module (no DDP, no compile): what is saved and returned
        self.companions = self._freeze(companions or {})
        if self.device.type == "cpu":  # the oneDNN forward for large training products (lmforge.kernels)
            for m in (self.model, *self.companions.values()):
                accelerate(m)
        self.loss_fn, self.callbacks = loss_fn or next_token_loss, tuple(callbacks)
        self._bf16: bool | None = None  # decided on first use (see bf16); a resumed run takes its checkpoint's
        self._dtype_choice: tuple[bool, str] | None = None
        if self.sharded:
            # rank 0 times a step alone to choose the dtype, and a sharded model cannot run on one rank: choose
            # now, on the whole model (a resumed run still takes its checkpoint's choice; see bf16)
            self._dtype_choice = self._choose_dtype()
            parallel.shard(self.model, self.device)  # in place: the parameters become shards, so before the optimizer
        self.optimizer = build_optimizer(self.model, config)
        self.schedule = Schedule.from_config(config)
        self.step, self.position, self.metrics = 0, 0, []
        self.tokens = 0  # training tokens this rank has consumed since the start or the resume (batch_tokens)
        self._tokens_before = 0  # all ranks' tokens up to the checkpoint resumed from
        self._elapsed, self._fit_t0 = 0.0, None  # training wall time before this fit() call; when it started
        self.stop_reason: str | None = None  # why fit() ended before max_steps (request_stop), else None
        self.compile_mode = config.compile  # False, True or "auto" (TrainConfig checks it)
        self.compiled: bool | None = None  # torch.compile in use? decided when fit() starts (lmforge.train.compiling)
        self._wrap(self.model)

    def _wrap(self, net: torch.nn.Module) -> None:
        """self.net, what forward/backward run through: the model or its torch.compile wrapper, in DDP when
        distributed."""
        if self.dist.enabled and not self.sharded:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = net

    def _freeze(self, companions: Mapping[str, torch.nn.Module]) -> dict[str, torch.nn.Module]:
        trained = {id(p) for p in self.model.parameters()}
        frozen = {}
        for name, m in companions.items():
            if not isinstance(m, torch.nn.Module):
                raise ValueError(f"companion {name!r} is a {type(m).__name__}, not a torch.nn.Module")
            if any(id(p) in trained for p in m.parameters()):
                # freezing it would freeze the trained weights too (and a reference must not move with the policy)
                raise ValueError(f"companion {name!r} shares parameters with the trained model; pass a copy "
                                 f"(e.g. copy.deepcopy(model) before training)")
            frozen[name] = m.to(self.device).eval().requires_grad_(False)
        return frozen

    def compute_loss(self, net: torch.nn.Module, batch: tuple) -> LossOutput:
        """The loss_fn on one batch, with the companions when there are any."""
        result = self.loss_fn(net, batch, self.companions) if self.companions else self.loss_fn(net, batch)
        return as_loss_output(result)

    def request_stop(self, reason: str) -> None:
        """End training after the current step, with a checkpoint at it (e.g. a callback whose budget is
        spent, or early stopping). Rank 0 decides: a request on another rank is ignored, and under DDP
        every rank stops at the same step. `stop_reason` says why, on every rank, once fit() returns."""
        if self.dist.is_main and self.stop_reason is None:
            self.stop_reason = reason

    @property
    def bf16(self) -> bool:
        """Train under bf16 autocast? Decided once, when first needed: a resumed `auto` run takes the
        checkpoint's choice (no timing), any other run asks choose_dtype. A collective under DDP."""
        if self._bf16 is None:
            self._bf16, why = self._dtype_choice or self._choose_dtype()
            if self.dist.is_main:
                self.log(f"dtype: {'bf16 autocast' if self._bf16 else 'fp32'} ({why})")
        return self._bf16

    def _choose_dtype(self) -> tuple[bool, str]:
        """(bf16?, why): rank 0 decides (and times alone, while the others wait): every rank must run the same dtype."""
        choice = (choose_dtype(self.cfg.dtype, self.device, self.model, self._probe(),
                               probe_key=f"batch={self.cfg.batch_size}") if self.dist.is_main else None)
        return self.dist.broadcast(choice)

    def _probe(self) -> Callable[[], Any]:
        """Forward and backward on batch 0, in eval mode (no dropout, so no RNG is drawn); gradients dropped.

        A training step, not a forward alone: the backward pass is two thirds of the work and gains
        from bf16 differently (a no-grad forward of a small model measured bf16 slower while the step
        was 1.4x faster). Batch 0 is fetched at the first call (choose_dtype's warm-up), not before: a run that
        needs no timing (fp32 requested, no native bf16) reads no batch for it, nor does an RL source sample a
        rollout for it."""
        batch = None

        def train_step():
            nonlocal batch
            if batch is None:
                batch = tuple(t.to(self.device) for t in self.train_batches.get(0))
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.enable_grad():
                    self.compute_loss(self.model, batch).loss.backward()
            finally:
                self.model.train(was_training)
                for p in self.model.parameters():
                    p.grad = None
        return train_step

    def decide_compile(self) -> bool:
        """Train through torch.compile? Decided once, at the start of fit() (after the dtype, which the graph
        depends on): train.compile false -> eager; true -> compiled; auto -> whichever timed faster here
        (lmforge.train.compiling: rank 0 times, every rank follows). A compilation that fails -> eager, with a
        warning. Logs the choice and the compilation's seconds."""
        if self.compiled is not None:
            return self.compiled
        mode, compiled, why, seconds = self.compile_mode, False, "train.compile: false", None
        if mode is not False:
            batch = tuple(t.to(self.device) for t in self.train_batches.get(0))
            compiled_net = torch.compile(self.model)
            eager_step, compiled_step = self._timed_step(self.model, batch), self._timed_step(compiled_net, batch)
            try:
                if mode is True:
                    compiled, why = True, "train.compile: true"
                    seconds = compiling_warm_up(compiled_step)
                elif self.sharded:
                    why = "train.compile: auto is not timed under fsdp (a sharded step needs every rank): eager"
                else:
                    key = (f"{self.device.type} {shapes_key(self.model)} batch={'x'.join(map(str, batch[0].shape))} "
                           f"dtype={'bf16' if self.bf16 else 'fp32'}")
                    choice = choose_compile(key, eager_step, compiled_step) if self.dist.is_main else None
                    compiled, why, seconds = self.dist.broadcast(choice)
                    if compiled and not self.dist.is_main:
                        seconds = compiling_warm_up(compiled_step)
            except CompileFailed as e:
                compiled, why = False, failed(e)
        self.compiled = compiled
        if compiled:
            self._wrap(compiled_net)
        if self.dist.is_main and mode is not False:
            took = f"; compilation took {seconds:.1f} s" if seconds is not None else ""
            self.log(f"compile: {'torch.compile' if compiled else 'eager'} ({why}{took})")
        return compiled

    def _timed_step(self, net: torch.nn.Module, batch: tuple) -> Callable[[], None]:
        """Forward + backward of `net` on `batch` in train mode, drawing nothing from the run's random streams
        (dropout's draws are undone) and leaving no gradients: what decide_compile compiles and times."""
        devices = [self.device] if self.device.type == "cuda" else []

        def step():
            try:
                with torch.random.fork_rng(devices=devices):
                    with self._autocast():
                        loss = self.compute_loss(net, batch).loss
                    loss.backward()
            finally:
                for p in self.model.parameters():
                    p.grad = None
        return step

    # ------------------------------------------------------------------ state
    def elapsed(self) -> float:
        """Seconds spent in fit() (evaluations and checkpoints included), summed over every resume."""
        return self._elapsed + (time.perf_counter() - self._fit_t0 if self._fit_t0 is not None else 0.0)

    def global_tokens(self) -> int:
        """Training tokens consumed by all ranks so far (a collective under DDP: every rank calls it)."""
        return self._tokens_before + round(self.dist.sum(float(self.tokens)))

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the weights that an uninterrupted run would carry to the next step."""
        return {
            "step": self.step,
            # sharded: gathered on rank 0 in the unsharded format (a collective), so any run can resume it
            "optimizer": (parallel.full_optimizer_state(self.model, self.optimizer) if self.sharded
                          else self.optimizer.state_dict()),
            "scheduler": {"name": self.schedule.name, "step": self.step},  # the schedule is a function of step
            "data": {"position": self.position, "seed": self.cfg.seed},
            "rng": self.dist.gather(ckpt.capture_rng()),  # one per rank: each drew its own dropout masks
            "world_size": self.dist.world_size,
            "dtype": "bf16" if self.bf16 else "fp32",  # what `auto` chose: a resumed run must not re-decide
            "tokens": self.global_tokens(),
            "elapsed_s": self.elapsed(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.position = state["step"], state["data"]["position"]
        self.tokens, self._tokens_before = 0, state.get("tokens", 0)  # older states have none: count from 0
        self._elapsed = state.get("elapsed_s", 0.0)
        if self.sharded:
            parallel.load_full_optimizer_state(self.model, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.cfg.dtype == "auto" and state.get("dtype") in ("bf16", "fp32"):
            self._bf16 = state["dtype"] == "bf16"
            if self.dist.is_main:
                self.log(f"dtype: {'bf16 autocast' if self._bf16 else 'fp32'}, as chosen when this run started "
                         "(resume keeps it, for bit-exactness)")
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            ckpt.restore_rng(rngs[self.dist.rank])
        else:  # the run continues correctly, but dropout masks differ from an uninterrupted run
            torch.manual_seed(self.cfg.seed + 1000 * self.step + self.dist.rank)
            if self.dist.is_main:
                self.log(f"note: checkpoint was written by {len(rngs)} process(es), resuming with "
                         f"{self.dist.world_size}: not bit-exact with an uninterrupted run")

    def save(self) -> None:
        """A checkpoint of the trained model only: companions are not in it (they are inputs to the run)."""
        state = self.state_dict()  # collective (gathers RNG states): every rank calls it
        weights = parallel.full_weights(self.model) if self.sharded else None  # collective: all-gathers
        if self.dist.is_main and self.out_dir is not None:
            ckpt.save_checkpoint(self.out_dir, self.model, state, metrics=self.metrics,
                                 tokenizer=self.tokenizer, run_config=self.run_config, weights=weights)
            if not self.sharded:
                save_adapter_of(self.model, self.out_dir)  # a LoRA run: adapter/ in PEFT's format too
        self.dist.barrier()

    def resume(self) -> None:
        if self.out_dir is None:
            raise ValueError("resume needs a run directory (out_dir)")
        if self.dist.is_main:
            ckpt.recover(self.out_dir)
        self.dist.barrier()
        into = (lambda tensors: parallel.load_full_weights(self.model, tensors)) if self.sharded else None
        state, metrics = ckpt.load_checkpoint(self.out_dir, self.model, into)
        self.load_state_dict(state)
        self.metrics = [m for m in metrics if m["step"] <= self.step]
        if self.dist.is_main:
            self.log(f"resumed from {self.out_dir} at step {self.step}")

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.no_grad()
    def val_metrics(self) -> dict[str, float]:
        """{"val_loss": ..., "val_<metric>": ...} for every metric of the loss_fn: means over the same
        `eval_steps` batches every time (indices 0..eval_steps-1) and over the ranks."""
        self.net.eval()
        loss, means = 0.0, Means()
        for i in range(self.cfg.eval_steps):
            batch = tuple(t.to(self.device) for t in self.val_batches.get(i))
            with self._autocast():
                out = self.compute_loss(self.net, batch)
            loss += out.loss.float().item()
            means.add(out.metrics)
        self.net.train()
        values = self.dist.means({"loss": loss / self.cfg.eval_steps, **means.means()})
        return {f"val_{name}": v for name, v in values.items()}

    def evaluate(self) -> float:
        """Mean val loss over the same `eval_steps` batches every time (see val_metrics)."""
        return self.val_metrics()["val_loss"]

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over grad_accum micro-batches; returns this rank's means over them, {"loss", **metrics}."""
        cfg = self.cfg
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total, means = 0.0, Means()
        for micro in range(cfg.grad_accum):
            batch = self.train_batches.get(self.position)
            self.position += 1
            self.tokens += batch_tokens(self.train_batches, batch)  # counted before the copy: no device sync
            batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            # DDP: all-reduce gradients only on the last micro-batch (no_sync elsewhere). FSDP reduce-scatters
            # after every micro-batch: skipping it would keep whole gradients, the memory FSDP exists to save
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if not self.dist.enabled or self.sharded or last else self.net.no_sync()
            with sync:
                with self._autocast():
                    out = self.compute_loss(self.net, batch)
                (out.loss / cfg.grad_accum).backward()
            total += out.loss.detach().float().item()
            means.add(out.metrics)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": total / cfg.grad_accum, **means.means()}

    def _stop_agreed(self) -> bool:
        """Has rank 0 asked to stop? Asked every step, so every rank leaves the loop at the same step (the
        others would otherwise wait forever in the next step's all-reduce)."""
        stop = self.dist.broadcast_flag(self.stop_reason is not None)
        if stop and self.dist.enabled:
            self.stop_reason = self.dist.broadcast(self.stop_reason)  # once: every rank can say why
        return stop

    def _row(self, out: dict[str, float], t0: float) -> dict[str, float]:
        """The metrics row of the step just taken: train loss and metrics every log_interval steps, val loss and
        metrics every eval_interval steps, both at max_steps; {} when neither is due. t0: when the step began.
        A collective under DDP."""
        cfg, step, row = self.cfg, self.step, {}
        if step % cfg.log_interval == 0 or step == cfg.max_steps:
            means = self.dist.means(out)  # loss and metrics in one all-reduce
            row = {"step": step, "loss": round(means.pop("loss"), 6), **{k: _round(v) for k, v in means.items()},
                   "lr": self.schedule(step - 1), "tokens": self.global_tokens(), "step_s": round(time.perf_counter() - t0, 4),
                   "elapsed_s": round(self.elapsed(), 2)}
        if self.val_batches is not None and ((cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_steps):
            val = self.val_metrics()
            row = {"step": step, **row, "val_loss": round(val.pop("val_loss"), 6), **{k: _round(v) for k, v in val.items()}}
        return row

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train to cfg.max_steps, or to the step where a stop was requested; returns the last logged metrics."""
        cfg = self.cfg
        if resume:
            self.resume()
        else:
            torch.manual_seed(cfg.seed + self.dist.rank)  # dropout masks: own stream per rank
        self.bf16  # decide (and say) the dtype before the progress bar starts
        self.decide_compile()  # and whether to compile (lmforge.train.compiling)
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        self.net.train()
        self._fit_t0, last, self.stop_reason = time.perf_counter(), {}, None
        try:
            while self.step < cfg.max_steps:
                t = time.perf_counter()
                out = self.train_step()
                if not math.isfinite(out["loss"]):
                    raise FloatingPointError(f"loss is {out['loss']} at step {self.step}: lower train.lr or enable train.grad_clip")
                step = self.step
                row = self._row(out, t)
                if row:
                    self.metrics.append(row)
                    last = row
                    if bar is not None:
                        bar.set_postfix({k: v for k, v in row.items() if k not in ROW_KEYS or k == "loss"})
                    if self.dist.is_main:
                        for cb in self.callbacks:
                            cb(self, row)
                stop = self._stop_agreed()
                if bar is not None:
                    bar.update(1)
                if (cfg.save_interval and step % cfg.save_interval == 0) or step == cfg.max_steps or stop:
                    self.save()
                    if self.dist.is_main and self.out_dir is not None:
                        # a line on stdout per checkpoint: what is safe on disk (tqdm draws on stderr)
                        with bar.external_write_mode() if bar is not None else contextlib.nullcontext():
                            self.log(f"checkpoint: step {step} saved to {self.out_dir}")  # the bar is redrawn below it
                if stop:
                    if self.dist.is_main:
                        with bar.external_write_mode() if bar is not None else contextlib.nullcontext():
                            self.log(f"stopped at step {step} of {cfg.max_steps}: {self.stop_reason}")
                    break
        except KeyboardInterrupt as e:
            e.step = self.step  # the recipe runner says where: "interrupted at step N"
            raise
        finally:
            if bar is not None:
                bar.close()
        self._elapsed, self._fit_t0 = self.elapsed(), None
        return last
