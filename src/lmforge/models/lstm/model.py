"""The RNN baseline the Transformer replaced: LSTM encoder-decoder with attention.

Encoder: a bidirectional LSTM (Bahdanau et al. 2015), each direction d_model / 2 wide; the final
forward and backward states, concatenated per layer, start the decoder (OpenNMT's "brnn").
Decoder: an LSTM over the target, then Luong et al. 2015 global attention with the "general"
score (sec. 3.1): score(h_t, h_s) = h_t^T W_a h_s, context c_t = sum_s a_t(s) h_s, and the
attentional state h~_t = tanh(W_c [c_t; h_t]) (eq. 5), from which the next token is predicted.

We leave out Luong's input feeding (sec. 3.3: h~_{t-1} fed to the next decoder step): without it,
the decoder LSTM runs over the whole target in one call during training, which is the fair way
to give the baseline its best speed on a CPU. The source, target and output embeddings are one
tied matrix, as in the Transformer it is compared with (Press & Wolf 2017).

    >>> from lmforge.models.lstm.config import LSTMConfig
    >>> model = LSTM(LSTMConfig.preset("lstm-tiny"))
    >>> model(torch.tensor([[5, 6, 7, 2]]), torch.tensor([[1, 8, 9]])).logits.shape
    torch.Size([1, 3, 512])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lmforge.models.lstm.config import LSTMConfig
from lmforge.models.outputs import DecodeOutput, ModelOutput, token_loss
from lmforge.nn import LMHead, attention, init_weights, padding_mask
from lmforge.nn.cache import Context, cat_padded
from lmforge.nn.masks import pad_rows


@dataclass
class LSTMState:
    """What decoding carries from step to step: encoder output, its attention keys, its padding, the decoder
    LSTM's (h, c), and which decoder positions each row has filled (no cache: the recurrence carries the past)."""

    memory: Tensor  # (B, S, d_model)
    keys: Tensor  # (B, S, d_model): W_a h_s, computed once per source
    src_keep: Tensor  # (B, S)
    hc: tuple[Tensor, Tensor]  # each (n_layers, B, d_model)
    context: Context

    @property
    def keep(self) -> Tensor:
        return self.context.keep

    def reorder(self, index: Tensor) -> None:
        self.memory, self.keys = self.memory.index_select(0, index), self.keys.index_select(0, index)
        self.src_keep = self.src_keep.index_select(0, index)
        self.hc = (self.hc[0].index_select(1, index), self.hc[1].index_select(1, index))
        self.context.reorder(index)

    def join(self, other: "LSTMState") -> "LSTMState":
        hc = tuple(torch.cat([a, b], dim=1) for a, b in zip(self.hc, other.hc))
        return LSTMState(cat_padded(self.memory, other.memory, 1), cat_padded(self.keys, other.keys, 1),
                         cat_padded(self.src_keep, other.src_keep, 1, False), hc, self.context.join(other.context))

    def trim(self) -> None:
        self.context.trim()


class LSTM(nn.Module):
    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.LSTM(c.d_model, c.d_model // 2, c.n_layers, batch_first=True, bidirectional=True,
                               dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.decoder = nn.LSTM(c.d_model, c.d_model, c.n_layers, batch_first=True,
                               dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.attn = nn.Linear(c.d_model, c.d_model, bias=False)  # W_a of the "general" score
        self.combine = nn.Linear(2 * c.d_model, c.d_model, bias=False)  # W_c of eq. 5
        self.lm_head = LMHead(self.tok_emb)
        init_weights(self, scheme="xavier")  # LSTMs keep torch's uniform(-1/sqrt(h), 1/sqrt(h)) (see nn.init)

    def _check(self, ids: Tensor, what: str) -> None:
        if ids.size(1) > self.config.max_len:
            raise ValueError(f"the {what} has {ids.size(1)} tokens, max_len is only {self.config.max_len}; "
                             "shorten it or use a model with a larger max_len")

    def encode(self, src: Tensor, src_keep: Tensor | None = None):
        """src (B, S) -> (memory (B, S, d_model), src_keep (B, S), decoder start (h, c) each (n_layers, B, d_model))."""
        self._check(src, "source")
        src_keep = (src != self.config.pad_id) if src_keep is None else src_keep.bool()
        lengths = src_keep.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.tok_emb(src)), lengths, batch_first=True,
                                                   enforce_sorted=False)  # padding never enters the recurrence
        out, (h, c) = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, d_model)
        L, B = self.config.n_layers, src.size(0)

        def join(t: Tensor) -> Tensor:  # (2 * L, B, d/2) -> (L, B, d): forward and backward final states side by side
            return t.view(L, 2, B, -1).permute(0, 2, 1, 3).reshape(L, B, -1)
        return self.drop(memory), src_keep, (join(h), join(c))

    def decode(self, tgt: Tensor, memory: Tensor, keys: Tensor, src_keep: Tensor, hc: tuple[Tensor, Tensor],
               need_weights: bool = False):
        """tgt (B, T), keys = attn(memory) -> (attentional states h~ (B, T, d_model), (h, c), attention probs
        (B, T, S) or None)."""
        out, hc = self.decoder(self.drop(self.tok_emb(tgt)), hc)  # (B, T, d_model)
        # one head, score h_t^T W_a h_s without scaling (Luong's "general" score): the backbone's attention
        context, probs = attention(out[:, None], keys[:, None], memory[:, None], padding_mask(src_keep),
                                   scale=1.0, need_weights=need_weights)  # (B, 1, T, d_model), (B, 1, T, S)
        context, probs = context[:, 0], (None if probs is None else probs[:, 0])
        h = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))  # eq. 5
        return self.drop(h), hc, probs

    def forward(self, src: Tensor, tgt: Tensor, targets: Tensor | None = None, *, src_keep: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """Teacher forcing, same signature as the Transformer's. cross_attentions: [(B, 1, T, S)] (one "head")."""
        self._check(tgt, "target")
        memory, src_keep, hc = self.encode(src, src_keep)
        h, _, probs = self.decode(tgt, memory, self.attn(memory), src_keep, hc, need_weights)
        logits = self.lm_head(h)  # (B, T, vocab)
        loss = token_loss(logits, targets)
        return ModelOutput(logits=logits, loss=loss, cross_attentions=[probs[:, None]] if need_weights else None,
                           hidden_states=h)

    # ---------------------------------------------------------------- decoding protocol (models.protocol)
    @property
    def decoder_start(self) -> int:
        return self.config.bos_id  # the prompt is the source; the target starts from <s>

    def prefill(self, prompts, *, capacity: int | None = None, use_cache: bool = True,
                need_weights: bool = False) -> tuple[LSTMState, DecodeOutput]:
        """Sources (id lists) -> encode once, feed <s> -> (state, the first target token's logits).
        capacity and use_cache do not apply: the decoder's past is its recurrent state, not a cache."""
        p = self.tok_emb.weight
        src, _ = pad_rows(prompts, self.config.pad_id, device=p.device)  # right padding, as in training
        memory, src_keep, hc = self.encode(src)
        state = LSTMState(memory, self.attn(memory), src_keep, hc, Context(src.size(0), device=p.device))
        bos = torch.full((src.size(0), 1), self.config.bos_id, device=p.device)
        return state, self.decode_step(state, bos, need_weights=need_weights)

    def decode_step(self, state: LSTMState, ids: Tensor, *, need_weights: bool = False) -> DecodeOutput:
        state.context.feed(ids)
        h, state.hc, probs = self.decode(ids, state.memory, state.keys, state.src_keep, state.hc, need_weights)
        cross = None if probs is None else [probs[:, None]]  # one "head", one layer: (B, 1, T, S)
        return DecodeOutput.of(self.lm_head(h[:, -1]), cross_attentions=cross, src_keep=state.src_keep)
