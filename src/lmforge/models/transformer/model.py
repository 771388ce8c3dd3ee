"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al. 2017), for translation.

Encoder: N post-norm blocks (self-attention, ReLU feed-forward, each followed by Add & Norm, sec. 3.1).
Decoder: N blocks with causal self-attention, cross-attention over the encoder output, feed-forward.
Inputs: token embedding * sqrt(d_model) (sec. 3.4) + sinusoidal positions (sec. 3.5), then dropout (sec. 5.4).
One vocabulary shared by source and target; the embedding is also the output layer (sec. 3.4).

    >>> from lmforge.models.transformer.config import TransformerConfig
    >>> model = Transformer(TransformerConfig.preset("transformer-tiny"))
    >>> src, tgt = torch.tensor([[5, 6, 7, 2]]), torch.tensor([[1, 8, 9]])   # </s> = 2 ends the source, <s> = 1 starts the target
    >>> model(src, tgt).logits.shape
    torch.Size([1, 3, 512])

Generation goes through the decoding protocol (lmforge.models.protocol): `prefill(sources)` encodes
once and feeds `<s>`; `decode_step(state, ids)` feeds the chosen target tokens; both return the
next token's logits (and, on request, the cross-attention over the source).
"""
from __future__ import annotations

import math
from torch import Tensor, nn

from lmforge.models.transformer.config import TransformerConfig
from lmforge.models.protocol import EncoderDecoderDecoding
from lmforge.nn import (Block, FeedForward, KVCache, LayerNorm, LMHead, MultiHeadAttention,
                        init_weights, padding_mask, sinusoidal)
from lmforge.nn.masks import causal_padding_mask


class Transformer(EncoderDecoderDecoding, nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)  # shared by encoder, decoder and output (sec. 3.4)
        self.register_buffer("pe", sinusoidal(c.max_len, c.d_model), persistent=False)  # (max_len, d_model)
        self.drop = nn.Dropout(c.dropout)

        def norm():
            return LayerNorm(c.d_model, c.norm_eps)

        def attn(cross=False):
            return MultiHeadAttention(c.d_model, c.n_heads, bias=c.bias, dropout=c.dropout, cross=cross)

        def ffn():
            return FeedForward(c.d_model, c.d_ff, "relu", bias=c.bias)  # eq. 2: max(0, xW1 + b1)W2 + b2

        # norm_first=False: the paper's post-norm, LayerNorm(x + Sublayer(x)) (sec. 3.1)
        self.encoder = nn.ModuleList(Block(attn(), ffn(), norm, norm_first=False, dropout=c.dropout)
                                     for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(Block(attn(), ffn(), norm, cross_attn=attn(cross=True), norm_first=False,
                                           dropout=c.dropout) for _ in range(c.n_dec_layers))
        self.lm_head = LMHead(self.tok_emb)  # tied: "pre-softmax linear transformation" = embedding (sec. 3.4)
        init_weights(self, scheme="xavier")

    def _embed(self, ids: Tensor, offset: int = 0, positions: Tensor | None = None) -> Tensor:
        """ids (B, T) at positions offset.. offset+T-1, or at `positions` (B, T) (rows of a left-padded batch)."""
        T = ids.size(1)
        last = offset + T if positions is None else int(positions.max()) + 1
        if last > self.config.max_len:
            raise ValueError(f"Cannot embed position {last}, max_len is only {self.config.max_len}. "
                             "Shorten the sentence or use a model with a larger max_len.")
        pe = self.pe[offset:offset + T] if positions is None else self.pe[positions]  # (T, d_model) or (B, T, d_model)
        x = self.tok_emb(ids) * math.sqrt(self.config.d_model) + pe  # (B, T, d_model)
        return self.drop(x)

    def encode(self, src: Tensor, src_keep: Tensor | None = None, need_weights: bool = False):
        """src (B, S) -> (memory (B, S, d_model), src_keep (B, S), per-layer self-attention probs or None)."""
        src_keep = (src != self.config.pad_id) if src_keep is None else src_keep.bool()
        mask = padding_mask(src_keep)  # (B, 1, 1, S): no query looks at padding
        x, probs = self._embed(src), []
        for block in self.encoder:
            x, (p, _) = block(x, mask=mask, need_weights=need_weights)
            probs.append(p)
        return x, src_keep, (probs if need_weights else None)

    def decode(self, tgt: Tensor, memory: Tensor, src_keep: Tensor, *, cache: KVCache | None = None,
               positions: Tensor | None = None, tgt_keep: Tensor | None = None, need_weights: bool = False):
        """tgt (B, T) right-padded target prefix -> (hidden (B, T, d_model), self probs, cross probs).

        Causal self-attention is enough for right padding: a real token never sees a later pad.
        Decoding rows that started at different times are left-padded instead: positions (B, T) and
        tgt_keep (B, past + T), True on real tokens, then mask the padding (as in the GPT).
        """
        past = cache.length if cache is not None else 0
        T = tgt.size(1)
        x = self._embed(tgt, past, positions)
        mask, is_causal = None, T > 1  # end-aligned after the cached positions (nn.attention)
        if tgt_keep is not None:
            mask = causal_padding_mask(tgt_keep, T)
            is_causal = False
        memory_mask = padding_mask(src_keep)  # (B, 1, 1, S)
        selfs, crosses = [], []
        for i, block in enumerate(self.decoder):
            x, (p, q) = block(x, mask=mask, is_causal=is_causal, cache=cache.layer(i) if cache else None,
                              memory=memory, memory_mask=memory_mask, need_weights=need_weights)
            selfs.append(p)
            crosses.append(q)
        if cache is not None:
            cache.advance(T)
        return x, (selfs if need_weights else None), (crosses if need_weights else None)

    def head(self, h: Tensor) -> Tensor:
        """Decoder hidden states -> logits (the output softmax's input; the tied embedding, Vaswani et al. sec. 3.4)."""
        return self.lm_head(h)

    # ---------------------------------------------------------------- decoding protocol (forward, prefill and
    # decode_step: models.protocol.EncoderDecoderDecoding)
    @property
    def decoder_start(self) -> int:
        return self.config.bos_id  # the prompt is the source; the target starts from <s>
