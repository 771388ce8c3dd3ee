"""The backbone: mechanisms only, torch only, knows no family.

Read as the reference math: layers are plain torch.nn.Linear / F.linear. The faster CPU products for the same
math (decoding, large training products, huge-page weights) live in lmforge.kernels, applied by the decoding
Engine and the Trainer."""
from lmforge.nn.attention import MultiHeadAttention, attention
from lmforge.nn.block import Block
from lmforge.nn.cache import KVCache, LayerCache
from lmforge.nn.feedforward import FeedForward
from lmforge.nn.embeddings import Embeddings
from lmforge.nn.heads import LMHead, MLMHead
from lmforge.nn.init import init_weights
from lmforge.nn.masks import causal_mask, combine, ensure_self, padding_mask, prefix_mask, prefix_padding_mask
from lmforge.nn.norms import LayerNorm, RMSNorm
from lmforge.nn.positions import (LearnedPositions, Positions2D, RelativePositionBias, apply_rope, rope_cache,
                                  sinusoidal)

__all__ = ["attention", "MultiHeadAttention", "Block", "KVCache", "LayerCache", "FeedForward", "Embeddings", "LMHead", "MLMHead",
           "init_weights", "causal_mask", "combine", "ensure_self", "padding_mask", "prefix_mask", "prefix_padding_mask", "LayerNorm",
           "RMSNorm", "LearnedPositions", "Positions2D", "RelativePositionBias", "apply_rope", "rope_cache",
           "sinusoidal"]
