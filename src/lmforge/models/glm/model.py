"""GLM (Du et al. 2022): one Transformer stack over part A (the text with blanks) and part B (the spans).

    x = token + position table[first id] + block table[second id]       (sec. 2.3, "2D Positional Encoding")
    part A: first id = its position, second id = 0; attends to all of part A
    part B: each span is <sop> s_1 ... s_l; first id = the position of its blank in A, second id = 1 .. l+1;
            attends to all of part A and causally to part B (fig. 2)

Decoding (lmforge.models.protocol, decoder_start None): `prefill` reads a prompt, part A with its blank tokens
([MASK], [sMASK], [gMASK]), in one pass with the bidirectional mask, then <sop> of the first blank, and
returns the logits of that blank's first token. Each `decode_step` reads the chosen token at the next
block position. Reading <eop> closes a blank: while the row has blanks left, the model reads the next
blank's <sop> in its place (the token after <eop> is never an input in training), so a later blank sees
the text filled into the earlier ones, as part B does in training. A prompt without a blank is continued:
[gMASK] is appended (sec. 2.2, the document-level objective: generate the rest of the text).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from lmforge.models.glm.config import GLMConfig
from lmforge.models.outputs import DecodeOutput, ModelOutput, token_loss
from lmforge.nn import (Block, FeedForward, KVCache, LayerNorm, LMHead, MultiHeadAttention, Positions2D,
                        init_weights, prefix_padding_mask)
from lmforge.nn.cache import Context, cat_padded
from lmforge.nn.masks import pad_rows


class GLM(nn.Module):

    decoder_start = None  # the prompt is the context (part A); what is generated follows it (part B)

    def __init__(self, config: GLMConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = Positions2D(c.max_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(MultiHeadAttention(c.d_model, c.n_heads, dropout=c.dropout),
                  FeedForward(c.d_model, c.d_ff, c.activation),
                  lambda: LayerNorm(c.d_model, c.norm_eps), norm_first=True, dropout=c.dropout)
            for _ in range(c.n_layers))
        self.norm = LayerNorm(c.d_model, c.norm_eps)
        self.lm_head = LMHead(self.tok_emb)  # sec. 2.3: a single linear layer for the output, tied to the embedding
        init_weights(self, std=0.02, n_layers=c.n_layers)  # the authors' code: N(0, 0.02), output layers scaled

    @property
    def blank_ids(self) -> frozenset[int]:
        """Tokens that stand for a blank in part A (lmforge.generate.infill reads them)."""
        return self.config.blank_ids

    @property
    def end_of_blank(self) -> int:
        return self.config.eop_id

    def forward(self, ids: Tensor, targets: Tensor | None = None, *, positions: Tensor | None = None,
                block_positions: Tensor | None = None, prefix_len: Tensor | None = None,
                attention_mask: Tensor | None = None, need_weights: bool = False) -> ModelOutput:
        """A batch of blank-infilling rows (lmforge.data.blank), each part A then part B, right-padded.

        ids, positions, block_positions (B, T); prefix_len (B,): each row's part-A length; attention_mask (B, T):
        1 on real tokens (default all); targets (B, T): the next token of part B, -100 elsewhere."""
        if positions is None or block_positions is None or prefix_len is None:
            raise ValueError("GLM reads blank-infilling rows: pass positions, block_positions and prefix_len "
                             "(lmforge.data.blank builds them; train it with the `blank` recipe, not `lm`)")
        B, T = ids.shape
        prefix = torch.arange(T, device=ids.device)[None] < prefix_len.reshape(B, 1)  # (B, T) part A
        keep = torch.ones_like(prefix) if attention_mask is None else attention_mask.bool()
        return self._run(ids, positions, block_positions, prefix_padding_mask(prefix, keep, T), targets=targets,
                         need_weights=need_weights)

    def _run(self, ids: Tensor, positions: Tensor, block_positions: Tensor, mask: Tensor, *, cache=None,
             targets: Tensor | None = None, need_weights: bool = False, keep_logits: int = 0) -> ModelOutput:
        past = cache.length if cache is not None else 0
        if past + ids.size(1) > self.config.max_len:
            raise ValueError(f"Cannot attend to {past + ids.size(1)} positions, max_len is only {self.config.max_len}: "
                             "part A and part B together are longer than the model's context. Shorten the text "
                             "or the blanks, or use a model with a larger max_len.")
        x = self.drop(self.tok_emb(ids) + self.pos_emb(positions, block_positions))  # (B, T, d_model)
        attentions = [] if need_weights else None
        for i, block in enumerate(self.blocks):
            x, (probs, _) = block(x, mask=mask, cache=cache.layer(i) if cache is not None else None,
                                  need_weights=need_weights)
            if need_weights:
                attentions.append(probs)
        if cache is not None:
            cache.advance(ids.size(1))
        x = self.norm(x)
        logits = self.lm_head(x[:, -keep_logits:] if keep_logits else x)  # (B, T, vocab)
        loss = token_loss(logits, targets)
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, hidden_states=x)

    # -- the decoding protocol ----------------------------------------------------------------
    def new_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        attn, p = self.blocks[0].attn, self.tok_emb.weight
        return KVCache(len(self.blocks), batch_size, attn.n_kv_heads, attn.head_dim, max_len or self.config.max_len,
                       device=p.device, dtype=dtype or p.dtype)

    def prefill(self, prompts: Sequence[Sequence[int]], *, capacity: int | None = None, use_cache: bool = True,
                need_weights: bool = False) -> tuple["BlankState", DecodeOutput]:
        c = self.config
        rows, blanks = [], []
        for p in prompts:
            p = list(p)
            where = [i for i, t in enumerate(p) if t in c.blank_ids]
            if not where:  # nothing to fill: continue the text (the document-level objective's [gMASK] at the end)
                where = [len(p)]
                p.append(c.gmask_id)
            rows.append(p + [c.sop_id])  # part A, then <sop> of the first blank
            blanks.append(where)
        dev = self.tok_emb.weight.device
        ids, keep = pad_rows(rows, left=True, device=dev)
        B, L = ids.shape
        positions = torch.zeros(B, L, dtype=torch.long, device=dev)
        block = torch.zeros(B, L, dtype=torch.long, device=dev)
        for b, (r, w) in enumerate(zip(rows, blanks)):
            n = len(r) - 1  # part A
            positions[b, L - len(r):L - 1] = torch.arange(n, device=dev)
            positions[b, -1], block[b, -1] = w[0], 1  # <sop>: at its blank, first in its span
        prefix = keep.clone()
        prefix[:, -1] = False  # every row's <sop> is in its last column (rows are right-aligned)
        ctx = Context(B, self.new_cache(B, capacity) if use_cache else None, ids=not use_cache, device=dev)
        state = BlankState(ctx, [w[1:] for w in blanks], positions[:, -1].clone(),
                           torch.full((B,), 2, dtype=torch.long, device=dev))
        return state, self._read(state, ids, keep, positions, block, prefix, need_weights)

    def decode_step(self, state: "BlankState", ids: Tensor, *, need_weights: bool = False) -> DecodeOutput:
        """ids (B, 1): the tokens chosen for each row; <eop> opens the row's next blank, if it has one."""
        c = self.config
        ids = ids.clone()
        for b in range(ids.size(0)):
            if int(ids[b, 0]) == c.eop_id and state.blanks[b]:
                ids[b, 0] = c.sop_id
                state.at[b], state.next_block[b] = state.blanks[b].pop(0), 1
        positions, block = state.at[:, None].clone(), state.next_block[:, None].clone()
        state.next_block += 1
        prefix = torch.zeros_like(ids, dtype=torch.bool)
        return self._read(state, ids, None, positions, block, prefix, need_weights)

    def _read(self, state: "BlankState", ids, keep, positions, block, prefix, need_weights) -> DecodeOutput:
        state.record(positions, block, prefix)
        ids, _, _ = state.ctx.feed(ids, keep)
        T = ids.size(1)  # all columns without a cache, the new ones with it
        if state.ctx.ids is not None:
            positions, block = state.positions, state.block
        mask = prefix_padding_mask(state.prefix, state.ctx.keep, T)
        out = self._run(ids, positions, block, mask, cache=state.ctx.cache, need_weights=need_weights, keep_logits=1)
        return DecodeOutput.of(out.logits[:, -1], out.attentions, state.keep)


class BlankState:
    """GLM's decoding state: a Context (the KV cache or the ids, `keep`) and, per column, the 2-D position and
    whether it is part A; per row, the blanks still to open, the blank being written (`at`) and the block
    position of its next token. Rows are right-aligned like every decoder's (lmforge.nn.cache)."""

    def __init__(self, ctx: Context, blanks: list[list[int]], at: Tensor, next_block: Tensor):
        self.ctx, self.blanks, self.at, self.next_block = ctx, blanks, at, next_block
        B, dev = len(blanks), at.device
        self.positions = torch.zeros(B, 0, dtype=torch.long, device=dev)  # (B, L)
        self.block = torch.zeros(B, 0, dtype=torch.long, device=dev)
        self.prefix = torch.zeros(B, 0, dtype=torch.bool, device=dev)  # (B, L) True on part A

    @property
    def keep(self) -> Tensor:
        return self.ctx.keep

    def record(self, positions: Tensor, block: Tensor, prefix: Tensor) -> None:
        self.positions = torch.cat([self.positions, positions], dim=1)
        self.block = torch.cat([self.block, block], dim=1)
        self.prefix = torch.cat([self.prefix, prefix], dim=1)

    def reorder(self, index: Tensor) -> None:
        self.ctx.reorder(index)
        self.positions, self.block, self.prefix = self.positions[index], self.block[index], self.prefix[index]
        self.at, self.next_block = self.at[index], self.next_block[index]
        self.blanks = [list(self.blanks[i]) for i in index.tolist()]

    def join(self, other: "BlankState") -> "BlankState":
        out = BlankState(self.ctx.join(other.ctx), self.blanks + other.blanks, torch.cat([self.at, other.at]),
                         torch.cat([self.next_block, other.next_block]))
        out.positions = cat_padded(self.positions, other.positions, 1, 0, left=True)
        out.block = cat_padded(self.block, other.block, 1, 0, left=True)
        out.prefix = cat_padded(self.prefix, other.prefix, 1, False, left=True)
        return out

    def trim(self) -> None:
        before = self.ctx.keep.size(1)
        self.ctx.trim()
        n = before - self.ctx.keep.size(1)
        if n:
            self.positions, self.block, self.prefix = self.positions[:, n:], self.block[:, n:], self.prefix[:, n:]
