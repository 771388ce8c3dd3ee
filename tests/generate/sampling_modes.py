"""The sampling settings the decoding tests run through (one of each logit processor, and their mix)."""

MODES = {
    "greedy": dict(temperature=0),
    "sample": dict(temperature=1.0),
    "top_k": dict(temperature=0.7, top_k=5),
    "top_p": dict(temperature=1.3, top_p=0.8),
    "min_p": dict(min_p=0.1),
    "typical": dict(typical_p=0.6),
    "penalties": dict(temperature=0.9, repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.3),
    "no_repeat": dict(temperature=0, no_repeat_ngram_size=2, banned_tokens=[3], logit_bias={5: 2.0}),
}
