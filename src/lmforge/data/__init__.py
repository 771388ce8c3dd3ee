"""Data: bundled real-text corpora with fixed splits, token-id files, batch sampling."""
