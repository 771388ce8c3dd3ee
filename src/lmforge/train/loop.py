"""A training loop that knows no model (minGPT: "nothing in this file really has anything to do with GPT").

The model only has to follow the package protocol: `model(x, targets=y).loss` is a scalar mean
cross-entropy, and `model.config` is a Config (so a checkpoint can say what to rebuild). Other
objectives pass `loss_fn(model, batch) -> scalar loss` instead. Batches come from any object with
`get(index) -> tuple of tensors` whose result depends only on the index
(lmforge.data.sampler.RandomWindows): the data position is one integer in the train state.

    trainer = Trainer(model, TrainConfig(max_steps=100), train_batches, val_batches, out_dir="runs/x")
    trainer.fit()              # or trainer.fit(resume=True) after a crash: same final weights, bit for bit

Multi-process: launch with `torchrun --nproc_per_node N -m lmforge train ...`; torchrun's
environment variables (RANK, WORLD_SIZE, LOCAL_RANK) switch on DistributedDataParallel
(gloo on CPU, nccl on CUDA). Only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from lmforge.config import TrainConfig
from lmforge.kernels import accelerate
from lmforge.train import checkpoint as ckpt
from lmforge.train.optim import Schedule, build_optimizer


# ---------------------------------------------------------------------------------- hardware

def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _seconds(fn: Callable[[], Any], device: torch.device, bf16: bool, budget: float) -> float:
    """Best wall time of fn() under (optional) bf16 autocast, repeated for about `budget` s (at least 3 runs)."""
    best, runs = math.inf, 0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        fn()  # warm-up: first-call dispatch and kernel set-up are not what we compare
        end = time.perf_counter() + budget
        while time.perf_counter() < end or runs < 3:
            runs += 1
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
    return best


MIN_SPEEDUP = 1.1  # bf16 costs precision; take it only for a clear win


def choose_dtype(requested: str, device: torch.device, model: torch.nn.Module | None = None,
                 probe: Callable[[], Any] | None = None) -> tuple[bool, str]:
    """(use bf16 autocast?, why). "auto" picks bf16 only where it is faster.

    CUDA: bf16 whenever the GPU supports it (Ampere and later run it on tensor cores).
    CPU: only with native bf16 instructions (AVX512-BF16 or AMX); on an AVX2-only CPU bf16 is
    emulated and a matmul is ~100x slower. Flags say bf16 matmuls are fast, not that the model is:
    a small model spends its time in casts, norms and softmax, where bf16 gains nothing. So a
    flagged CPU is confirmed by timing `probe()` (the trainer passes forward + backward on its first
    batch; default: the model's largest matmul) ~0.1 s each way, and bf16 must be
    at least MIN_SPEEDUP times faster.
    """
    if requested == "fp32":
        return False, "fp32 requested"
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        if requested == "bf16" and not ok:
            raise ValueError("train.dtype=bf16 but this GPU does not support bf16; use train.dtype=fp32 or auto")
        return ok, "CUDA device supports bf16" if ok else "this GPU has no bf16: fp32"
    if requested == "bf16":
        return True, "bf16 requested"
    capability = torch.backends.cpu.get_cpu_capability()
    native = sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile"}) or \
        (["capability " + capability] if "BF16" in capability.upper() or "AMX" in capability.upper() else [])
    if not native:
        return False, f"CPU has no native bf16 (capability {capability}, no avx512_bf16/amx flag): fp32"
    what = "a training step (forward + backward)"
    if probe is None:
        w = max((p for p in model.parameters() if p.dim() == 2), key=lambda p: p.numel(), default=None) if model else None
        if w is None:
            return True, f"CPU has {', '.join(native)}: bf16"
        w, x = w.detach(), torch.randn(512, w.shape[1], device=w.device)
        probe, what = (lambda: x @ w.T), "the model's largest matmul"
    fp32, bf16 = _seconds(probe, device, False, 0.1), _seconds(probe, device, True, 0.1)
    speedup = fp32 / bf16
    verdict = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
    return verdict == "bf16", f"CPU has {', '.join(native)}; {what} measured {speedup:.2f}x the fp32 speed in bf16: {verdict}"


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but no CUDA device is available; use train.device=cpu or auto")
    return torch.device(name)


class Dist:
    """torchrun's environment: rank, world size; init/teardown of the process group."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        self.is_main = self.rank == 0
        self.device = torch.device("cpu")  # where collectives put their tensors: NCCL takes only CUDA tensors

    def init(self, device: torch.device) -> None:
        if not self.enabled:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)  # else every rank's NCCL communicator (and object collectives) use GPU 0
        if not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"  # gloo: the CPU backend
            torch.distributed.init_process_group(backend)
        if torch.distributed.get_backend() == "nccl":
            self.device = device

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        return self.sum(value) / self.world_size

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return t.item()

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


# ---------------------------------------------------------------------------------- trainer

def next_token_loss(model: torch.nn.Module, batch: tuple) -> torch.Tensor:
    """The default objective: batch = (ids, targets), the model computes its own mean cross-entropy."""
    x, y = batch
    return model(x, targets=y).loss


def batch_tokens(source, batch: tuple) -> int:
    """Tokens in one training batch: the source's own count where it has one (`batch_tokens(batch)`, e.g.
    real tokens without padding), else every position of the input tensor, batch[0]."""
    count = getattr(source, "batch_tokens", None)
    return int(count(batch)) if count is not None else batch[0].numel()


class Trainer:
    """Gradient accumulation, clipping, bf16 autocast, optional torch.compile, DDP, periodic eval,
    metrics.jsonl + loss.png, atomic checkpoints and bit-exact resume.

    What it does to `model`: moves it to the device; on CPU also lmforge.kernels.accelerate(model), so large
    fp32 products compute their forward with oneDNN (1.17-1.50x torch's default BLAS for GPT-2's matrices;
    gradients exactly F.linear's) and evaluation's few-row products take the decoding paths. The change is
    to the linear layers' class only (same Parameters, same state-dict keys, outputs within float rounding):
    lmforge.kernels.restore(model) undoes it, lmforge.kernels.set_large_onednn(False) turns the path off."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, train_batches, val_batches=None,
                 out_dir: str | Path | None = None, *, tokenizer=None, run_config: dict | None = None,
                 loss_fn: Callable[[torch.nn.Module, tuple], torch.Tensor] | None = None,
                 callbacks: tuple[Callable[["Trainer", dict], None], ...] = (),
                 log: Callable[[str], None] | None = None):
        """callbacks: called as cb(trainer, row) after each metrics row (rank 0 only), e.g. to print a sample.
        A callback that lowers cfg.max_steps ends training there, on every rank."""
        self.cfg, self.train_batches, self.val_batches = config, train_batches, val_batches
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tokenizer, self.run_config = tokenizer, run_config
        self.log = log or (lambda msg: print(msg, flush=True))  # flushed: a watcher may act on each line
        self.dist = Dist()
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.dist.init(self.device)
        self.model = model.to(self.device)  # the unwrapped module (no DDP, no compile): what is saved and returned
        if self.device.type == "cpu":
            accelerate(self.model)  # the oneDNN forward for large training products (lmforge.kernels)
        self.loss_fn, self.callbacks = loss_fn or next_token_loss, tuple(callbacks)
        self._bf16: bool | None = None  # decided on first use (see bf16); a resumed run takes its checkpoint's
        self.optimizer = build_optimizer(self.model, config)
        self.schedule = Schedule.from_config(config)
        self.step, self.position, self.metrics = 0, 0, []
        self.tokens = 0  # training tokens this rank has consumed since the start or the resume (batch_tokens)
        self._tokens_before = 0  # all ranks' tokens up to the checkpoint resumed from
        self._elapsed, self._fit_t0 = 0.0, None  # training wall time before this fit() call; when it started
        net = self.model
        if config.compile:
            net = torch.compile(net)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = net  # what forward/backward run through

    @property
    def bf16(self) -> bool:
        """Train under bf16 autocast? Decided once, when first needed: a resumed `auto` run takes the
        checkpoint's choice (no timing), any other run asks choose_dtype. A collective under DDP."""
        if self._bf16 is None:
            # rank 0 decides (and times alone, while the others wait): every rank must run the same dtype
            choice = choose_dtype(self.cfg.dtype, self.device, self.model, self._probe()) if self.dist.is_main else None
            self._bf16, why = self.dist.broadcast(choice)
            if self.dist.is_main:
                self.log(f"dtype: {'bf16 autocast' if self._bf16 else 'fp32'} ({why})")
        return self._bf16

    def _probe(self) -> Callable[[], Any]:
        """Forward and backward on batch 0, in eval mode (no dropout, so no RNG is drawn); gradients dropped.

        A training step, not a forward alone: the backward pass is two thirds of the work and gains
        from bf16 differently (a no-grad forward of a small model measured bf16 slower while the step
        was 1.4x faster)."""
        batch = tuple(t.to(self.device) for t in self.train_batches.get(0))

        def train_step():
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.enable_grad():
                    self.loss_fn(self.model, batch).backward()
            finally:
                self.model.train(was_training)
                for p in self.model.parameters():
                    p.grad = None
        return train_step

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
            "optimizer": self.optimizer.state_dict(),
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
        state = self.state_dict()  # collective (gathers RNG states): every rank calls it
        if self.dist.is_main and self.out_dir is not None:
            ckpt.save_checkpoint(self.out_dir, self.model, state, metrics=self.metrics,
                                 tokenizer=self.tokenizer, run_config=self.run_config)
        self.dist.barrier()

    def resume(self) -> None:
        if self.out_dir is None:
            raise ValueError("resume needs a run directory (out_dir)")
        if self.dist.is_main:
            ckpt.recover(self.out_dir)
        self.dist.barrier()
        state, metrics = ckpt.load_checkpoint(self.out_dir, self.model)
        self.load_state_dict(state)
        self.metrics = [m for m in metrics if m["step"] <= self.step]
        if self.dist.is_main:
            self.log(f"resumed from {self.out_dir} at step {self.step}")

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean val loss over the same `eval_steps` batches every time (indices 0..eval_steps-1)."""
        self.net.eval()
        total = 0.0
        for i in range(self.cfg.eval_steps):
            batch = tuple(t.to(self.device) for t in self.val_batches.get(i))
            with self._autocast():
                total += self.loss_fn(self.net, batch).float().item()
        self.net.train()
        return self.dist.mean(total / self.cfg.eval_steps)

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss (this rank)."""
        cfg = self.cfg
        lr = self.schedule(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for micro in range(cfg.grad_accum):
            batch = self.train_batches.get(self.position)
            self.position += 1
            self.tokens += batch_tokens(self.train_batches, batch)  # counted before the copy: no device sync
            batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
            # DDP: all-reduce gradients only on the last micro-batch (no_sync elsewhere)
            sync = contextlib.nullcontext() if not self.dist.enabled or micro == cfg.grad_accum - 1 else self.net.no_sync()
            with sync:
                with self._autocast():
                    loss = self.loss_fn(self.net, batch)
                (loss / cfg.grad_accum).backward()
            total += loss.detach().float().item()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total / cfg.grad_accum

    def fit(self, resume: bool = False) -> dict[str, float]:
        """Train to cfg.max_steps; returns the last logged metrics."""
        cfg = self.cfg
        if resume:
            self.resume()
        else:
            torch.manual_seed(cfg.seed + self.dist.rank)  # dropout masks: own stream per rank
        self.bf16  # decide (and say) the dtype before the progress bar starts
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        self.net.train()
        self._fit_t0, last = time.perf_counter(), {}
        while self.step < cfg.max_steps:
            t = time.perf_counter()
            loss = self.train_step()
            if not math.isfinite(loss):
                raise FloatingPointError(f"loss is {loss} at step {self.step}: lower train.lr or enable train.grad_clip")
            step = self.step
            row = {}
            if step % cfg.log_interval == 0 or step == cfg.max_steps:
                row = {"step": step, "loss": round(self.dist.mean(loss), 6), "lr": self.schedule(step - 1),
                       "tokens": self.global_tokens(), "step_s": round(time.perf_counter() - t, 4),
                       "elapsed_s": round(self.elapsed(), 2)}
            if self.val_batches is not None and ((cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_steps):
                row = {"step": step, **row, "val_loss": round(self.evaluate(), 6)}
            if row:
                self.metrics.append(row)
                last = row
                if bar is not None:
                    bar.set_postfix({k: row[k] for k in ("loss", "val_loss") if k in row})
                if self.dist.is_main:
                    for cb in self.callbacks:
                        cb(self, row)
                if self.callbacks:
                    # A callback may end training early by lowering cfg.max_steps (the translation recipe's
                    # budget); it ran on rank 0 only, so every rank takes rank 0's value, or the others would
                    # wait forever in the next step's all-reduce.
                    cfg.max_steps = self.dist.broadcast(cfg.max_steps)
            if bar is not None:
                bar.update(1)
            if (cfg.save_interval and step % cfg.save_interval == 0) or step == cfg.max_steps:
                self.save()
                if self.dist.is_main and self.out_dir is not None:
                    # a line on stdout per checkpoint: what is safe on disk (tqdm draws on stderr)
                    with bar.external_write_mode() if bar is not None else contextlib.nullcontext():
                        self.log(f"checkpoint: step {step} saved to {self.out_dir}")  # the bar is redrawn below it
        if bar is not None:
            bar.close()
        self._elapsed, self._fit_t0 = self.elapsed(), None
        return last
