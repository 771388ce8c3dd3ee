"""The backbone: mechanisms only, torch only, knows no family."""
from lmforge.nn.attention import MultiHeadAttention, attention
from lmforge.nn.block import Block
from lmforge.nn.cache import KVCache, LayerCache
from lmforge.nn.feedforward import FeedForward
from lmforge.nn.heads import LMHead
from lmforge.nn.hugepages import huge_page_weights, set_huge_pages
from lmforge.nn.init import init_weights
from lmforge.nn.linear import Linear, PackedWeights, linear, set_large_onednn, set_packing
from lmforge.nn.masks import causal_mask, combine, ensure_self, padding_mask, prefix_mask
from lmforge.nn.norms import LayerNorm, RMSNorm
from lmforge.nn.positions import (LearnedPositions, Positions2D, RelativePositionBias, apply_rope, rope_cache,
                                  sinusoidal)

__all__ = ["attention", "MultiHeadAttention", "Block", "KVCache", "LayerCache", "FeedForward", "LMHead",
           "init_weights", "Linear", "PackedWeights", "linear", "set_packing", "set_large_onednn",
           "huge_page_weights", "set_huge_pages", "causal_mask", "combine", "ensure_self", "padding_mask",
           "prefix_mask", "LayerNorm", "RMSNorm", "LearnedPositions", "Positions2D", "RelativePositionBias",
           "apply_rope", "rope_cache", "sinusoidal"]
