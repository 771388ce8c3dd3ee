"""Generation on token ids: logit processors, the decoding loop that yields a Step per token, beam search;
for decoder-only and encoder-decoder models alike, through lmforge.models.protocol.

    >>> from lmforge.generate import generate
    >>> for step in generate(model, ids, max_new_tokens=20, temperature=0.8, top_p=0.95, seed=0): ...

Knows no tokenizer and no concrete model family (DESIGN.md: generation knows no text).
"""
from lmforge.generate.beam import Hypothesis, beam_search, beam_search_batch, length_penalty
from lmforge.generate.decode import Engine, Sequence, first_divergence, generate
from lmforge.generate.infill import Fill, filled, infill
from lmforge.generate.sampling import FILTERS, SamplingParams
from lmforge.generate.steps import Alternative, Step

__all__ = ["generate", "Step", "Alternative", "Engine", "Sequence", "SamplingParams", "FILTERS",
           "first_divergence", "infill", "Fill", "filled", "beam_search", "beam_search_batch", "Hypothesis", "length_penalty"]
