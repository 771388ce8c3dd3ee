"""CPU fast paths for the products lmforge.nn writes as plain PyTorch; nn/ works without this package.

lmforge.nn is the reference math: its layers are torch.nn.Linear and F.linear. This package holds the
faster ways to compute the same products on CPU, each agreeing with F.linear to float rounding, each
behind a process-wide switch, and applied only by the code that wants them:

| path | what it does | when | switch |
|---|---|---|---|
| few rows (`fewrow.py`) | 1-2 rows: W cut into blocks times the rows as columns, one bmm; 3-32 rows: the output features split across threads | fp32 inference on CPU, 1-32 rows (decoding) | `set_few_rows` (packed copies included) |
| packed (`packed.py`) | 3-32 rows: oneDNN on a copy of W reordered for its kernel; costs a second copy of the weights | inside a `PackedWeights` table (the decoding Engine holds one) | `set_packing`, `lmforge serve --no-pack` |
| large oneDNN (`onednn.py`) | oneDNN's fp32 kernel instead of torch's default BLAS; in training the forward only | fp32 on CPU, from 2^28 multiply-adds (a training batch, a long prefill) | `set_large_onednn` |
| huge pages (`hugepages.py`) | the model's weights moved into 2 MiB transparent huge pages | when asked: `huge_page_weights(model)` | `set_huge_pages` |
| int8 (`int8.py`) | int8 weight-only products (lmforge.nn.quant.Int8Linear): torch's `_weight_int8pack_mm`, an AVX2 kernel of ours (`int8.cpp`) or dequantize + F.linear, whichever times fastest here | a model from `lmforge.quantize(model, "int8")` | `set_int8` |

`set_enabled(False)` turns all five off (True turns them on). `linear.py` chooses between the first three
per product; the few-row products and packing were measured 1.1-2.5x F.linear, large oneDNN 1.17-1.50x
MKL, huge pages 1.04-1.17x the read speed, on an AMD EPYC Zen 4 (each module gives its figures and the
bench command that measures them).

How they are applied:
- `accelerate(model)` makes a model's torch.nn.Linear layers and lmforge.nn.LMHead compute with
  `linear`, in place (the module's class changes, nothing else: same parameters and state-dict keys);
  `restore(model)` changes them back. The decoding Engine (lmforge.generate) and the Trainer
  (lmforge.train) call it for a model on CPU; their docstrings say so.
- The Engine also holds a `PackedWeights` table and enters it for every step.
- `huge_page_weights(model)` moves memory, so it is never done behind a caller's back: the Engine and
  generate() do it when passed `huge_pages=True`; the CLI's decoding commands and the server call it on
  the model they load (lmforge.cli.generate.load_run).

    from lmforge import kernels
    kernels.accelerate(model)          # model's linears now take the fast paths
    kernels.set_enabled(False)         # ... or none of them, process-wide
    kernels.restore(model)             # plain PyTorch again
"""
from lmforge.kernels.apply import accelerate, restore, set_enabled
from lmforge.kernels.hugepages import huge_page_weights, set_huge_pages
from lmforge.kernels.int8 import int8_linear, set_int8
from lmforge.kernels.linear import Linear, LMHead, linear, set_few_rows
from lmforge.kernels.onednn import set_large_onednn
from lmforge.kernels.packed import PackedWeights, set_packing

__all__ = ["accelerate", "restore", "set_enabled", "linear", "Linear", "LMHead", "PackedWeights", "set_few_rows",
           "set_packing", "set_large_onednn", "huge_page_weights", "set_huge_pages", "int8_linear", "set_int8"]
