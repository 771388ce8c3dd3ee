"""Shared helpers of the translation tests: a tiny memorisation set and its run config."""
from lmforge.train.recipes.translation import Run as TranslationRunConfig
from lmforge.data.translation import read_tsv, split_by_domain


def memo_pairs(n=32):
    """n short real EN-DE pairs from the bundled training split (3-8 English words each)."""
    _, pairs = read_tsv("en-de")
    train = split_by_domain(pairs)["train"]
    return [p for p in train if 3 <= len(p.src.split()) <= 8 and "\t" not in p.src][:: 50][:n]


def write_tsv(path, pairs, lang="de"):
    path.write_text(f"domain\ten\t{lang}\n" + "".join(f"{p.domain}\t{p.src}\t{p.tgt}\n" for p in pairs))
    return path


def memo_config(tsv, family="transformer", steps=300, **recipe):
    model = ({"family": "transformer", "d_model": 64, "n_heads": 2, "n_layers": 2, "d_ff": 256, "max_len": 64, "dropout": 0.0}
             if family == "transformer" else {"family": "lstm", "d_model": 128, "n_layers": 1, "max_len": 64, "dropout": 0.0})
    return TranslationRunConfig.from_dict({
        "model": model,
        "data": {"pair": str(tsv), "vocab_size": 400, "max_tokens": 2048, "max_len": 64},
        "train": {"max_steps": steps, "schedule": "inverse_sqrt", "warmup_steps": 30, "lr": 3e-3, "beta2": 0.98,
                  "eps": 1e-9, "weight_decay": 0.0, "eval_interval": 100, "eval_steps": 1, "save_interval": 100,
                  "log_interval": 10, "dtype": "fp32", "progress": False, "seed": 0},
        "recipe": {"label_smoothing": 0.0, "snapshot_interval": 50, "average_last": 2, **recipe}})


