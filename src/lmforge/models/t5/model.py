"""T5 (Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer").

Encoder: pre-norm blocks (RMSNorm -> self-attention -> residual, RMSNorm -> feed-forward -> residual), a
final RMSNorm. Decoder: the same with causal self-attention and cross-attention over the encoder output.
No position embeddings: each stack has one relative position bias (bidirectional buckets in the encoder,
causal in the decoder), computed once and added to the self-attention logits of all its layers (sec. 2.1).
Logits are not scaled by 1/sqrt(head_dim), nothing has a bias; dropout on the embeddings, every sub-layer
output and the final norm's output.

    >>> from lmforge.models.t5.config import T5Config
    >>> model = T5(T5Config.preset("t5-tiny"))
    >>> src, tgt = torch.tensor([[5, 6, 7, 1]]), torch.tensor([[0, 8, 9]])   # </s> = 1 ends the source; <pad> = 0 starts the target
    >>> model(src, tgt).logits.shape
    torch.Size([1, 3, 512])

`model(src, tgt)` takes `tgt` exactly as Hugging Face's `decoder_input_ids` (the targets shifted right behind
<pad>, config.decoder_start_id). Generation goes through the decoding protocol (lmforge.models.protocol):
`prefill` encodes the sources once and feeds the start token; `decode_step` feeds the chosen tokens; the KV cache holds the decoder's keys and
values and, after the first step, the cross-attention keys and values of the source.
"""
from __future__ import annotations

from torch import Tensor, nn

from lmforge.models.protocol import EncoderDecoderDecoding
from lmforge.models.t5.config import T5Config
from lmforge.nn import (Block, FeedForward, KVCache, LMHead, MultiHeadAttention, RelativePositionBias, RMSNorm,
                        init_weights, padding_mask)
from lmforge.nn.masks import causal_padding_mask


class T5(EncoderDecoderDecoding, nn.Module):
    def __init__(self, config: T5Config):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)  # shared by encoder, decoder (and a tied head)
        self.drop = nn.Dropout(c.dropout)

        def norm():
            return RMSNorm(c.d_model, c.norm_eps)  # T5's "LayerNorm": no mean, no bias

        def attn(cross=False):  # scale 1.0: T5 does not divide the logits by sqrt(head_dim)
            return MultiHeadAttention(c.d_model, c.n_heads, head_dim=c.head_dim, bias=False, dropout=c.dropout,
                                      cross=cross, scale=1.0)

        def ffn():
            return FeedForward(c.d_model, c.d_ff, c.activation, bias=False, dropout=c.dropout)

        self.encoder = nn.ModuleList(Block(attn(), ffn(), norm, dropout=c.dropout) for _ in range(c.n_layers))
        self.enc_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance, bidirectional=True)
        self.enc_norm = norm()
        self.decoder = nn.ModuleList(Block(attn(), ffn(), norm, cross_attn=attn(cross=True), dropout=c.dropout)
                                     for _ in range(c.n_dec_layers))
        self.dec_bias = RelativePositionBias(c.n_heads, c.num_buckets, c.max_distance, bidirectional=False)
        self.dec_norm = norm()
        self.lm_head = LMHead(self.tok_emb) if c.tie_embeddings else LMHead(None, c.d_model, c.vocab_size)
        init_weights(self, scheme="t5")

    def encode(self, src: Tensor, src_keep: Tensor | None = None, need_weights: bool = False):
        """src (B, S) -> (memory (B, S, d_model), src_keep (B, S), per-layer self-attention probs or None)."""
        src_keep = (src != self.config.pad_id) if src_keep is None else src_keep.bool()
        S = src.size(1)
        mask = padding_mask(src_keep)  # (B, 1, 1, S): no query looks at padding
        bias = self.enc_bias(S, S)  # (1, nh, S, S): once for the stack
        x, probs = self.drop(self.tok_emb(src)), []
        for block in self.encoder:
            x, (p, _) = block(x, mask=mask, bias=bias, need_weights=need_weights)
            probs.append(p)
        return self.drop(self.enc_norm(x)), src_keep, (probs if need_weights else None)

    def decode(self, tgt: Tensor, memory: Tensor | None, src_keep: Tensor, *, cache: KVCache | None = None,
               positions: Tensor | None = None, tgt_keep: Tensor | None = None, need_weights: bool = False):
        """tgt (B, T) after `cache.length` cached positions -> (hidden (B, T, d_model), self probs, cross probs).

        The relative bias depends only on column distances, so left-padded rows (decoding rows that started at
        different times) need no positions of their own: tgt_keep (B, past + T), True on real tokens, masks
        their padding. Without it the mask is causal (right padding never reaches a real token). `positions`
        (the decoding protocol's per-row positions) is not read, for the same reason."""
        past = cache.length if cache is not None else 0
        T = tgt.size(1)
        if past + T > self.config.max_len:
            raise ValueError(f"Cannot decode position {past + T}, max_len is only {self.config.max_len}. "
                             "Shorten the target or use a model with a larger max_len.")
        bias = self.dec_bias(T, past + T, offset=past)  # (1, nh, T, past + T): causal buckets, once for the stack
        mask = causal_padding_mask(tgt_keep, T) if tgt_keep is not None else None
        is_causal = mask is None and T > 1  # end-aligned after the cached positions (nn.attention)
        memory_mask = padding_mask(src_keep)  # (B, 1, 1, S)
        x, selfs, crosses = self.drop(self.tok_emb(tgt)), [], []
        for i, block in enumerate(self.decoder):
            x, (p, q) = block(x, mask=mask, bias=bias, is_causal=is_causal, cache=cache.layer(i) if cache else None,
                              memory=memory, memory_mask=memory_mask, need_weights=need_weights)
            selfs.append(p)
            crosses.append(q)
        if cache is not None:
            cache.advance(T)
        return self.drop(self.dec_norm(x)), (selfs if need_weights else None), (crosses if need_weights else None)

    def head(self, h: Tensor) -> Tensor:
        """Decoder hidden states -> logits. A tied head first rescales by d_model^-0.5 (Mesh TF T5 v1.0; HF
        `scale_decoder_outputs`): the embedding has unit-variance entries, so logits stay of order one."""
        return self.lm_head(h * self.config.d_model ** -0.5 if self.config.rescale_head else h)

    # ---------------------------------------------------------------- decoding protocol (forward, prefill and
    # decode_step: models.protocol.EncoderDecoderDecoding)
    @property
    def decoder_start(self) -> int:
        return self.config.decoder_start_id  # T5: <pad> (HF decoder_start_token_id = pad_token_id)
