"""Save and resume a run directory so that no kill, at any moment, loses the last good checkpoint.

A run directory a person can read:

    config.json        the model config, {"family": "gpt", ...}   (what lmforge.load reads); a wrapped
                       model (an adapter, an extra head) adds "wrapper": {"kind": ..., ...} (config_record)
    model.safetensors  the weights; metadata {"step": "N"}
    tokenizer.json     the tokenizer (Hugging Face tokenizer.json format)
    run.json           the full run config (model / data / train sections) used by --resume
    train_state.pt     optimizer, scheduler, step, RNG states, data position (tensors, numbers, strings only)
    metrics.jsonl      one JSON object per logged step
    loss.png           train and val loss curves

A checkpoint is several files, and they must agree with each other (weights of step N with the
optimizer state of step N). Each file being atomic is not enough: a kill between two renames
would leave new weights beside an old optimizer. So a save is a small journal:

1. write every file into `.staging/` (each written to a temporary name, fsynced, renamed);
2. write `.staging/COMMITTED` (atomically) -- the commit point;
3. rename each staged file over its counterpart in the run directory, then delete `.staging/`.

Whoever opens the directory next (a save or a load) first calls `recover`: a `.staging/` with
COMMITTED is rolled forward (step 3 again, which is idempotent); one without it is an interrupted
save and is deleted, and the files in the run directory are the previous checkpoint, untouched.
An OSError during step 1 (disk full) leaves the run directory as it was.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lmforge.io import atomic_write, atomic_write_json, atomic_write_text
from lmforge.tokenizers import save_tokenizer

STAGING = ".staging"
COMMITTED = "COMMITTED"
WEIGHTS = "model.safetensors"
STATE = "train_state.pt"
METRICS = "metrics.jsonl"


# ---------------------------------------------------------------------------------- journal

def recover(run_dir: str | Path) -> None:
    """Finish a committed save (roll forward) or discard an interrupted one (see module docstring)."""
    staging = Path(run_dir) / STAGING
    if not staging.is_dir():
        return
    if not (staging / COMMITTED).is_file():
        shutil.rmtree(staging)
        return
    names = (staging / COMMITTED).read_text().split()
    for name in names:
        if (staging / name).exists():  # already moved by an earlier, interrupted roll-forward
            os.replace(staging / name, Path(run_dir) / name)
    _fsync_dir(Path(run_dir))
    shutil.rmtree(staging)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------- save

def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, train_state: dict[str, Any], *,
                    metrics: list[dict] | None = None, tokenizer=None, run_config: dict | None = None,
                    weights: dict[str, torch.Tensor] | None = None) -> None:
    """Write a complete checkpoint of `model` (unwrapped: no DDP / compile wrapper) and `train_state`.

    `train_state` must hold an int "step" and otherwise only tensors, numbers, strings, lists, dicts
    (what torch.load(weights_only=True) accepts). `weights`: the model's full state dict, when the model
    itself holds only shards of it (FSDP: lmforge.train.dist.full_weights); default: the model's own tensors.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recover(run_dir)
    staging = run_dir / STAGING
    staging.mkdir()
    step = int(train_state["step"])
    try:
        atomic_write_json(staging / "config.json", config_record(model))
        # safetensors' save_model stores a tied tensor once (e.g. the embedding shared with the LM head);
        # a wrapper's file holds every tensor, its base's under "base."
        atomic_write(staging / WEIGHTS, lambda tmp: save_weights(model, tmp, step, weights))
        if tokenizer is not None:
            save_tokenizer(tokenizer, staging)
        if run_config is not None:
            atomic_write_json(staging / "run.json", run_config)
        atomic_write(staging / STATE, lambda tmp: torch.save(train_state, tmp))
        if metrics is not None:
            atomic_write_text(staging / METRICS, "".join(json.dumps(row) + "\n" for row in metrics))
            plot_losses(metrics, staging / "loss.png")
        names = sorted(p.name for p in staging.iterdir() if not p.name.startswith("."))
        atomic_write_text(staging / COMMITTED, "\n".join(names) + "\n")
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)  # the run directory still holds the previous checkpoint
        raise OSError(e.errno, f"could not write a checkpoint in {run_dir} ({e.strerror or e}); "
                               f"the previous checkpoint there is intact") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    recover(run_dir)


def config_record(model: torch.nn.Module) -> dict[str, Any]:
    """What config.json says about `model`.

    A family model (`model.config` is a family's Config): {"family": "gpt", **config}, as lmforge.load reads it.
    A wrapper (an adapter, a value or reward head) follows a two-attribute protocol: `model.base` is the module it
    wraps and `model.wrapper_config()` a JSON-able dict with a "kind". Its record is its base family's plus
    "wrapper", e.g. a value head on a GPT:

        {"family": "gpt", "vocab_size": 65, ..., "wrapper": {"kind": "value_head", "d_out": 1}}

    A wrapper of a wrapper (an adapter on a value-head model) nests: the inner wrapper's dict is the outer's
    "base": {"kind": "lora", ..., "base": {"kind": "value_head", ...}}.
    """
    describe = getattr(model, "wrapper_config", None)
    if callable(describe) and isinstance(getattr(model, "base", None), torch.nn.Module):
        own = dict(describe())
        if not isinstance(own.get("kind"), str) or "base" in own:
            raise ValueError(f"{type(model).__name__}.wrapper_config() returned {own!r}: it must be a dict with a "
                             f"'kind' string and no 'base' key (the record of what it wraps goes there)")
        record = config_record(model.base)
        if "wrapper" in record:
            own["base"] = record.pop("wrapper")
        return {**record, "wrapper": own}
    cfg = getattr(model, "config", None)
    if getattr(type(cfg), "family", None) is None:
        raise ValueError(f"cannot checkpoint a {type(model).__name__}: it is not a family model (model.config with a "
                         f"family) nor a wrapper of one (model.base and model.wrapper_config(); see config_record)")
    return {"family": type(cfg).family, **cfg.to_dict()}


def save_weights(model: torch.nn.Module, path: str, step: int, weights: dict[str, torch.Tensor] | None = None) -> None:
    """model.safetensors-style weights with the step in the metadata; a full disk raises OSError.

    weights: the full tensors of a sharded model (see save_checkpoint). They are separate copies, so a
    tensor the model registers under two names is found by the model's own parameter, and stored once
    (under its first name), as save_model stores a shared tensor once."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file, save_model

    metadata = {"format": "pt", "step": str(step)}
    try:
        if weights is None:
            save_model(model, path, metadata=metadata)
        else:
            first: dict[int, str] = {}
            for name, t in model.state_dict(keep_vars=True).items():
                first.setdefault(id(t), name)
            save_file({k: v.contiguous() for k, v in weights.items() if k in first.values()}, path, metadata=metadata)
    except SafetensorError as e:  # safetensors reports a full disk ("File too large", ENOSPC) as its own error
        raise OSError(f"writing {Path(path).name}: {e}") from e


def plot_losses(metrics: list[dict], path: str | Path) -> None:
    """loss.png: train loss (every logged step) and val loss (every eval) against the step."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    val = [(m["step"], m["val_loss"]) for m in metrics if "val_loss" in m]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="val", linewidth=1.5, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


# ---------------------------------------------------------------------------------- load

def load_weights(model: torch.nn.Module, path: str | Path,
                 into: Callable[[dict[str, torch.Tensor]], None] | None = None) -> dict[str, str]:
    """Load model.safetensors into `model` in place; returns the file's metadata.

    Raises ValueError naming the file or tensor when the file is corrupt, a tensor is missing or
    unexpected, or a shape differs from the model's. `into(tensors)` puts the checked tensors in the model
    (default model.load_state_dict; a sharded model: lmforge.train.dist.load_full_weights).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: this is not a complete lmforge checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError for a truncated or garbled file
        raise ValueError(f"{path} is not a readable safetensors file ({e}); the checkpoint is corrupt") from None
    expected = model.state_dict(keep_vars=True)  # the Parameters themselves: a tied one is the same object
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ValueError(f"{path}: tensors {', '.join(unexpected)} are not in the model "
                         f"(does config.json match the weights?)")
    for name, t in tensors.items():
        if t.shape != expected[name].shape:
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(t.shape)} in the file but "
                             f"{tuple(expected[name].shape)} in the model (does config.json match the weights?)")
    stored = {id(expected[k]) for k in tensors}
    missing = [k for k, v in expected.items() if k not in tensors and id(v) not in stored]  # tied: stored once
    if missing:
        raise ValueError(f"{path}: tensors {', '.join(missing)} are missing from the file")
    if into is None:
        model.load_state_dict(tensors, strict=False)
    else:
        into(tensors)
    return metadata


def load_train_state(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True: a pickle that would run code is refused, not executed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: this is not a complete lmforge checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's weights-only unpickler names the blocked import ("unsupported GLOBAL posix.system");
        # any other unpickling failure is a damaged file
        blocked = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if blocked:
            raise ValueError(f"{path} holds Python objects that would run code when unpickled; refusing to load it. "
                             f"lmforge checkpoints hold only tensors, numbers and strings. ({blocked[0]})") from None
        raise ValueError(f"{path} is corrupt or not a torch checkpoint (unreadable pickle)") from None
    except Exception as e:  # truncated zip, not a torch file at all, ...
        raise ValueError(f"{path} is corrupt or not a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise ValueError(f"{path} is not an lmforge train state (expected a dict with an integer 'step')")
    return state


def load_checkpoint(run_dir: str | Path, model: torch.nn.Module,
                    into: Callable[[dict[str, torch.Tensor]], None] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Load weights into `model` (with `into`, see load_weights); return (train_state, metrics). Checks that
    weights and state are one step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    recover(run_dir)
    state = load_train_state(run_dir / STATE)
    metadata = load_weights(model, run_dir / WEIGHTS, into)
    if metadata.get("step") != str(state["step"]):
        raise ValueError(f"{run_dir}: {WEIGHTS} is from step {metadata.get('step')} but {STATE} is from step "
                         f"{state['step']}; the checkpoint is inconsistent (files copied from different runs?)")
    return state, read_metrics(run_dir / METRICS)


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {i}: not valid JSON ({e})") from None
    return rows


# ---------------------------------------------------------------------------------- RNG

def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python RNG states as tensors / lists (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
