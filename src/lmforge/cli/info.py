"""`lmforge info DIR`: what a run or model directory holds: config, parameter count, step, last metrics."""
from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("dir", help="a run directory (lmforge train) or a model directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def count_parameters(path: Path) -> int:
    """Sum of tensor sizes in a safetensors file, read from its header (no weights are loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            total = 0
            for k in f.keys():
                n = 1
                for d in f.get_slice(k).get_shape():
                    n *= d
                total += n
            return total
    except Exception as e:  # SafetensorError for a truncated or garbled header
        raise ValueError(f"{path} is not a readable safetensors file ({e})") from None


def summary(directory: str | Path) -> dict:
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} does not exist or is not a directory")
    if not (d / "config.json").is_file():
        raise ValueError(f"{d} has no config.json: not a run or model directory")
    try:
        config = json.loads((d / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{d / 'config.json'} is not valid JSON ({e})") from None
    info: dict = {"dir": str(d), "config": config}
    for name in ("model.safetensors",):
        if (d / name).is_file():
            info["parameters"] = count_parameters(d / name)
    if (d / "metrics.jsonl").is_file():
        from lmforge.train.checkpoint import read_metrics

        rows = read_metrics(d / "metrics.jsonl")
        train = [r for r in rows if "loss" in r]
        val = [r for r in rows if "val_loss" in r]
        info["step"] = rows[-1]["step"] if rows else 0
        if train:
            info["last_train"] = train[-1]
        if val:
            info["last_val"] = val[-1]
            info["best_val_loss"] = min(r["val_loss"] for r in val)
    if (d / "run.json").is_file():
        info["run"] = json.loads((d / "run.json").read_text())
    info["files"] = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    return info


def run(args) -> int:
    info = summary(args.dir)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    cfg = dict(info["config"])
    family = cfg.pop("family", "?")
    print(f"{info['dir']}")
    if "parameters" in info:
        print(f"  parameters  {info['parameters']:,} ({info['parameters'] / 1e6:.2f}M)")
    labels = cfg.pop("labels", None)  # a classifier's class names: one line of their own
    print(f"  model       {family}: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    if labels:
        print(f"  labels      {len(labels)}: {', '.join(labels)}")
    if "run" in info:
        r = info["run"]
        print("  data        " + ", ".join(f"{k}={v}" for k, v in r.get("data", {}).items()))
        t = r.get("train", {})
        print("  train       " + ", ".join(f"{k}={t[k]}" for k in ("max_steps", "batch_size", "grad_accum", "lr",
                                                                    "schedule", "dtype") if k in t))
    if "step" in info:
        print(f"  step        {info['step']}")
    if "last_train" in info:
        lt = info["last_train"]
        print(f"  train loss  {lt['loss']:.4f} at step {lt['step']} (lr {lt.get('lr', 0):.2e}, {lt.get('elapsed_s', 0):.0f}s)")
    if "last_val" in info:
        print(f"  val loss    {info['last_val']['val_loss']:.4f} at step {info['last_val']['step']} "
              f"(best {info['best_val_loss']:.4f})")
    print(f"  files       {', '.join(info['files'])}")
    return 0
