"""The decoding protocol: what lmforge.generate needs from a model, decoder-only or encoder-decoder.

    state, out = model.prefill([[5, 6, 7], [8, 9]])     # read a batch of prompts -> out.logits (B, vocab)
    out = model.decode_step(state, next_ids)            # next_ids (B, 1): the tokens chosen -> the next logits
    state.reorder(index); state = state.join(other); state.trim()

- Decoder-only (GPT): the prompt is the start of the text and the decoder's context; `decoder_start`
  is None.
- Encoder-decoder (Transformer, LSTM, T5): the prompt is the source. `prefill` encodes it once and feeds the
  decoder its first input, `decoder_start` (`<s>`, config.bos_id; T5: `<pad>`, config.decoder_start_id); the
  generated tokens are the target. The attention encoder-decoders share EncoderDecoderState.

Rows of different lengths are right-aligned (left padding, each row's positions counted from its own
first token), so a row's tokens do not depend on the rest of its batch. The state is the model's own
(it knows its caches); what the caller may do with it is the three operations below, so a decoding
loop never reads or edits a cache: `lmforge.generate`'s Engine (continuous batching: rows join
and leave between steps) and its beam search drive every family through these calls.

Call them under torch.inference_mode() (the Engine and beam search do).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from lmforge.models.outputs import DecodeOutput, ModelOutput, token_loss
from lmforge.nn.cache import Context, KVCache, cat_padded
from lmforge.nn.masks import causal_padding_mask, pad_rows


class DecodingState(Protocol):
    keep: Tensor  # (B, L) True where a row's decoder context holds a real token (False: its left padding)

    def reorder(self, index: Tensor) -> None:
        """Row i <- row index[i]: keep, drop or repeat rows (beam search; finished rows leaving)."""

    def join(self, other: "DecodingState") -> "DecodingState":
        """A state with this state's rows, then other's (rows joining a running batch)."""

    def trim(self) -> None:
        """Drop the padding every row has (after rows left), so the remaining rows cost no more than alone."""


@runtime_checkable
class DecodingModel(Protocol):
    config: Any  # vocab_size, max_len; encoder-decoders also bos_id, eos_id, pad_id
    decoder_start: int | None  # None: decoder-only; else the token id the decoder starts from

    def prefill(self, prompts: Sequence[Sequence[int]], *, capacity: int | None = None, use_cache: bool = True,
                need_weights: bool = False) -> tuple[DecodingState, DecodeOutput]:
        """Read a batch of prompts (token-id lists of any lengths; sources for an encoder-decoder) ->
        (state, the next token's logits). capacity: decoder positions to allocate (default max_len).
        use_cache=False keeps the ids and recomputes the whole context at every step (for checking;
        a recurrent decoder has no cache and ignores it). need_weights: also the last token's attention."""

    def decode_step(self, state: DecodingState, ids: Tensor, *, need_weights: bool = False) -> DecodeOutput:
        """Feed ids (B, T), the tokens chosen for each row, -> the logits of the token after them.
        For an encoder-decoder, `cross_attention` is over the source tokens."""


@dataclass
class EncoderDecoderState:
    """What an attention encoder-decoder (the Transformer, T5) carries from step to step: the decoder's
    Context (its KV cache also holds the cross-attention keys/values of the source), the source padding,
    and the encoder output while it is still read (always without a cache)."""

    context: Context
    memory: Tensor | None  # (B, S, d_model); None once every layer has cached its cross-attention keys/values
    src_keep: Tensor  # (B, S), True = real source token

    @property
    def keep(self) -> Tensor:
        return self.context.keep

    def reorder(self, index: Tensor) -> None:
        self.context.reorder(index)
        self.memory = None if self.memory is None else self.memory.index_select(0, index)
        self.src_keep = self.src_keep.index_select(0, index)

    def join(self, other: "EncoderDecoderState") -> "EncoderDecoderState":
        memory = None if self.memory is None else cat_padded(self.memory, other.memory, 1)
        src_keep = cat_padded(self.src_keep, other.src_keep, 1, False)  # sources right-padded to the longer
        return EncoderDecoderState(self.context.join(other.context), memory, src_keep)

    def trim(self) -> None:
        self.context.trim()


class DecoderOnlyDecoding:
    """The decoder-only stack and its decoding protocol, shared by GPT and Llama. A family defines
    `tok_emb`, `embed(ids, positions) -> (x, rope)` (what differs: a learned position table added to the
    tokens, or rotations handed to attention), `blocks`, `norm`, `lm_head` and `config.max_len`; the
    rest is here: the causal/padding masks, the cache, the head, the loss, and prefill/decode_step (the
    prompt is the context; shorter prompts are left-padded and masked, each row's positions start at its
    first token)."""

    decoder_start = None  # decoder-only: the prompt is the context the decoder continues

    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """Keys and values of every layer: as many heads as attention keeps (its key/value heads under GQA)."""
        attn, p = self.blocks[0].attn, self.tok_emb.weight
        return KVCache(len(self.blocks), batch_size, attn.n_kv_heads, attn.head_dim, max_len or self.config.max_len,
                       device=p.device, dtype=dtype or p.dtype)

    def forward(self, ids: Tensor, targets: Tensor | None = None, *, cache: KVCache | None = None,
                positions: Tensor | None = None, attention_mask: Tensor | None = None,
                need_weights: bool = False, keep_logits: int = 0) -> ModelOutput:
        """ids (B, T) -> ModelOutput.

        cache: a KVCache from `new_cache`; ids are appended after its `length` positions.
        positions (B, T): position ids (default past..past+T-1); left-padded batches pass their own.
        attention_mask (B, past+T): 1 for real tokens, 0 for padding (keys only).
        keep_logits: compute logits for the last n positions only (generation needs 1); 0 = all.
        """
        B, T = ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.max_len:
            raise ValueError(f"Cannot attend to {past + T} positions, max_len is only {self.config.max_len}. "
                             "The input is longer than the model's context: shorten the prompt or use a model "
                             "with a larger max_len.")
        if positions is None:
            positions = torch.arange(past, past + T, device=ids.device)[None]  # (1, T)
        x, rope = self.embed(ids, positions)  # (B, T, d_model)

        # No padding: causal (end-aligned after a KV cache); one new token simply sees everything cached.
        mask, is_causal = None, T > 1
        if attention_mask is not None:
            mask = causal_padding_mask(attention_mask, T)
            is_causal = False

        attentions = [] if need_weights else None
        for i, block in enumerate(self.blocks):
            x, (probs, _) = block(x, mask=mask, is_causal=is_causal, cache=cache.layer(i) if cache else None,
                                  rope=rope, need_weights=need_weights)
            if need_weights:
                attentions.append(probs)
        if cache is not None:
            cache.advance(T)
        x = self.norm(x)
        logits = self.lm_head(x[:, -keep_logits:] if keep_logits else x)  # (B, T, vocab)
        loss = token_loss(logits, targets)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x)

    def prefill(self, prompts, *, capacity: int | None = None, use_cache: bool = True,
                need_weights: bool = False):
        ids, keep = pad_rows(prompts, left=True, device=self.tok_emb.weight.device)
        state = Context(len(prompts), self.new_cache(len(prompts), capacity) if use_cache else None,
                        ids=not use_cache, device=ids.device)
        return state, self._read(state, ids, keep, need_weights)

    def decode_step(self, state, ids: Tensor, *, need_weights: bool = False) -> DecodeOutput:
        return self._read(state, ids, None, need_weights)

    def _read(self, state, ids: Tensor, keep: Tensor | None, need_weights: bool) -> DecodeOutput:
        ids, positions, mask = state.feed(ids, keep)
        out = self(ids, cache=state.cache, positions=positions, attention_mask=mask, need_weights=need_weights,
                   keep_logits=1)
        return DecodeOutput.of(out.logits[:, -1], out.attentions, state.keep)


class EncoderDecoderDecoding:
    """The teacher-forced forward and the decoding protocol (prefill / decode_step) of an encoder-decoder,
    written once for the Transformer and T5. A family defines `encode(src, src_keep) -> (memory, src_keep, probs)`,
    `decode(tgt, memory, src_keep, *, cache, positions, tgt_keep, need_weights) -> (h, selfs, crosses)`,
    `head(h) -> logits`, the `decoder_start` id, and holds `tok_emb` and `decoder` (blocks with `attn`)."""

    def forward(self, src: Tensor, tgt: Tensor, targets: Tensor | None = None, *, src_keep: Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """Teacher forcing: src (B, S), tgt (B, T) = <start> y1 .. y_{T-1} (HF's decoder_input_ids), targets (B, T)
        = y1 .. y_T (-100 = ignore). src_keep (B, S): 1 on real source tokens (HF's attention_mask; default
        src != pad_id). attentions: decoder self-attention per layer; cross_attentions: (B, nh, T, S) per layer."""
        memory, src_keep, _ = self.encode(src, src_keep)
        h, selfs, crosses = self.decode(tgt, memory, src_keep, need_weights=need_weights)
        logits = self.head(h)  # (B, T, vocab)
        loss = token_loss(logits, targets)
        return ModelOutput(logits=logits, loss=loss, attentions=selfs, cross_attentions=crosses, hidden_states=h)

    def prefill(self, prompts, *, capacity: int | None = None, use_cache: bool = True,
                need_weights: bool = False) -> tuple[EncoderDecoderState, DecodeOutput]:
        """Sources (id lists) -> encode once, feed the start token -> (state, the first target token's logits)."""
        c, p = self.config, self.tok_emb.weight
        src, keep = pad_rows(prompts, c.pad_id, device=p.device)  # right padding, as in training; keep by position
        memory, src_keep, _ = self.encode(src, keep)
        B, attn = src.size(0), self.decoder[0].attn
        cache = KVCache(len(self.decoder), B, attn.n_kv_heads, attn.head_dim, min(capacity or c.max_len, c.max_len),
                        device=p.device, dtype=p.dtype) if use_cache else None
        state = EncoderDecoderState(Context(B, cache, ids=not use_cache, device=p.device), memory, src_keep)
        out = self.decode_step(state, torch.full((B, 1), self.decoder_start, device=p.device),
                               need_weights=need_weights)
        if use_cache:
            state.memory = None  # every layer now has the source's keys/values in the cache
        return state, out

    def decode_step(self, state: EncoderDecoderState, ids: Tensor, *, need_weights: bool = False) -> DecodeOutput:
        """Feed (B, 1) target ids -> the next token's logits; rows of a joined state keep their own positions."""
        ids, positions, keep = state.context.feed(ids)
        h, selfs, crosses = self.decode(ids, state.memory, state.src_keep, cache=state.context.cache,
                                        positions=positions, tgt_keep=keep, need_weights=need_weights)
        return DecodeOutput.of(self.head(h[:, -1]), selfs, state.context.keep, crosses, state.src_keep)
