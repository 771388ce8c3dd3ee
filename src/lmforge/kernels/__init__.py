"""CPU fast paths for the products lmforge.nn writes as plain PyTorch, each chosen by timing; nn/ works without them.

lmforge.nn is the reference math: its layers are torch.nn.Linear and F.linear. This package holds
faster ways to compute the same products on CPU, each agreeing with F.linear to float rounding, each
behind a process-wide switch, and applied only by the code that wants them:

| path | what it does | candidate for | switch |
|---|---|---|---|
| few rows (`fewrow.py`, `cpu.cpp`) | the column form: W cut into blocks times the rows as columns, one bmm; the thread split: the output features split across threads; up to 8 rows an AVX2 loop of ours (`cpu.cpp`: weight rows streamed side by side, on torch's threads) | fp32 inference on CPU, 1-32 rows (decoding) | `set_few_rows` (packed copies included) |
| packed (`packed.py`) | oneDNN on a copy of W reordered for its kernel; costs a second copy of the weights | 3-32 rows, inside a `PackedWeights` table (the decoding Engine holds one) | `set_packing`, `lmforge serve --no-pack` |
| oneDNN (`onednn.py`) | oneDNN's fp32 kernel instead of torch's default BLAS; in training the forward only | fp32 on CPU, more than 32 rows (a training batch, a prefill) | `set_large_onednn` |
| huge pages (`hugepages.py`) | the model's weights moved into 2 MiB transparent huge pages | when asked: `huge_page_weights(model)` | `set_huge_pages` |
| GELU (`gelu.py`) | GPT-2's tanh GELU in training (forward + backward) as a sigmoid: in plain torch ops, or one pass each way in AVX2 (`cpu.cpp`) | fp32 training on CPU, modules whose `act` is gelu_tanh (FeedForward, a masked-LM head); without autograd (decoding) the AVX2 forward alone | `gelu.set_gelu` |
| attention (`attention.py`, `cpu.cpp`) | decoding: one query per row against its cached keys in one AVX2 pass (`cpu.cpp`); training: short causal self-attention as baddbmm + softmax + bmm instead of torch's fused kernel | fp32 on CPU: one-query calls without autograd; causal self-attention with T = S | `attention.set_attention` |
| decoding step (`decode.py`, `cpu.cpp`) | a pre-norm layer's step for one new token per row in seven calls instead of ~40: the KV cache written and attended in one AVX2 call, the residual add and GELU applied by the product as it writes; each part keeps its own timed choice (a product that chose torch's runs as `linear` would), the modules run where the decoding attention chose torch's or the layer is of another kind | fp32/int8 decoding on CPU with a KV cache (GPT-2-style layers) | `decode.set_decode_step` |
| int8 (`int8.py`) | int8 weight-only products (lmforge.nn.quant.Int8Linear): torch's `_weight_int8pack_mm`, an AVX2 kernel of ours (`cpu.cpp`) or dequantize + F.linear, whichever times fastest here | a model from `lmforge.quantize(model, "int8")` | `set_int8` |

Which product runs is measured, never assumed (`tune.py`): the first time `linear.py` needs a kind of
product (a weight shape, rows rounded up to a power of two, the dtype and the thread count), it times
the candidates, torch's F.linear always among them, and keeps the fastest; a fast path must beat F.linear
by 5% to be taken, so none is slower than torch's default beyond noise. The choices are kept in a JSON
file per CPU model and torch version in the user's cache directory (LMFORGE_CACHE_DIR, else
XDG_CACHE_HOME/lmforge, else ~/.cache/lmforge), so the next process starts tuned. (On an AMD EPYC Zen 4
the few-row paths measured 1.1-2.5x F.linear; on an Intel Xeon with AVX-512, where MKL's few-row kernel
uses every thread, the column form measured 0.4-0.55x: why no constant can choose.) The training dtype
`auto` (lmforge.train.precision) keeps its measured choice in the same cache, and so does the int8 product
(`int8.py`), whose default to beat is the reference, dequantize + F.linear.

Switches: `set_enabled(False)` (or LMFORGE_FAST_PATHS=0) turns all eight paths off (True turns them on);
`set_tuning(False)` (or LMFORGE_TUNING=0) times nothing new: a product not in the cache takes F.linear.

How they are applied:
- `accelerate(model)` makes a model's torch.nn.Linear layers and lmforge.nn.LMHead compute with
  `linear`, in place (the module's class changes, nothing else: same parameters and state-dict keys), and
  gives its MultiHeadAttention layers `attention.attention`, its tanh-GELU modules `gelu.gelu_tanh` and its
  Blocks `decode.block_step`;
  `restore(model)` changes them back. The decoding Engine (lmforge.generate) and the Trainer
  (lmforge.train) call it for a model on CPU; their docstrings say so.
- The Engine also holds a `PackedWeights` table and enters it for every step.
- `huge_page_weights(model)` moves memory, so it is never done behind a caller's back: the Engine and
  generate() do it when passed `huge_pages=True`; the CLI's decoding commands and the server call it on
  the model they load (lmforge.cli.generate.load_run).

    from lmforge import kernels
    kernels.accelerate(model)          # model's linears now take the fast paths measured fastest here
    kernels.set_enabled(False)         # ... or none of them, process-wide
    kernels.restore(model)             # plain PyTorch again
"""
from lmforge.kernels.apply import accelerate, restore, set_enabled
from lmforge.kernels.attention import set_attention
from lmforge.kernels.decode import set_decode_step
from lmforge.kernels.hugepages import huge_page_weights, set_huge_pages
from lmforge.kernels.int8 import int8_linear, set_int8
from lmforge.kernels.linear import Linear, LMHead, linear, set_few_rows
from lmforge.kernels.onednn import set_large_onednn
from lmforge.kernels.packed import PackedWeights, set_packing
from lmforge.kernels.tune import set_tuning

__all__ = ["accelerate", "restore", "set_enabled", "linear", "Linear", "LMHead", "PackedWeights", "set_few_rows",
           "set_packing", "set_large_onednn", "huge_page_weights", "set_huge_pages", "int8_linear", "set_int8",
           "set_tuning", "set_attention", "set_decode_step"]
