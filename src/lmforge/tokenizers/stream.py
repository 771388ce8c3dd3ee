"""From token ids back to text while streaming: incremental decoding and stop strings.

Used by the CLI and the server (the generation engine knows no text). Pure Python, no torch.
"""
from __future__ import annotations


class TextStream:
    """Turn a stream of token ids into new text, one piece per token.

    Byte-level BPE tokens can end inside a UTF-8 character: decoding such a prefix gives U+FFFD, so
    text ending in it is held back until the next token completes it. Stop strings are searched in
    the text (they may span tokens); `stopped` is set at the first match and the text is cut before it. Text within
    len(longest stop) - 1 characters of the end is held back, since a stop string may start there.

        >>> s = TextStream(decode=lambda ids: "".join(chr(97 + i) for i in ids), stop=["cd"])
        >>> [s.push(i) for i in (0, 1, 2, 3, 4)], s.text, s.stopped
        (['', 'a', 'b', '', ''], 'ab', True)
    """

    CONTEXT = 4  # settled tokens decoded again with the new ones (a tokenizer may join across tokens)

    def __init__(self, decode, stop: list[str] | tuple[str, ...] = ()):
        self.decode, self.stop = decode, [s for s in stop if s]
        self.ids: list[int] = []
        self.text = ""  # text given out so far
        self.stopped = False
        self._hold = max((len(s) for s in self.stop), default=1) - 1  # chars kept back: a stop may begin there
        self._settled, self._settled_text = 0, ""  # ids[:_settled] decode to _settled_text (no partial character)

    def _full(self) -> str:
        """The text of all ids, decoding only the unsettled tail and a few tokens before it, so a long
        generation costs O(tokens), not O(tokens^2). Falls back to decoding everything if the tokenizer
        changes the context's text when more tokens follow."""
        ctx = max(0, self._settled - self.CONTEXT)
        before = self.decode(self.ids[ctx:self._settled])
        tail = self.decode(self.ids[ctx:])
        full = self._settled_text + tail[len(before):] if tail.startswith(before) else self.decode(self.ids)
        if not full.endswith("\ufffd"):
            self._settled, self._settled_text = len(self.ids), full
        return full

    def push(self, token: int) -> str:
        """Add one token; return the text that can be shown now ('' while held back or after a stop)."""
        if self.stopped:
            return ""
        self.ids.append(token)
        full = self._full()
        if full.endswith("\ufffd"):
            return ""
        for s in self.stop:
            i = full.find(s, max(0, len(self.text) - len(s)))
            if i >= 0:
                self.stopped = True
                return self._emit(full[:i])
        return self._emit(full[:len(full) - self._hold] if self._hold else full)

    def flush(self) -> str:
        """At the end of generation: give out whatever was held back."""
        if self.stopped:
            return ""
        return self._emit(self._full().rstrip("\ufffd"))

    def _emit(self, upto: str) -> str:
        if len(upto) <= len(self.text):
            return ""
        new, self.text = upto[len(self.text):], upto
        return new
